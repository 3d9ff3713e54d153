// OpenAI's prompt_cache_retention and prompt_cache_key, and prefixd's prefix_cache.retention,
// through the official `openai` client: accepted, reflected in usage.prefix_cache.retention
// and in /v1/prefix_cache_stats and /metrics; bad values are 400s naming the field.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { metricValue, missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite();
const T = { timeout: 60000 };

describe('retention in the OpenAI dialect', { skip: skip ?? false }, () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--retention-max-share', '0.5'] }); });
  after(async () => { await srv?.stop(); });

  const greedy = { temperature: 0, max_tokens: 8 };
  const stats = async () => (await fetch(`${srv.url}/v1/prefix_cache_stats`)).json();

  it('prompt_cache_retention 24h keeps the whole prompt, and the key is echoed and counted', T, async () => {
    const before = await stats();
    const r = await srv.client.chat.completions.create({ model: srv.model, ...greedy,
      messages: [{ role: 'user', content: `Remember ${uniqueWord()} for a day` }],
      prompt_cache_retention: '24h', prompt_cache_key: 'agent-1' });
    const kept = r.usage.prefix_cache.retention;
    assert.equal(kept.retained_tokens, r.usage.prompt_tokens, JSON.stringify(kept));
    assert.equal(kept.duration_s, 86400);
    assert.equal(kept.prompt_cache_key, 'agent-1');
    assert.equal(kept.prompt_cache_retention, '24h');
    const after = await stats();
    assert.equal(after.retention.prompt_cache_key_requests, before.retention.prompt_cache_key_requests + 1);
    assert.equal(after.retention.requests, before.retention.requests + 1);
    assert.ok(after.by_tier.pool.retained_tokens >= r.usage.prompt_tokens - 1, JSON.stringify(after.by_tier.pool));
    assert.equal(after.retention.max_share, 0.5);
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    assert.ok(metricValue(metrics, 'prefixd_prefix_cache_retained_tokens') > 0);
    assert.ok(metricValue(metrics, 'prefixd_prompt_cache_key_requests_total') >= 1);
  });

  it('in_memory and a key alone retain nothing beyond ordinary caching', T, async () => {
    const r = await srv.client.chat.completions.create({ model: srv.model, ...greedy,
      messages: [{ role: 'user', content: `Just ${uniqueWord()}` }],
      prompt_cache_retention: 'in_memory', prompt_cache_key: 'agent-2' });
    assert.equal(r.usage.prefix_cache.retention.retained_tokens, 0);
    assert.equal(r.usage.prefix_cache.retention.prompt_cache_key, 'agent-2');
  });

  it('prefix_cache.retention keeps a token range of a raw prompt', T, async () => {
    const r = await srv.client.completions.create({ model: srv.model, ...greedy,
      prompt: `Once upon a time ${uniqueWord()} lived in a small house by the sea`,
      prefix_cache: { retention: [{ token_start: 0, token_end: 6, priority: 80, duration_s: 60 }] } });
    assert.equal(r.usage.prefix_cache.retention.retained_tokens, 6);
    assert.equal(r.usage.prefix_cache.retention.duration_s, 60);
  });

  it('bad retention values are 400s naming the field', T, async () => {
    const bad = [
      [{ prompt_cache_retention: 'forever' }, 'prompt_cache_retention'],
      [{ prefix_cache: { retention: [{ priority: 5 }] } }, 'prefix_cache.retention[0].duration_s'],
    ];
    for (const [extra, param] of bad) {
      await assert.rejects(srv.client.chat.completions.create({ model: srv.model, ...greedy,
        messages: [{ role: 'user', content: 'hi' }], ...extra }),
      (e) => e.status === 400 && e.param === param, JSON.stringify(extra));
    }
  });
});
