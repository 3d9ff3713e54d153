// Time to first token for one long prefix served from each place it can be (issue 5), in one
// run, on one server configuration (pool + host RAM + disk, scope `full`):
//
//   cold   an empty cache: the whole prompt is computed
//   pool   the prefix is in the KV pool
//   host   the pool was cleared (/admin/api/cache/clear {tier: pool}): the prefix comes back
//          from host RAM
//   disk   after a restart on the same disk directory, with the page cache of the block files
//          dropped (dd iflag=nocache), so the blocks are read from the device
//   disk-warm  after a second restart, the block files still in the page cache
//
// Each repetition uses a new prefix and each request a new suffix of `suffixTokens` (0, the
// default: the same prompt is resent, a full hit); medians over repetitions.
// The disk restore bandwidth (block bytes read / usage.prefix_cache.load_ms) is set next to
// the sequential read bandwidth of the same file system measured by dd with O_DIRECT.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { timedRequest } from './client.mjs';
import { configArgs, dropPageCache, startServer } from './server.mjs';
import { percentile } from './report.mjs';
import { tokenSource } from './workloads.mjs';

export const PLACES = ['cold', 'pool', 'host', 'disk', 'disk-warm'];

// Sequential read bandwidth of the file system holding `dir`, in MB/s (10^6 bytes/s), by
// `dd iflag=direct` over a file of `mib` MiB of random bytes written for the purpose.
export function ddReadMBps(dir, mib = 512) {
  const file = path.join(dir, 'dd-read-test.bin');
  try {
    const w = spawnSync('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync', 'status=none']);
    if (w.status !== 0) throw new Error(`dd could not write ${file}: ${w.stderr}`);
    const r = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'], { encoding: 'utf8' });
    const m = /(\d+) bytes .* copied, ([\d.]+) s/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`dd read failed: ${r.stderr}`);
    return { mb_per_s: Number(m[1]) / Number(m[2]) / 1e6, bytes: Number(m[1]), seconds: Number(m[2]),
      command: `dd if=FILE of=/dev/null bs=1M iflag=direct (FILE: ${mib} MiB of /dev/urandom, under ${dir})` };
  } finally {
    rmSync(file, { force: true });
  }
}

async function one(url, prompt, place, maxTokens) {
  const r = await timedRequest(url, { prompt }, { maxTokens });
  const pc = r.usage.prefix_cache ?? {};
  return { place, ttft_ms: r.ttft_ms, cached_tokens: r.usage.prompt_tokens_details?.cached_tokens ?? 0,
    by_tier: pc.by_tier ?? {}, load_ms: pc.load_ms ?? 0 };
}

export async function runTierTtft(base, { prefixTokens = 1500, suffixTokens = 0, reps = 3, maxTokens = 4, vocab, diskRoot, ddMib = 512 }) {
  const dir = mkdtempSync(path.join(diskRoot ?? tmpdir(), 'prefixd-bench-tiers-'));
  const args = configArgs('tiers', { diskDir: dir, diskPolicy: 'full' });
  const src = tokenSource(vocab, 5150);
  const prefixes = Array.from({ length: reps }, () => src.ids(prefixTokens));
  const runs = [];
  const load = [loadavg()[0]];
  try {
    let server = await startServer(base, args);
    const props = await server.getJson('/props');
    await timedRequest(server.url, { prompt: src.ids(32) }, { maxTokens: 1 });  // warm-up
    for (const p of prefixes) {
      runs.push(await one(server.url, [...p, ...src.ids(suffixTokens)], 'cold', maxTokens));
      runs.push(await one(server.url, [...p, ...src.ids(suffixTokens)], 'pool', maxTokens));
      await server.admin('/admin/api/cache/clear', { tier: 'pool' });
      runs.push(await one(server.url, [...p, ...src.ids(suffixTokens)], 'host', maxTokens));
    }
    for (const place of ['disk', 'disk-warm']) {
      await server.drainDiskWrites();
      await server.stop();
      if (place === 'disk') dropPageCache(dir);
      server = await startServer(base, args);
      await timedRequest(server.url, { prompt: src.ids(32) }, { maxTokens: 1 });
      for (const p of prefixes) runs.push(await one(server.url, [...p, ...src.ids(suffixTokens)], place, maxTokens));
    }
    await server.stop();
    load.push(loadavg()[0]);
    const dd = ddReadMBps(dir, ddMib);
    return summarizeTiers(runs, props, dd, load, { prefixTokens, suffixTokens, reps });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function summarizeTiers(runs, props, dd, load, params) {
  const blockBytes = props.kv.block_bytes;
  const blockSize = props.kv.block_size;
  const rows = PLACES.map((place) => {
    const rs = runs.filter((r) => r.place === place);
    const row = { place, ttft_median_ms: percentile(rs.map((r) => r.ttft_ms), 0.5),
      ttft_ms: rs.map((r) => r.ttft_ms), cached_tokens: rs.map((r) => r.cached_tokens),
      by_tier: rs.map((r) => r.by_tier), load_ms: rs.map((r) => r.load_ms) };
    if (place.startsWith('disk')) {
      // Only full blocks live on disk; what load_ms covers is bringing them into the pool.
      const mbps = rs.map((r) => ((r.by_tier.disk ?? 0) / blockSize) * blockBytes / (r.load_ms / 1000) / 1e6);
      row.restore_mb_per_s_median = percentile(mbps, 0.5);
      row.restore_mb_per_s = mbps;
    }
    return row;
  });
  const cold = rows[0].ttft_median_ms;
  for (const r of rows) r.ratio_to_cold = r.ttft_median_ms / cold;
  return { params, block_bytes: blockBytes, block_size: blockSize, rows, dd, load_avg: load };
}
