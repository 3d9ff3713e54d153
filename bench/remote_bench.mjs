// The shared remote tier (Redis on loopback) against `prefixd serve`: two measurements.
//
//   node bench/remote_bench.mjs --model MODEL [--bin build/app/prefixd] [--threads 2]
//        [--prefix-tokens 1500] [--reps 3] [--sessions 4] [--turns 6] [--skip ttft|agent]
//
// ttft: time to first token of a prompt whose first `prefix-tokens` tokens come from (a)
//   nowhere (cold), (b) the disk tier, (c) the remote tier, per repetition on a fresh prefix.
//   Server S1 has disk + remote (host tier off): it computes the prefix cold, then its pool is
//   cleared and the prefix comes back from disk (disk is walked before remote). Server S2,
//   remote only, then gets the same prefix: a remote hit. Each measured prompt ends in its
//   own 16 fresh tokens, so they are computed in every case.
// agent: `sessions` agent conversations of `turns` turns each (a shared 600-token system
//   prompt and tool list, then per turn a 150-token tool result appended to the
//   conversation), sent one request at a time, turn t of session s to replica (s + t) % 2:
//   each replica sees every other turn of a conversation. Run with and without the shared
//   tier (--remote-cache on both replicas); reports the hit rate (cached / prompt tokens)
//   and the mean time to first token.
//
// redis-server is started on 127.0.0.1 and a free port and killed at the end; everything
// talks to 127.0.0.1 only, and every request is bounded (30 minutes).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const bin = args.bin ?? 'build/app/prefixd';
const model = args.model;
if (!model) { console.error('--model MODEL is required'); process.exit(2); }
const threads = args.threads ?? '2';
const prefixTokens = Number(args['prefix-tokens'] ?? 1500);
const reps = Number(args.reps ?? 3);
const sessions = Number(args.sessions ?? 4);
const turns = Number(args.turns ?? 6);
const vocab = Number(args.vocab ?? 32000);
const ADMIN = 'bench-key';

let seed = 4242;
const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const tokens = (n) => Array.from({ length: n }, () => 3 + rand(vocab - 3));

const children = new Set();
process.on('exit', () => { for (const p of children) p.kill('SIGKILL'); });

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], { stdio: 'ignore' });
  children.add(proc);
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return { proc, url: `redis://127.0.0.1:${port}/0` };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

async function startServer(extra) {
  const proc = spawn(bin, ['serve', '-m', model, '--port', '0', '--threads', threads, '--ctx', '2048',
    '--admin-key', ADMIN, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', () => {});
  for (let i = 0; i < 600 && !/listening on (http:\/\/\S+)/.test(out); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const m = /listening on (http:\/\/\S+)/.exec(out);
  if (!m) throw new Error('server did not start: ' + out);
  return { proc, url: m[1] };
}

async function stop(s) {
  s.proc.kill('SIGTERM');
  await once(s.proc, 'exit');
  children.delete(s.proc);
}

function post(url, route, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url + route, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    }, (res) => {
      let ttft = null; let buf = ''; let usage = null; let all = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        all += d;
        buf += d;
        let idx;
        while ((idx = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, idx).trim(); buf = buf.slice(idx + 2);
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const chunk = JSON.parse(line.slice(6));
          if (ttft === null && chunk.choices?.length) ttft = performance.now() - t0;
          if (chunk.usage) usage = chunk.usage;
        }
      });
      res.on('end', () => resolve({ ttft, usage, text: all }));
      res.on('error', reject);
    });
    req.setTimeout(1800000, () => req.destroy(new Error('request took over 30 minutes')));
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const complete = (s, prompt) => post(s.url, '/v1/completions', { prompt, max_tokens: 4, temperature: 0,
  stream: true, stream_options: { include_usage: true } });
const admin = (s, route, body) => post(s.url, route, body, { authorization: `Bearer ${ADMIN}` });
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const load = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');

// Waits until the server's remote write queue is empty (writes run in the background).
async function settle(s) {
  for (let i = 0; i < 600; i++) {
    const r = await new Promise((resolve) => http.get(s.url + '/v1/prefix_cache_stats', (res) => {
      let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => resolve(JSON.parse(b)));
    }));
    if ((r.by_tier.remote?.writes_pending ?? 0) === 0) {
      await new Promise((res) => setTimeout(res, 200));
      return;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function benchTtft(redisUrl) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-remote-bench-'));
  const common = ['--remote-cache', redisUrl, '--remote-cache-namespace', `ttft-${process.pid}`,
    '--disk-prefix-cache', 'full', '--host-cache-bytes', '0'];
  const s1 = await startServer([...common, '--disk-cache-dir', dir]);
  const s2 = await startServer(common);
  const rows = { cold: [], disk: [], remote: [] };
  const cached = { cold: [], disk: [], remote: [] };
  try {
    for (let rep = 0; rep < reps; rep++) {
      const prefix = tokens(prefixTokens);
      const run = async (what, server) => {
        const r = await complete(server, [...prefix, ...tokens(16)]);
        rows[what].push(r.ttft);
        cached[what].push(r.usage.prompt_tokens_details.cached_tokens);
        console.error(JSON.stringify({ rep, what, ttft_ms: r.ttft, prefix_cache: r.usage.prefix_cache, load: load() }));
      };
      await run('cold', s1);
      await settle(s1);
      await admin(s1, '/admin/api/cache/clear', { tier: 'pool' });
      await run('disk', s1);
      await run('remote', s2);
    }
  } finally {
    await stop(s1);
    await stop(s2);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nTTFT, ${prefixTokens}-token prefix + 16 fresh tokens, ${reps} reps (load average now ${load()})`);
  console.log('| prefix from | TTFT mean ms | TTFT each ms | cached tokens |');
  console.log('| --- | --- | --- | --- |');
  for (const k of ['cold', 'disk', 'remote']) {
    console.log(`| ${k} | ${mean(rows[k]).toFixed(0)} | ${rows[k].map((x) => x.toFixed(0)).join(', ')} | ${cached[k].join(', ')} |`);
  }
}

async function benchAgent(redisUrl) {
  const system = tokens(600);
  const results = [];
  for (const shared of [false, true]) {
    const extra = ['--disk-prefix-cache', 'full'];
    if (shared) extra.push('--remote-cache', redisUrl, '--remote-cache-namespace', `agent-${process.pid}`);
    const replicas = [await startServer(extra), await startServer(extra)];
    const seedBefore = seed;
    const convs = Array.from({ length: sessions }, () => [...system]);
    let prompt = 0; let hit = 0; const ttfts = [];
    try {
      for (let t = 0; t < turns; t++) {
        for (let s = 0; s < sessions; s++) {
          convs[s].push(...tokens(150));
          const r = await complete(replicas[(s + t) % 2], convs[s]);
          prompt += r.usage.prompt_tokens;
          hit += r.usage.prompt_tokens_details.cached_tokens;
          ttfts.push(r.ttft);
          if (shared) await settle(replicas[(s + t) % 2]);
        }
      }
    } finally {
      for (const r of replicas) await stop(r);
    }
    seed = seedBefore;  // the same token streams for both runs
    const row = { shared, requests: ttfts.length, hit_rate: hit / prompt, ttft_mean_ms: mean(ttfts), load: load() };
    console.error(JSON.stringify(row));
    results.push(row);
  }
  console.log(`\nAgent workload: ${sessions} sessions x ${turns} turns, round-robin over 2 replicas`);
  console.log('| shared remote tier | requests | hit rate | TTFT mean ms | load average after |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of results) {
    console.log(`| ${r.shared ? 'on' : 'off'} | ${r.requests} | ${(100 * r.hit_rate).toFixed(1)}% | ${r.ttft_mean_ms.toFixed(0)} | ${r.load} |`);
  }
}

const redis = await startRedis();
try {
  console.log(`load average at start: ${load()}`);
  if (args.skip !== 'ttft') await benchTtft(redis.url);
  if (args.skip !== 'agent') await benchAgent(redis.url);
} finally {
  redis.proc.kill('SIGKILL');
}
