// Cache visibility and the admin API: stats and /metrics agree, the probe is read-only,
// admin routes answer 403 / 401 / 200, the kill switch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_KEY, metricValue, missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite();
const T = { timeout: 60000 };

describe('prefix cache stats, metrics and admin API', { skip: skip ?? false }, () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv?.stop(); });

  const story = 'Once upon a time, in a small town, there lived a kind old baker who made bread every day.';

  it('counts four identical prompts as at least three hits, and /metrics agrees', T, async () => {
    const salt = `four-${uniqueWord()}`;
    const before = await srv.stats();
    for (let i = 0; i < 4; i++) {
      await srv.client.completions.create({
        model: srv.model, prompt: story, temperature: 0, max_tokens: 8, cache_salt: salt });
    }
    const stats = await srv.stats();
    const metrics = (await srv.request('GET', '/metrics')).text;
    assert.equal(stats.enabled, true);
    assert.equal('busy' in stats, false, 'busy was dropped: it could never be true');
    assert.ok(stats.hits - before.hits >= 3, `hits ${before.hits} -> ${stats.hits}`);
    assert.equal(stats.misses - before.misses, 1);
    assert.ok(stats.hit_rate > 0 && stats.hit_rate <= 1);
    assert.ok(stats.cached_tokens > 0 && stats.nodes > 0);
    assert.equal(stats.cached_bytes, stats.cached_blocks * stats.block_bytes);
    assert.ok(stats.avg_hit_tokens > 0);
    assert.ok(stats.rates['1m'].hits >= 3);
    for (const w of ['1m', '5m', '15m']) assert.equal(typeof stats.rates[w].hit_rate, 'number');
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_hits_total'), stats.hits);
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_misses_total'), stats.misses);
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_query_tokens_total'), stats.total_query_tokens);
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_hit_tokens_total'), stats.hit_tokens);
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_cached_tokens'), stats.cached_tokens);
    assert.equal(metricValue(metrics, 'prefixd_prefix_cache_nodes'), stats.nodes);
    assert.match(metrics, /^prefixd_time_to_first_token_seconds_count [1-9]/m);
    assert.match(metrics, /^prefixd_request_duration_seconds_bucket\{le="\+Inf"\} [1-9]/m);
    assert.match(metrics, /^prefixd_inter_token_latency_seconds_count [1-9]/m);
  });

  it('probes cold, then resident, and the probe changes no counter', T, async () => {
    const salt = `probe-${uniqueWord()}`;
    const messages = [{ role: 'system', content: 'You write about the sea.' },
                      { role: 'user', content: 'Tell me about a whale who sings.' }];
    const s0 = await srv.stats();
    const cold = await srv.admin('/admin/api/cache/probe', { messages, cache_salt: salt, model: srv.model });
    assert.equal(cold.status, 200, cold.text);
    assert.equal(cold.json.model_loaded, true);
    assert.equal(cold.json.model_id, srv.model);
    assert.equal(cold.json.resident_tokens, 0);
    assert.equal(cold.json.cold_tokens, cold.json.total_tokens);
    assert.equal(cold.json.block_size, 16);
    assert.equal(cold.json.total_blocks, Math.ceil(cold.json.total_tokens / 16));
    const s1 = await srv.stats();
    for (const k of ['hits', 'misses', 'total_query_tokens', 'hit_tokens', 'cached_tokens', 'nodes']) {
      assert.equal(s1[k], s0[k], `${k} changed by the probe`);
    }

    const r = await srv.client.chat.completions.create({
      model: srv.model, messages, cache_salt: salt, temperature: 0, max_tokens: 4 });
    assert.equal(r.usage.prompt_tokens, cold.json.total_tokens, 'the probe tokenizes as generation does');

    const s2 = await srv.stats();
    const warm = await srv.admin('/admin/api/cache/probe', { messages, cache_salt: salt });
    assert.equal(warm.status, 200);
    assert.ok(warm.json.resident_tokens > 0);
    assert.equal(warm.json.resident_tokens + warm.json.cold_tokens, warm.json.total_tokens);
    assert.equal(warm.json.by_tier.pool, warm.json.resident_tokens);
    const again = await srv.admin('/admin/api/cache/probe', { messages, cache_salt: salt });
    assert.deepEqual(again.json, warm.json);
    const s3 = await srv.stats();
    for (const k of ['hits', 'misses', 'total_query_tokens', 'hit_tokens', 'cached_tokens', 'nodes']) {
      assert.equal(s3[k], s2[k], `${k} changed by the probe`);
    }
    // Another salt sees nothing; another model answers model_loaded: false.
    const other = await srv.admin('/admin/api/cache/probe', { messages, cache_salt: `${salt}-x` });
    assert.equal(other.json.resident_tokens, 0);
    const wrong = await srv.admin('/admin/api/cache/probe', { messages, model: 'llama-70b.gguf' });
    assert.equal(wrong.status, 200);
    assert.equal(wrong.json.model_loaded, false);
    assert.match(wrong.json.reason, /not loaded/);
  });

  it('answers 401 to a wrong or missing admin key and 200 to the right one', T, async () => {
    for (const route of ['/admin/api/cache/probe', '/admin/api/cache/clear',
                         '/admin/api/cache/disable', '/admin/api/cache/enable']) {
      const body = route.endsWith('probe') ? { prompt: 'Once' } : {};
      assert.equal((await srv.admin(route, body, 'wrong-key')).status, 401, route);
      assert.equal((await srv.admin(route, body, null)).status, 401, route);
      assert.equal((await srv.admin(route, body, `${ADMIN_KEY}x`)).status, 401, route);
      const ok = await srv.admin(route, body);
      assert.equal(ok.status, 200, `${route}: ${ok.text}`);
    }
  });

  it('answers 403 on every admin route when no admin key is configured', T, async () => {
    const open = await startServer({ adminKey: null });
    try {
      for (const route of ['/admin/api/cache/probe', '/admin/api/cache/clear',
                           '/admin/api/cache/disable', '/admin/api/cache/enable', '/admin/api/other']) {
        const r = await open.admin(route, { prompt: 'Once' }, 'anything');
        assert.equal(r.status, 403, route);
        assert.match(r.json.error.message, /--admin-key/);
      }
    } finally {
      await open.stop();
    }
  });

  it('the kill switch stops reuse and says why', T, async () => {
    const salt = `kill-${uniqueWord()}`;
    const params = { model: srv.model, prompt: story, temperature: 0, max_tokens: 4, cache_salt: salt };
    await srv.client.completions.create(params);
    assert.equal((await srv.admin('/admin/api/cache/disable')).json.enabled, false);
    const stats = await srv.stats();
    assert.equal(stats.enabled, false);
    assert.match(stats.reason, /kill switch/);
    const off = await srv.client.completions.create(params);
    assert.equal(off.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal((await srv.admin('/admin/api/cache/enable')).json.enabled, true);
    const on = await srv.client.completions.create(params);
    assert.ok(on.usage.prompt_tokens_details.cached_tokens > 0);
    assert.equal(on.choices[0].text, off.choices[0].text);
  });

  it('clear drops what is cached', T, async () => {
    const salt = `clear-${uniqueWord()}`;
    await srv.client.completions.create({ model: srv.model, prompt: story, max_tokens: 2, cache_salt: salt });
    const cleared = await srv.admin('/admin/api/cache/clear', { tier: 'all' });
    assert.equal(cleared.status, 200);
    assert.ok(cleared.json.freed_blocks >= 0);
    const stats = await srv.stats();
    assert.equal(stats.cached_tokens, 0);
    assert.equal(stats.pool_free_blocks, stats.pool_total_blocks);
    const probe = await srv.admin('/admin/api/cache/probe', { prompt: story, cache_salt: salt });
    assert.equal(probe.json.resident_tokens, 0);
    assert.equal((await srv.admin('/admin/api/cache/clear', { tier: 'nvme' })).status, 400);
  });
});
