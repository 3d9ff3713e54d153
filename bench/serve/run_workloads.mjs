// Runs each workload against a fresh server per cache configuration (off, pool, tiers, and
// `peer`: the native llama-server), side by side in one run, and collects per-request timings
// and cache usage.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { runRequests, timedRequest } from './client.mjs';
import { configArgs, PEER_CONFIG, startPeerServer, startServer } from './server.mjs';
import { summarize } from './report.mjs';
import { idealCachedTokens } from './workloads.mjs';

// A fresh process pays for page faults and thread start-up on its first request; a short
// prompt of ids no workload uses takes that cost before the timed requests.
async function warmUp(server) {
  await timedRequest(server.url, { prompt: [3, 4, 5, 6, 7, 8, 9, 10] }, { maxTokens: 2 });
}

// Runs one workload under one configuration. A restart between phases keeps the disk
// directory (tiers) and loses the pool and host RAM, as a real restart does.
async function runOne(base, workload, config, opts) {
  const diskDir = config === 'tiers' ? mkdtempSync(path.join(opts.diskRoot ?? tmpdir(), 'prefixd-bench-disk-')) : null;
  const peer = config === PEER_CONFIG;
  if (peer && !base.peerBin) throw new Error("the 'peer' configuration needs --peer-server PATH (llama-server)");
  const args = peer ? [] : configArgs(config, { diskDir, diskPolicy: opts.diskPolicy, cacheBytes: opts.cacheBytes });
  const start = () => (peer ? startPeerServer(base) : startServer(base, args));
  const requests = [];
  const sent = [];
  let wall = 0;
  const load = [loadavg()[0]];
  try {
    let server = await start();
    await warmUp(server);
    for (let p = 0; p < workload.phases.length; ++p) {
      if (p > 0) {
        await server.drainDiskWrites();
        await server.stop();
        server = await start();
        await warmUp(server);
      }
      let phase = workload.phases[p];
      if (config === 'off' && workload.offLimit) phase = phase.slice(0, workload.offLimit);
      sent.push(...phase);
      const { results, wall_s } = await runRequests(server.url, phase,
        { concurrency: workload.concurrency, maxTokens: opts.maxTokens });
      wall += wall_s;
      results.forEach((r, i) => requests.push({ phase: p, prompt_tokens: r.usage.prompt_tokens,
        ttft_ms: r.ttft_ms, total_ms: r.total_ms, session: phase[i].session, turn: phase[i].turn,
        usage: r.usage }));
    }
    await server.drainDiskWrites();
    await server.stop();
  } finally {
    if (diskDir) rmSync(diskDir, { recursive: true, force: true });
  }
  load.push(loadavg()[0]);
  const summary = summarize(requests, wall);
  summary.ideal_cached_tokens = idealCachedTokens(sent);
  summary.share_of_ideal = summary.ideal_cached_tokens ? summary.cached_tokens / summary.ideal_cached_tokens : null;
  return { summary: { ...summary, load_avg: load }, requests };
}

// `onRow(workload, config, summary)` is called after each run, for progress.
export async function runWorkloads(base, workloads, configs, opts, onRow = () => {}) {
  const out = [];
  for (const w of workloads) {
    const entry = { name: w.name, description: w.description, concurrency: w.concurrency,
      off_limit: w.offLimit ?? null, phase_sizes: w.phases.map((p) => p.length), by_config: {} };
    for (const c of configs) {
      entry.by_config[c] = await runOne(base, w, c, opts);
      onRow(w, c, entry.by_config[c].summary);
    }
    out.push(entry);
  }
  return out;
}
