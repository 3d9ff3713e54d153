// The prefix cache's hit rate against its pool and host RAM budgets on a request trace, from
// `prefixd replay` (no model run): one replay per (host, pool) budget pair, JSON and a gnuplot
// PNG with one curve per host budget.
//
//   node bench/replay_curve.mjs [--trace ../shared/traces/mooncake_synthetic_trace.jsonl]
//        [--bin build/app/prefixd] [--pool-tokens 65536,262144,...] [--host-tokens 0,4194304,...]
//        [--out bench/results]
//
// Prints a Markdown table (host and pool tokens, cached share of prompt tokens and its host
// part, the trace's ideal) and writes OUT/replay-curve.json and OUT/replay-curve.png.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    trace: { type: 'string', default: path.join(root, '../shared/traces/mooncake_synthetic_trace.jsonl') },
    bin: { type: 'string', default: path.join(root, 'build/app/prefixd') },
    'pool-tokens': { type: 'string', default: '65536,262144,1048576,2097152,4194304,8388608,16777216,33554432,0' },
    'host-tokens': { type: 'string', default: '0,4194304,16777216' },
    'block-size': { type: 'string', default: '16' },
    out: { type: 'string', default: path.join(root, 'bench/results') },
  },
});
const bs = Number(opt['block-size']);
const runs = [];
const commands = [];
let ideal = 0;
for (const host of opt['host-tokens'].split(',').map(Number)) {
  const args = ['replay', '--trace', opt.trace, '--pool-tokens', opt['pool-tokens'], '--block-size', String(bs),
    '--host-blocks', String(Math.ceil(host / bs)), '--json'];
  commands.push(`prefixd ${args.join(' ')}`);
  const result = JSON.parse(execFileSync(opt.bin, args, { encoding: 'utf8', maxBuffer: 1 << 26 }));
  ideal = result.ideal_fraction;
  for (const r of result.runs) runs.push({ host_tokens: host, ...r });
}
mkdirSync(opt.out, { recursive: true });
const json = path.join(opt.out, 'replay-curve.json');
writeFileSync(json, JSON.stringify({ commands, trace: opt.trace, block_size: bs, ideal_fraction: ideal, runs }, null, 1) + '\n');

for (const c of commands) console.log(c);
console.log('\n| host budget (tokens) | pool budget (tokens) | cached share of prompt tokens | of which from host RAM | requests with a hit | evicted blocks |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of runs) {
  const label = r.pool_tokens.toLocaleString('en-US');
  console.log(`| ${r.host_tokens.toLocaleString('en-US')} | ${label}${r.evicted_blocks === 0 ? ' (holds the whole trace)' : ''} | ` +
              `${(100 * r.cached_fraction).toFixed(2)}% | ${(100 * r.by_tier.host.cached_fraction).toFixed(2)}% | ` +
              `${r.hit_requests} / ${r.requests} | ${r.evicted_blocks.toLocaleString('en-US')} |`);
}
console.log(`\nideal (leading blocks an earlier request carried): ${(100 * ideal).toFixed(2)}%`);

const hosts = [...new Set(runs.map((r) => r.host_tokens))];
const series = hosts.map((h) => runs.filter((r) => r.host_tokens === h && r.evicted_blocks > 0)
  .map((r) => `${r.pool_tokens / 1024} ${100 * r.cached_fraction}`).join('\n') + '\ne\n');
const titles = hosts.map((h, i) => `'-' using 1:2 with linespoints title 'host RAM ${h === 0 ? 'none' : `${h / 1048576}M tokens`}'`);
const png = path.join(opt.out, 'replay-curve.png');
const script = `set terminal pngcairo size 800,480 noenhanced
set output '${png}'
set title 'prefix cache hit rate vs pool and host budgets (prefixd replay, ${path.basename(opt.trace)})'
set logscale x 2
set xlabel 'pool budget (K tokens, log scale)'
set format x '%g'
set ylabel 'cached share of prompt tokens (%)'
set yrange [0:100]
set key bottom right
set grid
plot ${titles.join(', ')}, ${100 * ideal} title 'ideal' dashtype 2
${series.join('')}`;
const g = spawnSync('gnuplot', [], { input: script, encoding: 'utf8' });
console.log(g.error || g.status !== 0 ? `gnuplot failed: ${g.error?.message ?? g.stderr}` : `wrote ${json} and ${png}`);
