// What the cache layer costs the engine thread (issue 17): runs bench-serve's agent workload
// against `prefixd serve` in several configurations, alternating, and reads the engine's own
// counters from /metrics: steps, and the engine thread's CPU time outside the forward pass
// (admission and the cache's protocol, scheduling, sampling, KV events, streaming). CPU time of
// one thread is not stretched by other processes the way wall time is, so the figure holds on
// a shared machine.
//
//   node bench/engine_overhead.mjs --model GGUF [--bin build/app/prefixd] [--bins A,B]
//        [--configs pool,tiers,tiers+events] [--rounds 3] [--threads 2] [--ctx 4096]
//        [--max-tokens 32] [--set turns=8,...] [--json FILE]
//
// --bins runs every configuration with each binary (e.g. a build from before a change and one
// from after; both must have the prefixd_engine_* metrics). Configurations: pool, tiers (host
// RAM 64 MiB + disk, write-through), and `+events` publishes KV events on a loopback port with
// nobody subscribed (the publisher's cost without a reader's); `+log` writes a request log
// (--request-log: the engine's operations, engine/request_log.h). Suffixes combine.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { runRequests } from './serve/client.mjs';
import { configArgs, startServer } from './serve/server.mjs';
import { buildWorkloads, SIZES } from './serve/workloads.mjs';

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument '${argv[i]}'`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  return a;
}

function metric(text, name) {
  const m = text.match(new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm'));
  if (!m) throw new Error(`/metrics has no ${name} (a build without the engine step timing?)`);
  return Number(m[1]);
}

async function freeTcpPort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

async function configFlags(config, diskDir) {
  const [cache, ...extras] = config.split('+');
  const args = configArgs(cache, { diskDir, hostBytes: 64 << 20 });
  for (const extra of extras) {
    if (extra === 'events') {
      const port = await freeTcpPort();
      args.push('--kv-events', `tcp://127.0.0.1:${port}`, '--kv-events-replay', `tcp://127.0.0.1:${await freeTcpPort()}`);
    } else if (extra === 'log') {
      // Beside the disk folder, not in it (the disk tier's scan would meet a foreign file).
      args.push('--request-log', `${diskDir}.request-log.jsonl`);
    } else {
      throw new Error(`unknown configuration suffix '+${extra}' (events, log)`);
    }
  }
  return args;
}

async function runOnce(base, config, requests, maxTokens) {
  const diskDir = mkdtempSync(path.join(tmpdir(), 'prefixd-overhead-'));
  const server = await startServer(base, await configFlags(config, diskDir));
  try {
    await runRequests(server.url, requests, { concurrency: 1, maxTokens });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const steps = metric(text, 'prefixd_engine_steps_total');
    const outside = metric(text, 'prefixd_engine_thread_cpu_outside_forward_seconds_total');
    const cpu = metric(text, 'prefixd_engine_thread_cpu_seconds_total');
    const wall = metric(text, 'prefixd_engine_step_seconds_total');
    const forwardWall = metric(text, 'prefixd_engine_forward_seconds_total');
    // Wall time of the steps outside the forward pass: what a step's latency pays for the
    // cache (waits included), but stretched by other processes on a loaded machine.
    return { steps, outside_cpu_s: outside, thread_cpu_s: cpu, step_wall_s: wall,
      forward_wall_s: forwardWall, outside_wall_us_per_step: ((wall - forwardWall) / steps) * 1e6,
      outside_us_per_step: (outside / steps) * 1e6, outside_share_of_thread_cpu: outside / cpu };
  } finally {
    await server.stop();
    rmSync(diskDir, { recursive: true, force: true });
    rmSync(`${diskDir}.request-log.jsonl`, { force: true });
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (!a.model) throw new Error('--model GGUF is required');
  const bins = (a.bins ?? a.bin ?? 'build/app/prefixd').split(',');
  const configs = (a.configs ?? 'pool,tiers,tiers+events').split(',');
  const rounds = Number(a.rounds ?? 3);
  const maxTokens = Number(a['max-tokens'] ?? 32);
  const sizes = { ...SIZES.full };
  for (const kv of (a.set ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    sizes[k] = Number(v);
  }
  const base0 = { model: a.model, threads: Number(a.threads ?? 2), ctx: Number(a.ctx ?? 4096) };
  const probe = await startServer({ ...base0, bin: bins[0] }, ['--prefix-cache', 'off']);
  const vocab = (await probe.getJson('/props')).model.vocab_size;
  await probe.stop();
  const [agent] = buildWorkloads(sizes, vocab, ['agent']);
  const requests = agent.phases.flat();
  const rows = [];
  for (let r = 0; r < rounds; ++r) {
    for (const bin of bins) {
      for (const config of configs) {
        const load = loadavg()[0];
        const res = await runOnce({ ...base0, bin }, config, requests, maxTokens);
        rows.push({ round: r, bin, config, load_1min: load, ...res });
        console.log(`round ${r} ${bin} ${config}: ${res.steps} steps, outside forward ` +
          `${res.outside_us_per_step.toFixed(1)} us/step (${(100 * res.outside_share_of_thread_cpu).toFixed(2)}% ` +
          `of the engine thread's CPU; wall ${res.outside_wall_us_per_step.toFixed(1)} us/step), load ${load.toFixed(1)}`);
      }
    }
  }
  console.log('\n| binary | configuration | steps (mean) | CPU outside forward, us/step (median) | share of engine-thread CPU (median) | wall outside forward, us/step (median) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  const median = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  for (const bin of bins) {
    for (const config of configs) {
      const rs = rows.filter((x) => x.bin === bin && x.config === config);
      const steps = rs.reduce((s, x) => s + x.steps, 0) / rs.length;
      console.log(`| ${bin} | ${config} | ${steps.toFixed(0)} | ${median(rs.map((x) => x.outside_us_per_step)).toFixed(1)} | ` +
        `${(100 * median(rs.map((x) => x.outside_share_of_thread_cpu))).toFixed(2)}% | ` +
        `${median(rs.map((x) => x.outside_wall_us_per_step)).toFixed(1)} |`);
    }
  }
  if (a.json) writeFileSync(a.json, JSON.stringify({ argv: process.argv.slice(2), sizes, rows }, null, 1));
}

main().catch((e) => { console.error(`engine_overhead: ${e.stack ?? e}`); process.exit(1); });
