// The prefix cache's hit rate against its pool budget on a request trace, from `prefixd
// replay` (no model run): one replay per budget, JSON and a gnuplot PNG.
//
//   node bench/replay_curve.mjs [--trace ../shared/traces/mooncake_synthetic_trace.jsonl]
//        [--bin build/app/prefixd] [--pool-tokens 65536,262144,...] [--out bench/results]
//
// Prints a Markdown table (pool tokens, cached share of prompt tokens, the trace's ideal) and
// writes OUT/replay-curve.json and OUT/replay-curve.png.
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
    out: { type: 'string', default: path.join(root, 'bench/results') },
  },
});
const args = ['replay', '--trace', opt.trace, '--pool-tokens', opt['pool-tokens'], '--json'];
const result = JSON.parse(execFileSync(opt.bin, args, { encoding: 'utf8', maxBuffer: 1 << 26 }));
mkdirSync(opt.out, { recursive: true });
const json = path.join(opt.out, 'replay-curve.json');
writeFileSync(json, JSON.stringify({ command: `prefixd ${args.join(' ')}`, ...result }, null, 1) + '\n');

console.log(`prefixd ${args.join(' ')}\n`);
console.log('| pool budget (tokens) | cached share of prompt tokens | requests with a hit | evicted blocks |');
console.log('| ---: | ---: | ---: | ---: |');
for (const r of result.runs) {
  const label = r.pool_tokens.toLocaleString('en-US');
  console.log(`| ${label}${r.evicted_blocks === 0 ? ' (holds the whole trace)' : ''} | ${(100 * r.cached_fraction).toFixed(2)}% | ` +
              `${r.hit_requests} / ${r.requests} | ${r.evicted_blocks.toLocaleString('en-US')} |`);
}
console.log(`\nideal (leading blocks an earlier request carried): ${(100 * result.ideal_fraction).toFixed(2)}%`);

const bounded = result.runs.filter((r) => r.evicted_blocks > 0);
const data = bounded.map((r) => `${r.pool_tokens / 1024} ${100 * r.cached_fraction}`).join('\n');
const png = path.join(opt.out, 'replay-curve.png');
const script = `set terminal pngcairo size 800,480 noenhanced
set output '${png}'
set title 'prefix cache hit rate vs pool budget (prefixd replay, ${path.basename(opt.trace)})'
set logscale x 2
set xlabel 'pool budget (K tokens, log scale)'
set format x '%g'
set ylabel 'cached share of prompt tokens (%)'
set yrange [0:100]
set key bottom right
set grid
plot '-' using 1:2 with linespoints title 'pool (LRU tree)', ${100 * result.ideal_fraction} title 'ideal' dashtype 2
${data}
e
`;
const g = spawnSync('gnuplot', [], { input: script, encoding: 'utf8' });
console.log(g.error || g.status !== 0 ? `gnuplot failed: ${g.error?.message ?? g.stderr}` : `wrote ${json} and ${png}`);
