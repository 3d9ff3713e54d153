// The shared remote tier (L4) end to end: two prefixd servers share one redis-server (started
// here on 127.0.0.1 and a free port); a prompt sent to A is a remote hit on B with the same
// output as a cold run. Faults: Redis stopped mid-run, paused with DEBUG SLEEP, values
// corrupted under their keys, another namespace; admin clear of `remote`.
import assert from 'node:assert/strict';
import { RedisProcess, freePort, redisCommand, redisMissing } from './redis_process.mjs';
import { after, before, describe, it } from 'node:test';
import { metricValue, missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite() ?? redisMissing();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The unique word comes first, so no two tests' prompts share a full block.
const story = () => `${uniqueWord()}: once upon a time, in a quiet village by the sea, there lived an old fisherman. ` +
  'Every morning he went out in his little boat and came back with fish for everyone in the village, ' +
  'and every evening he told the children a story about the whales he had seen far out at sea.';

// Waits until `srv` has no remote writes queued or in flight (they run in the background).
async function remoteWritesSettled(srv) {
  for (let i = 0; i < 100; i++) {
    const r = (await srv.stats()).by_tier.remote;
    if (r.writes_pending === 0 && r.writes_queued > 0) {
      await sleep(50);  // the last batch may still be in Write after leaving the queue
      return r;
    }
    await sleep(50);
  }
  throw new Error('remote writes did not settle within 5 s');
}

describe('remote tier on Redis', { skip: skip ?? false }, () => {
  let redis;
  let a;
  let b;
  const ns = `e2e-${uniqueWord()}`;
  const remoteArgs = (port, namespace = ns) => ['--remote-cache', `redis://127.0.0.1:${port}/0`,
    '--remote-cache-namespace', namespace, '--remote-cache-timeout-ms', '300',
    '--disk-prefix-cache', 'full', '--host-cache-bytes', '0'];
  const params = (srv, prompt) => ({ model: srv.model, prompt, temperature: 0, max_tokens: 8 });

  before(async () => {
    redis = new RedisProcess(await freePort());
    await redis.start();
    [a, b] = await Promise.all([startServer({ args: remoteArgs(redis.port) }),
                                startServer({ args: remoteArgs(redis.port) })]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('a prompt sent to A is a remote hit on B, with the cold output', { timeout: 30000 }, async () => {
    const prompt = story();
    const cold = await a.client.completions.create(params(a, prompt));
    assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
    const written = await remoteWritesSettled(a);
    assert.ok(written.writes > 0, JSON.stringify(written));
    const props = (await b.request('GET', '/props')).json;
    assert.ok(props.prefix_cache.tiers.includes('remote'), JSON.stringify(props.prefix_cache));
    assert.equal(props.prefix_cache.remote_cache_namespace, ns);

    const probe = await b.admin('/admin/api/cache/probe', { prompt });
    assert.equal(probe.status, 200);
    assert.equal(probe.json.by_tier.pool, 0);
    assert.ok(probe.json.by_tier.remote > 0, JSON.stringify(probe.json));

    const warm = await b.client.completions.create(params(b, prompt));
    const pc = warm.usage.prefix_cache;
    assert.ok(warm.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(pc));
    assert.equal(pc.by_tier.remote, warm.usage.prompt_tokens_details.cached_tokens, JSON.stringify(pc));
    assert.equal(warm.choices[0].text, cold.choices[0].text);

    const stats = await b.stats();
    assert.ok(stats.by_tier.remote.hits > 0, JSON.stringify(stats.by_tier.remote));
    assert.equal(stats.by_tier.remote.state, 'up');
    const metrics = (await b.request('GET', '/metrics')).text;
    assert.equal(metricValue(metrics, 'prefixd_tier_hits_total\\{tier="remote"\\}'), stats.by_tier.remote.hits);
    assert.equal(metricValue(metrics, 'prefixd_tier_remote_up'), 1);
  });

  it('values corrupted or replaced in Redis are never served', { timeout: 30000 }, async () => {
    const prompt = story();
    const cold = await a.client.completions.create(params(a, prompt));
    await remoteWritesSettled(a);
    const keys = await redis.scan(`${ns}:*`);
    assert.ok(keys.length >= 2, `keys: ${keys.length}`);
    // Flip a byte in every value, and put one key's value under another key.
    for (const k of keys) await redisCommand(redis.port, ['SETRANGE', k, '100', 'X']);
    await redisCommand(redis.port, ['COPY', keys[0], keys[1], 'REPLACE']);
    const before = (await b.stats()).by_tier.remote.quarantined;
    const r = await b.client.completions.create(params(b, prompt));
    assert.equal(r.usage.prefix_cache.by_tier.remote ?? 0, 0, JSON.stringify(r.usage.prefix_cache));
    assert.equal(r.choices[0].text, cold.choices[0].text);
    assert.ok((await b.stats()).by_tier.remote.quarantined > before);
  });

  it('another namespace shares nothing; admin clear of remote deletes only its own keys', { timeout: 30000 }, async () => {
    const prompt = story();
    await a.client.completions.create(params(a, prompt));
    await remoteWritesSettled(a);
    const other = await startServer({ args: remoteArgs(redis.port, `${ns}-other`) });
    try {
      const r = await other.client.completions.create(params(other, prompt));
      assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0, JSON.stringify(r.usage.prefix_cache));
      await remoteWritesSettled(other);
      assert.ok((await redis.scan(`${ns}-other:*`)).length > 0);
      await redisCommand(redis.port, ['SET', 'not-prefixd', 'kept']);
      const cleared = await other.admin('/admin/api/cache/clear', { tier: 'remote' });
      assert.equal(cleared.status, 200, cleared.text);
      assert.equal((await redis.scan(`${ns}-other:*`)).length, 0);
      assert.ok((await redis.scan(`${ns}:*`)).length > 0, 'the first namespace keeps its keys');
      assert.equal((await redisCommand(redis.port, ['GET', 'not-prefixd'])).toString(), 'kept');
    } finally {
      await other.stop();
    }
  });

  it('Redis paused with DEBUG SLEEP: requests time out to misses, none is stuck', { timeout: 30000 }, async () => {
    const prompt = story();
    const sleeping = redisCommand(redis.port, ['DEBUG', 'SLEEP', '3'], 10000).catch((e) => e);
    await sleep(100);
    const t0 = Date.now();
    const r = await b.client.completions.create(params(b, prompt));
    const ms = Date.now() - t0;
    assert.equal(r.usage.prefix_cache.by_tier.remote, 0, JSON.stringify(r.usage.prefix_cache));
    assert.ok(ms < 2500, `the request took ${ms} ms while Redis slept 3 s`);
    await sleeping;
    const s = (await b.stats()).by_tier.remote;
    assert.ok(s.timeouts >= 1, JSON.stringify(s));
  });

  it('Redis stopped mid-run: requests succeed as misses, hits resume after a restart', { timeout: 30000 }, async () => {
    await redis.stop();
    const prompt = story();
    const r = await b.client.completions.create(params(b, prompt));
    assert.equal(r.usage.prefix_cache.by_tier.remote, 0, JSON.stringify(r.usage.prefix_cache));
    const down = (await b.stats()).by_tier.remote;
    assert.equal(down.state, 'down');
    assert.ok(down.outages >= 1, JSON.stringify(down));
    assert.match(b.output(), /is unreachable .* requests go on as cache misses/);

    await redis.start();  // same port, empty
    const prompt2 = story();
    const cold = await a.client.completions.create(params(a, prompt2));
    // A's writes may land in its backoff window: resend until one reaches Redis.
    for (let i = 0; i < 40 && (await redis.scan(`${ns}:*`)).length === 0; i++) {
      await sleep(250);
      await a.client.completions.create(params(a, `${prompt2} ${i}`));
    }
    await remoteWritesSettled(a);
    let hit;
    for (let i = 0; i < 40; i++) {
      const probe = await b.admin('/admin/api/cache/probe', { prompt: prompt2 });
      if (probe.json.by_tier.remote > 0) {
        hit = await b.client.completions.create(params(b, prompt2));
        break;
      }
      await sleep(250);
    }
    assert.ok(hit, 'B saw the prompt in Redis again after the restart');
    assert.ok(hit.usage.prefix_cache.by_tier.remote > 0, JSON.stringify(hit.usage.prefix_cache));
    assert.equal(hit.choices[0].text, cold.choices[0].text);
    assert.equal((await b.stats()).by_tier.remote.state, 'up');
  });
});
