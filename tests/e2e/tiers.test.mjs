// The lower tiers seen through the API: a prompt evicted from the pool comes back from host
// RAM, and one written to disk is served after a restart; usage, the probe, the stats and
// /metrics say which tier served it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { metricValue, missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite();
const dir = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-disk-'));
const tierArgs = ['--host-cache-bytes', String(64 << 20), '--disk-cache-dir', dir,
                  '--disk-prefix-cache', 'full'];
const prompt = `Once upon a time, in a quiet village by the sea, there lived an old fisherman ${uniqueWord()}. ` +
  'Every morning he went out in his little boat and came back with fish for everyone.';

describe('lower cache tiers', { skip: skip ?? false }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('serves from host RAM after the pool is cleared, and says so', { timeout: 60000 }, async () => {
    const srv = await startServer({ args: tierArgs });
    try {
      const params = { model: srv.model, prompt, temperature: 0, max_tokens: 8, cache_salt: 'tiers' };
      const first = await srv.client.completions.create(params);
      assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
      const props = (await srv.request('GET', '/props')).json;
      assert.deepEqual(props.prefix_cache.tiers.slice(0, 3), ['pool', 'host', 'disk']);
      assert.equal(props.prefix_cache.disk_policy, 'full');
      // Pool cleared: what it held goes to host RAM (offload on eviction) or stays on disk.
      assert.equal((await srv.admin('/admin/api/cache/clear', { tier: 'pool' })).status, 200);
      const probe = await srv.admin('/admin/api/cache/probe', { prompt, cache_salt: 'tiers' });
      assert.equal(probe.status, 200);
      assert.equal(probe.json.by_tier.pool, 0);
      assert.ok(probe.json.resident_tokens > 0, JSON.stringify(probe.json));
      const again = await srv.client.completions.create(params);
      const pc = again.usage.prefix_cache;
      assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(pc));
      assert.ok((pc.by_tier.host ?? 0) + (pc.by_tier.disk ?? 0) > 0, JSON.stringify(pc));
      assert.equal(again.choices[0].text, first.choices[0].text);
      const stats = await srv.stats();
      assert.ok(stats.by_tier.host, 'host tier stats');
      assert.ok(stats.by_tier.disk, 'disk tier stats');
      assert.equal(stats.by_tier.partial.supported, true, 'a llama model can slice its KV per token');
      assert.ok(stats.onboarded_blocks > 0);
      const metrics = (await srv.request('GET', '/metrics')).text;
      assert.equal(metricValue(metrics, 'prefixd_tier_onboarded_blocks_total'), stats.onboarded_blocks);
      assert.match(metrics, /^prefixd_tier_blocks\{tier="host"\} \d+$/m);
      assert.equal((await srv.admin('/admin/api/cache/clear', { tier: 'host' })).status, 200);
    } finally {
      const { code } = await srv.stop();
      assert.equal(code, 0);
    }
  });

  it('serves from disk after a restart', { timeout: 60000 }, async () => {
    const srv = await startServer({ args: tierArgs });
    try {
      const r = await srv.client.completions.create({
        model: srv.model, prompt, temperature: 0, max_tokens: 8, cache_salt: 'tiers' });
      assert.ok(r.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(r.usage.prefix_cache));
      assert.ok((r.usage.prefix_cache.by_tier.disk ?? 0) > 0, JSON.stringify(r.usage.prefix_cache));
    } finally {
      await srv.stop();
    }
  });
});
