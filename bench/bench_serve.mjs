// prefixd's workload benchmark (issue 7) and cache-tier figures (issue 5): starts its own
// servers on 127.0.0.1, drives them over HTTP, and writes JSON results, gnuplot PNGs and a
// Markdown summary. Usually run through scripts/bench-serve.sh.
//
//   node bench/bench_serve.mjs [--suite workloads,tiers,scope] [--quick] [--model GGUF]
//        [--bin build/app/prefixd] [--threads 2] [--ctx 4096 (2048 with --quick)] [--out bench/results]
//        [--name NAME] [--workloads regenerate,shared,agent,volatile,restart]
//        [--configs off,pool,tiers[,peer]] [--peer-server peer/build/bin/llama-server]
//        [--max-tokens 16] [--disk-prefix-cache auto:30]
//        [--set key=value,...] [--disk-root DIR] [--no-plots] [--prefix-tokens 1500] [--suffix-tokens 0] [--reps 3]
//        [--policies auto:2,auto:8,auto:30,full] [--scope-pool-tokens 1024] [--dd-mib 512]
//        [--server-args "--state-checkpoint-blocks 4 ..."]  (more flags for every prefixd server)
//
// Suites:
//   workloads  regenerate, shared system prompt at several concurrencies, agent sessions,
//              volatile tail, restart; each with the cache off, the pool only and all tiers,
//              and with `peer` in --configs the native llama-server too (bench/serve/workloads.mjs)
//   tiers      time to first token of a 1,500-token prefix from the pool, host RAM, disk after
//              a restart, and cold; disk restore vs dd bandwidth (bench/serve/tier_ttft.mjs)
//   scope      disk hit rate and cached tokens of auto:2, auto:8, auto:30 and full on an
//              agent-style chat trace (bench/serve/scope_trace.mjs)
// --quick: stories260K-sized sizes, about a minute per suite. --set overrides a size (see
// SIZES in workloads.mjs, TRACE_SIZES in scope_trace.mjs), e.g. --set users=4,levels=1+4.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownTable, plotTtft } from './serve/report.mjs';
import { runWorkloads } from './serve/run_workloads.mjs';
import { runScopeTrace, TRACE_SIZES } from './serve/scope_trace.mjs';
import { CONFIGS, startServer } from './serve/server.mjs';
import { runTierTtft } from './serve/tier_ttft.mjs';
import { buildWorkloads, SIZES } from './serve/workloads.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const a = { flags: new Set() };
  for (let i = 0; i < argv.length; ++i) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument '${argv[i]}' (flags start with --)`);
    const k = argv[i].slice(2);
    if (['quick', 'no-plots'].includes(k)) a.flags.add(k);
    else if (i + 1 < argv.length) a[k] = argv[++i];
    else throw new Error(`--${k} needs a value`);
  }
  return a;
}

// Applies --set key=value,... to a sizes object; lists are written 1+8+32.
function applySets(sizes, sets) {
  const out = { ...sizes };
  for (const kv of (sets ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    if (!(k in out)) continue;
    out[k] = Array.isArray(out[k]) ? v.split('+').map(Number) : Number(v);
  }
  return out;
}

function machine() {
  return { cpu: cpus()[0]?.model ?? '?', cores: cpus().length, mem_gib: +(totalmem() / 2 ** 30).toFixed(1) };
}

async function modelInfo(base) {
  const s = await startServer(base, ['--prefix-cache', 'off']);
  try { return await s.getJson('/props'); } finally { await s.stop(); }
}

function printTiers(t) {
  console.log('\n| prefix served from | TTFT median ms | ratio to cold | cached tokens | restore MB/s |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of t.rows) {
    console.log(`| ${r.place} | ${r.ttft_median_ms.toFixed(1)} | ${r.ratio_to_cold.toFixed(3)} | ${r.cached_tokens.join(', ')} | ` +
      `${r.restore_mb_per_s_median ? r.restore_mb_per_s_median.toFixed(0) : '-'} |`);
  }
  console.log(`dd sequential read (O_DIRECT): ${t.dd.mb_per_s.toFixed(0)} MB/s`);
}

function printScope(s) {
  console.log('\n| policy | requests | prompt tokens | cached tokens | from pool | from disk | disk request hit rate | disk token hit rate | blocks written | disk bytes |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of s.rows) {
    console.log(`| ${r.policy} | ${r.requests} | ${r.prompt_tokens} | ${r.cached_tokens} | ${r.pool_tokens} | ${r.disk_tokens} | ` +
      `${r.disk_request_hit_rate.toFixed(2)} | ${r.disk_token_hit_rate.toFixed(3)} | ${r.disk_blocks_written} | ${r.disk_bytes} |`);
  }
}

// The issue-7 target on the agent workload: all tiers at least 5x lower mean TTFT than off.
function agentTarget(workloads) {
  const a = workloads.find((w) => w.name === 'agent');
  if (!a?.by_config.off || !a.by_config.tiers) return null;
  const ratio = a.by_config.off.summary.ttft_mean_ms / a.by_config.tiers.summary.ttft_mean_ms;
  return { off_over_tiers: ratio, met: ratio >= 5 };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const quick = a.flags.has('quick');
  for (const kv of (a.set ?? '').split(',').filter(Boolean)) {
    const k = kv.split('=')[0];
    if (!(k in SIZES.full) && !(k in TRACE_SIZES.full)) {
      throw new Error(`--set ${k}: not a size; the sizes are ${[...new Set([...Object.keys(SIZES.full), ...Object.keys(TRACE_SIZES.full)])].join(', ')}`);
    }
  }
  const base = { bin: path.resolve(a.bin ?? path.join(root, 'build/app/prefixd')),
    model: path.resolve(a.model ?? (quick ? path.join(root, '../shared/models/stories260K.gguf') : '/tmp/models/llama-124m-f16-ctx4096.gguf')),
    threads: Number(a.threads ?? 2), ctx: Number(a.ctx ?? (quick ? 2048 : 4096)),
    extra: (a['server-args'] ?? '').split(' ').filter(Boolean),
    peerBin: a['peer-server'] ? path.resolve(a['peer-server']) : null };
  const suites = (a.suite ?? 'workloads,tiers,scope').split(',');
  const outDir = path.resolve(a.out ?? path.join(root, 'bench/results'));
  const name = a.name ?? `bench-serve${quick ? '-quick' : ''}`;
  const plots = !a.flags.has('no-plots');
  mkdirSync(outDir, { recursive: true });
  const props = await modelInfo(base);
  const model = props.model;
  const result = { command: `node bench/bench_serve.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    started: new Date().toISOString(), machine: machine(), load_avg_start: loadavg(), model,
    threads: base.threads };
  const opts = { maxTokens: Number(a['max-tokens'] ?? 16), diskPolicy: a['disk-prefix-cache'], diskRoot: a['disk-root'] };

  if (suites.includes('workloads')) {
    const sizes = applySets(SIZES[quick ? 'quick' : 'full'], a.set);
    const workloads = buildWorkloads(sizes, model.vocab_size, (a.workloads ?? '').split(',').filter(Boolean));
    const longest = Math.max(...workloads.flatMap((w) => w.phases.flat().map((r) => r.prompt.length)));
    if (longest + opts.maxTokens > model.context_length) {
      throw new Error(`the longest prompt has ${longest} tokens; with --max-tokens ${opts.maxTokens} it does not ` +
        `fit the context of ${model.context_length}: pass a larger --ctx or smaller sizes with --set`);
    }
    const configs = (a.configs ?? CONFIGS.join(',')).split(',');
    result.workload_sizes = sizes;
    result.workloads = await runWorkloads(base, workloads, configs, opts, (w, c, s) =>
      console.error(`${w.name} ${c}: ${s.requests} requests, TTFT mean ${s.ttft_mean_ms.toFixed(0)} ms, ` +
        `cached ${s.cached_tokens}/${s.prompt_tokens} tokens, load ${s.load_avg.map((x) => x.toFixed(1)).join('-')}`));
    result.agent_target = agentTarget(result.workloads);
    if (plots) {
      for (const w of result.workloads) {
        const series = Object.fromEntries(Object.entries(w.by_config).map(([c, r]) => [c, r.requests.map((q) => q.ttft_ms)]));
        const marks = w.phase_sizes.length > 1 ? [w.phase_sizes[0] + 0.5] : [];
        const err = plotTtft(path.join(outDir, `${name}-${w.name}.png`), `${w.name}: ${w.description}`, series, marks);
        if (err) console.error(err);
      }
    }
  }
  if (suites.includes('tiers')) {
    result.tier_ttft = await runTierTtft(base, { vocab: model.vocab_size, diskRoot: opts.diskRoot,
      prefixTokens: Number(a['prefix-tokens'] ?? (quick ? 300 : 1500)), reps: Number(a.reps ?? 3),
      suffixTokens: Number(a['suffix-tokens'] ?? 0),
      ddMib: Number(a['dd-mib'] ?? 512) });
  }
  if (suites.includes('scope')) {
    const sizes = applySets(TRACE_SIZES[quick ? 'quick' : 'full'], a.set);
    result.scope = await runScopeTrace(base, { policies: (a.policies ?? 'auto:2,auto:8,auto:30,full').split(','),
      sizes, cacheBytes: Math.ceil(Number(a['scope-pool-tokens'] ?? (quick ? 256 : 1024)) / props.kv.block_size) * props.kv.block_bytes,
      diskRoot: opts.diskRoot });
  }
  result.finished = new Date().toISOString();
  result.load_avg_end = loadavg();
  const jsonPath = path.join(outDir, `${name}.json`);
  writeFileSync(jsonPath, JSON.stringify(result, null, 1) + '\n');

  console.log(`# ${result.command}\n# ${result.machine.cpu}, ${result.machine.cores} cores; model ${model.id}; ` +
    `load avg ${result.load_avg_start.map((x) => x.toFixed(1)).join(' ')} -> ${result.load_avg_end.map((x) => x.toFixed(1)).join(' ')}`);
  if (result.workloads) {
    const rows = result.workloads.flatMap((w) => Object.entries(w.by_config).map(([config, r]) => ({ workload: w.name, config, ...r.summary })));
    console.log('\n' + markdownTable(rows));
    if (result.agent_target) {
      console.log(`\nagent: mean TTFT off / all tiers = ${result.agent_target.off_over_tiers.toFixed(1)}x (target >= 5x: ${result.agent_target.met ? 'met' : 'NOT met'})`);
    }
  }
  if (result.tier_ttft) printTiers(result.tier_ttft);
  if (result.scope) printScope(result.scope);
  console.log(`\nwrote ${jsonPath}${plots && result.workloads ? ` and ${name}-*.png` : ''}`);
}

main().catch((e) => { console.error(`bench_serve: ${e.stack ?? e}`); process.exit(1); });
