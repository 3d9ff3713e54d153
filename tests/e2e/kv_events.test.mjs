// KV events against a running `prefixd serve --kv-events`: a subscriber (kv_subscriber.py, as
// a router runs one) rebuilds the per-tier index of block hashes from the stream, and after a
// mixed workload (pool evictions to host RAM, disk writes, missed batches caught up through
// the replay socket, clears, a restart whose disk blocks the start-up scan announces) its
// index says, for every prompt, exactly what the admin probe reports, tier by tier. The same
// for the shared remote tier (a real redis-server): blocks written there and cleared appear
// and disappear under the REMOTE medium as the probe sees them.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { RedisProcess, freePort, redisMissing } from './redis_process.mjs';
import { missingPrerequisite, startServer, uniqueWord, withTimeout } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// A Python with Debian's python3-zmq and python3-msgpack (the distribution's own first).
const python = ['/usr/bin/python3', 'python3'].find((p) =>
  spawnSync(p, ['-c', 'import zmq, msgpack'], { stdio: 'ignore' }).status === 0);
const skip = missingPrerequisite() ??
  (python ? null : 'no python3 with zmq and msgpack (apt-get install python3-zmq python3-msgpack; scripts/setup.sh does)');
const dir = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-kv-events-'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The subscriber process: one JSON line per command, one per answer.
function startSubscriber() {
  const child = spawn(python, [path.join(here, 'kv_subscriber.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    async call(cmd) {
      const answer = new Promise((resolve) => waiting.push(resolve));
      child.stdin.write(JSON.stringify(cmd) + '\n');
      const out = await withTimeout(answer, 30000, `subscriber ${cmd.cmd}`);
      if (out.error) throw new Error(`subscriber ${cmd.cmd}: ${out.error}`);
      return out;
    },
    async stop() {
      child.stdin.end();
      await withTimeout(exited, 10000, 'subscriber exit').catch(() => child.kill('SIGKILL'));
    },
  };
}

// Deterministic token ids of the model's vocabulary (stories260K: 512), no control tokens.
function ids(seed, n) {
  let x = seed >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(5 + (x >>> 8) % 500);
  }
  return out;
}
const shared = ids(1, 48);  // three blocks every prompt starts with
const prompts = Array.from({ length: 8 }, (_, i) => [...shared, ...ids(100 + i, 40 + 8 * i)]);

// Waits until the slow tier `tier` (disk, remote) has no write queued or in flight.
async function waitForWritesIdle(srv, tier = 'disk', timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while ((await srv.stats()).by_tier[tier].writes_pending !== 0) {
    if (Date.now() > deadline) throw new Error(`${tier} writes still pending`);
    await sleep(10);
  }
}

async function complete(srv, prompt, tier = 'disk') {
  const r = await srv.client.completions.create({ model: srv.model, prompt, temperature: 0, max_tokens: 4 });
  await waitForWritesIdle(srv, tier);
  return r.usage.prefix_cache?.by_tier ?? {};
}

// For each prompt: the tiers the subscriber's index gives, walked in the cache's lookup
// order (leading pool blocks, then each next block from host RAM, else disk, else stop), must
// be what the probe reports. Returns the totals, to show what the workload reached.
async function compareWithProbe(srv, sub, bs) {
  const seen = { pool: 0, host: 0, disk: 0 };
  for (const [n, prompt] of prompts.entries()) {
    const probe = await srv.admin('/admin/api/cache/probe', { prompt, block_hashes: true });
    assert.equal(probe.status, 200, probe.text);
    const bt = probe.json.by_tier;
    const { media } = await sub.call({ cmd: 'media', hashes: probe.json.block_hashes });
    let b = 0;
    while (b < media.length && media[b].includes('GPU')) b++;
    const want = { poolBlocks: b, host: 0, disk: 0 };
    for (; b < media.length; b++) {
      const tokens = (b + 1) * bs - Math.max(b * bs, bt.pool);
      if (media[b].includes('CPU')) want.host += tokens;
      else if (media[b].includes('DISK')) want.disk += tokens;
      else break;
    }
    // The remote tier continues from the first block the others lack, as ProbeRemote does.
    const covered = bt.pool + want.host + want.disk;
    let r = Math.floor(covered / bs);
    const first = r;
    while (r < media.length && media[r].includes('REMOTE')) r++;
    want.remote = r > first ? r * bs - covered : 0;
    const got = { poolBlocks: Math.floor(bt.pool / bs), host: bt.host ?? 0, disk: bt.disk ?? 0,
      remote: bt.remote ?? 0 };
    assert.deepEqual(want, got, `prompt ${n}: the subscriber's index ${JSON.stringify(want)}, ` +
      `the probe ${JSON.stringify(bt)}; media per block ${JSON.stringify(media)}`);
    seen.pool += got.poolBlocks;
    seen.host += got.host;
    seen.disk += got.disk;
    seen.remote = (seen.remote ?? 0) + got.remote;
  }
  return seen;
}

describe('KV events end to end', { skip: skip ?? false }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a subscriber rebuilds what the probe reports, through gaps, clears and a restart', { timeout: 180000 }, async () => {
    const probeSrv = await startServer();
    const blockBytes = (await probeSrv.request('GET', '/props')).json.kv.block_bytes;
    await probeSrv.stop();
    const record = blockBytes + 256;  // a host or disk record is a little bigger than its KV
    const args = ['--kv-events', 'tcp://127.0.0.1:*', '--cache-bytes', String(10 * blockBytes),
      '--host-cache-bytes', String(8 * record), '--disk-cache-dir', path.join(dir, 'disk'),
      '--disk-cache-bytes', String(200 * record), '--disk-prefix-cache', 'full'];
    const sub = startSubscriber();
    let srv = await startServer({ args });
    try {
      const connect = async () => {
        const ev = (await srv.request('GET', '/props')).json.prefix_cache.kv_events;
        assert.equal(ev.enabled, true);
        await sub.call({ cmd: 'connect', pub: ev.endpoint, replay: ev.replay_endpoint });
        return ev.block_size;
      };
      const bs = await connect();
      for (const p of prompts) await complete(srv, p);
      for (const p of prompts.slice(0, 4)) await complete(srv, p);  // back from host RAM or disk
      const first = await sub.call({ cmd: 'sync' });
      let seen = await compareWithProbe(srv, sub, bs);
      assert.ok(seen.pool > 0 && seen.host > 0 && seen.disk > 0, `every tier holds something: ${JSON.stringify(seen)}`);
      assert.ok((await srv.stats()).evictions > 0, 'the pool evicted');

      // Missed batches: the subscriber sees the gap in the sequence numbers and replays it.
      await sub.call({ cmd: 'drop', n: 2 });
      for (const p of prompts.slice(4)) await complete(srv, p);
      const synced = await sub.call({ cmd: 'sync' });
      assert.ok(synced.gaps > first.gaps, `a gap was detected: ${JSON.stringify(synced)}`);
      await compareWithProbe(srv, sub, bs);

      // Clears, each announced (the pool's first: what it drops is offloaded to host RAM).
      for (const tier of ['pool', 'host']) {
        assert.equal((await srv.admin('/admin/api/cache/clear', { tier })).status, 200);
        await sub.call({ cmd: 'sync' });
        seen = await compareWithProbe(srv, sub, bs);
      }
      assert.deepEqual([seen.pool, seen.host, seen.remote], [0, 0, 0]);
      assert.ok(seen.disk > 0, 'the disk still holds blocks');
    } finally {
      await srv.stop();
    }

    // A restart: the start-up scan's blocks are announced as stored on disk.
    srv = await startServer({ args });
    try {
      const ev = (await srv.request('GET', '/props')).json.prefix_cache.kv_events;
      await sub.call({ cmd: 'connect', pub: ev.endpoint, replay: ev.replay_endpoint });
      await sub.call({ cmd: 'sync' });
      const seen = await compareWithProbe(srv, sub, ev.block_size);
      assert.ok(seen.disk > 0 && seen.pool === 0, `after a restart only the disk holds blocks: ${JSON.stringify(seen)}`);
      const byTier = await complete(srv, prompts[2]);
      assert.ok((byTier.disk ?? 0) > 0, `a disk hit after the restart: ${JSON.stringify(byTier)}`);
      await sub.call({ cmd: 'sync' });
      await compareWithProbe(srv, sub, ev.block_size);
    } finally {
      await srv.stop();
      await sub.stop();
    }
  });
});

describe('KV events of the remote tier end to end', { skip: skip ?? redisMissing() ?? false }, () => {
  let redis;
  after(async () => { await redis?.stop(); });

  it('blocks written to Redis and cleared appear and disappear as the probe sees them', { timeout: 120000 }, async () => {
    redis = new RedisProcess(await freePort());
    await redis.start();
    const probeSrv = await startServer();
    const blockBytes = (await probeSrv.request('GET', '/props')).json.kv.block_bytes;
    await probeSrv.stop();
    // No host RAM and no disk: what the pool drops is found again only in Redis.
    const args = ['--kv-events', 'tcp://127.0.0.1:*', '--cache-bytes', String(10 * blockBytes),
      '--host-cache-bytes', '0', '--remote-cache', `redis://127.0.0.1:${redis.port}/0`,
      '--remote-cache-namespace', `kv-events-${uniqueWord()}`, '--remote-cache-timeout-ms', '2000',
      '--disk-prefix-cache', 'full'];
    const sub = startSubscriber();
    const srv = await startServer({ args });
    try {
      const ev = (await srv.request('GET', '/props')).json.prefix_cache.kv_events;
      await sub.call({ cmd: 'connect', pub: ev.endpoint, replay: ev.replay_endpoint });
      const bs = ev.block_size;
      for (const p of prompts) await complete(srv, p, 'remote');
      await sub.call({ cmd: 'sync' });
      let seen = await compareWithProbe(srv, sub, bs);
      assert.ok(seen.remote > 0 && seen.pool > 0, `the pool and Redis hold blocks: ${JSON.stringify(seen)}`);
      assert.ok((await srv.stats()).evictions > 0, 'the pool evicted');

      // A remote hit: onboarded blocks are announced in the pool too.
      const byTier = await complete(srv, prompts[0], 'remote');
      assert.ok((byTier.remote ?? 0) > 0, `a remote hit: ${JSON.stringify(byTier)}`);
      await sub.call({ cmd: 'sync' });
      await compareWithProbe(srv, sub, bs);

      // Cleared: announced as AllBlocksCleared on REMOTE.
      assert.equal((await srv.admin('/admin/api/cache/clear', { tier: 'remote' })).status, 200);
      await sub.call({ cmd: 'sync' });
      seen = await compareWithProbe(srv, sub, bs);
      assert.equal(seen.remote, 0, `nothing in Redis after the clear: ${JSON.stringify(seen)}`);

      // Written again by new prefills, and announced again.
      for (const p of prompts.slice(4)) await complete(srv, [...p, ...ids(7, 32)], 'remote');
      await sub.call({ cmd: 'sync' });
      seen = await compareWithProbe(srv, sub, bs);
      assert.ok(seen.remote > 0, `Redis holds blocks again: ${JSON.stringify(seen)}`);
    } finally {
      await srv.stop();
      await sub.stop();
    }
  });
});
