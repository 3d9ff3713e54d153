// Summaries, tables and plots of benchmark results.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';

export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
}

export const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

// One row of a workload x configuration: `results` are timedRequest answers, `wall_s` the
// summed wall time of the phases (restarts excluded).
export function summarize(results, wall_s) {
  const ttfts = results.map((r) => r.ttft_ms);
  const sum = (f) => results.reduce((a, r) => a + (f(r) ?? 0), 0);
  const prompt = sum((r) => r.usage.prompt_tokens);
  const cached = sum((r) => r.usage.prompt_tokens_details?.cached_tokens);
  const byTier = {};
  for (const r of results) {
    for (const [tier, n] of Object.entries(r.usage.prefix_cache?.by_tier ?? {})) byTier[tier] = (byTier[tier] ?? 0) + n;
  }
  return {
    requests: results.length,
    ttft_mean_ms: mean(ttfts), ttft_p50_ms: percentile(ttfts, 0.5), ttft_p95_ms: percentile(ttfts, 0.95),
    // Time to the last token: from sending the request to the end of its stream.
    last_mean_ms: mean(results.map((r) => r.total_ms)),
    req_per_s: results.length / wall_s,
    gen_tok_per_s: sum((r) => r.usage.completion_tokens) / wall_s,
    prompt_tok_per_s: prompt / wall_s,
    prompt_tokens: prompt, cached_tokens: cached,
    // Share of requests that reused anything, and of prompt tokens that came from the cache.
    request_hit_rate: results.filter((r) => (r.usage.prompt_tokens_details?.cached_tokens ?? 0) > 0).length / results.length,
    token_hit_rate: cached / prompt,
    cached_by_tier: byTier,
    wall_s,
  };
}

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');

export function markdownTable(rows) {
  const out = ['| workload | cache | requests | TTFT mean ms | TTFT p50 ms | TTFT p95 ms | last token mean ms | req/s | gen tok/s | prompt tok/s | request hit rate | token hit rate | cached tokens (by tier) | of the ideal |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'];
  for (const r of rows) {
    const tiers = Object.entries(r.cached_by_tier).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${f0(n)}`).join(', ');
    out.push(`| ${r.workload} | ${r.config} | ${r.requests} | ${f0(r.ttft_mean_ms)} | ${f0(r.ttft_p50_ms)} | ${f0(r.ttft_p95_ms)} | ${f0(r.last_mean_ms)} | ` +
      `${f2(r.req_per_s)} | ${f2(r.gen_tok_per_s)} | ${f0(r.prompt_tok_per_s)} | ${f2(r.request_hit_rate)} | ${f2(r.token_hit_rate)} | ` +
      `${f0(r.cached_tokens)}${tiers ? ` (${tiers})` : ''} | ` +
      `${r.share_of_ideal == null ? '-' : `${f2(r.share_of_ideal)} of ${f0(r.ideal_cached_tokens)}`} |`);
  }
  return out.join('\n');
}

// Time to first token per request, one line per configuration, log scale; written with
// gnuplot's pngcairo terminal (gnuplot-nox). `series`: { config: [ttft_ms, ...] }.
// Returns null, or why no plot was written.
export function plotTtft(pngPath, title, series, marks = []) {
  const dataPath = pngPath.replace(/\.png$/, '.dat');
  const names = Object.keys(series);
  const n = Math.max(...names.map((k) => series[k].length));
  const lines = [];
  for (let i = 0; i < n; ++i) {
    lines.push([i + 1, ...names.map((k) => series[k][i] ?? 'NaN')].join(' '));
  }
  writeFileSync(dataPath, lines.join('\n') + '\n');
  const script = [
    'set terminal pngcairo size 900,500 font "sans,10"',
    `set output "${pngPath}"`,
    `set title "${title.replace(/"/g, "'")}"`,
    'set xlabel "request"', 'set ylabel "time to first token (ms, log scale)"',
    'set logscale y', 'set grid', 'set key below', 'set xrange [0.5:*]',
    ...marks.map((x) => `set arrow from ${x},graph 0 to ${x},graph 1 nohead dt 2 lc rgb "gray"`),
    'plot ' + names.map((k, j) => `"${dataPath}" using 1:${j + 2} with linespoints pt 7 ps 0.6 title "${k}"`).join(', '),
  ].join('\n');
  const r = spawnSync('gnuplot', [], { input: script, encoding: 'utf8' });
  rmSync(dataPath, { force: true });
  if (r.error) return `gnuplot did not run (${r.error.message}); install gnuplot-nox for the plots`;
  if (r.status !== 0) return `gnuplot failed: ${r.stderr}`;
  return null;
}
