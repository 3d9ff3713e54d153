// llama.cpp and prefixd side by side on one GGUF file: prefill pp N and decode tg N, shaped like
// llama-bench (and `prefixd bench-model`): a prompt of random token ids evaluated in one batch
// from an empty context, then tokens generated one at a time from an empty context. The two
// engines alternate round by round, so both see the same minutes of a noisy machine.
//
// llama.cpp is node-llama-cpp's prebuilt CPU build (npm package @node-llama-cpp/linux-x64,
// pinned in package-lock.json; its ggml picks the CPU variant for this processor at load time).
// It is the peer measured here, not a dependency of prefixd.
//
//   node bench/peer/peer_bench.mjs --model M.gguf [--prefixd build/app/prefixd] [--threads 2]
//        [--prompt-tokens 512] [--gen-tokens 128] [--rounds 3] [--flash-attention auto|on|off]
//        [--peer-threads 1] [--json FILE]
//
// Each round prints both engines' tok/s and prefixd's ratio to the peer; the peer's figures are
// llama.cpp's own graph timers (its wall clock beside them).
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    prefixd: { type: "string", default: resolve(here, "../../build/app/prefixd") },
    threads: { type: "string", default: "2" },
    "prompt-tokens": { type: "string", default: "512" },
    "gen-tokens": { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    "flash-attention": { type: "string", default: "auto" },
    "peer-threads": { type: "string", default: "1" },
    json: { type: "string" },
  },
});
if (!opt.model) {
  console.error("usage: node bench/peer/peer_bench.mjs --model FILE.gguf [options]; see the header");
  process.exit(2);
}
const threads = Number(opt.threads), pp = Number(opt["prompt-tokens"]), tg = Number(opt["gen-tokens"]);
const rounds = Number(opt.rounds);
const flash = { auto: "auto", on: true, off: false }[opt["flash-attention"]];
if (flash === undefined) {
  console.error("--flash-attention takes auto, on or off");
  process.exit(2);
}
if (!existsSync(resolve(here, "node_modules/node-llama-cpp"))) {
  console.error("peer: installing node-llama-cpp's prebuilt CPU build (npm, once)");
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts",
    "--omit=optional"], { cwd: here, stdio: "inherit", env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" } });
}
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");

// A seeded generator, so every round of both engines sees prompts of the same shape.
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);

// llama.cpp's own timers (llama_perf_context_print, cumulative) are read from its log: they
// time the graph alone, without node-llama-cpp's per-call overhead, the figure llama-bench's
// timing is closest to. `perf` holds the latest totals.
const perf = { promptMs: 0, promptTokens: 0, evalMs: 0, evalRuns: 0 };
const logger = (level, message) => {
  let m = /prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/.exec(message);
  if (m) [perf.promptMs, perf.promptTokens] = [Number(m[1]), Number(m[2])];
  m = /\beval time =\s*([\d.]+) ms \/\s*(\d+) runs/.exec(message);
  if (m && !/prompt/.test(message)) [perf.evalMs, perf.evalRuns] = [Number(m[1]), Number(m[2])];
  if (level === "error" || level === "fatal") console.error(message);
};
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.info, logger });
const model = await llama.loadModel({ modelPath: resolve(opt.model), gpuLayers: 0 });
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const randomTokens = (n) => Array.from({ length: n }, () => Math.floor(rand() * vocab));

// One context per peer thread count. The comparison is at --threads; the peer also runs at
// the counts of --peer-threads, and each ratio is taken against its best figure of the round,
// so that a slow thread hand-off on this machine (seen here: ggml's 2 threads take ~10 ms per
// single-token graph in this VM, 1 thread does not) is not counted against llama.cpp.
const peerThreads = [...new Set([threads, ...opt["peer-threads"].split(",").filter(Boolean).map(Number)])];
const contexts = new Map();
for (const th of peerThreads) {
  contexts.set(th, await model.createContext({
    contextSize: Math.max(pp, tg) + 16, batchSize: pp, threads: { ideal: th, min: th },
    sequences: 1, flashAttention: flash, performanceTracking: true,
  }));
}

async function timers(context) {
  await context.printTimings();
  return { ...perf };
}

async function peerRound(context) {
  const seq = context.getSequence();
  await seq.clearHistory();
  const p0 = await timers(context);
  const t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(randomTokens(pp));
  const t1 = performance.now();
  const p1 = await timers(context);
  await seq.clearHistory();
  // One token at a time, each from the last one's logits (greedy), as llama-bench's tg does.
  let n = 0;
  const t2 = performance.now();
  for await (const _ of seq.evaluate(randomTokens(1), { temperature: 0 })) {
    if (++n >= tg) break;
  }
  const t3 = performance.now();
  const p2 = await timers(context);
  seq.dispose();
  return {
    // Wall clock seen by the caller, and llama.cpp's own graph time (the figure compared).
    wall: { prefill: (pp * 1000) / (t1 - t0), decode: (tg * 1000) / (t3 - t2) },
    prefill: ((p1.promptTokens - p0.promptTokens) * 1000) / (p1.promptMs - p0.promptMs),
    decode: ((p2.evalRuns - p1.evalRuns) * 1000) / (p2.evalMs - p1.evalMs),
  };
}

function prefixdRound() {
  const out = execFileSync(opt.prefixd, ["bench-model", "-m", resolve(opt.model), "-t", String(threads),
    "-r", "1", "--prompt-tokens", String(pp), "--gen-tokens", String(tg), "--json"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const r = JSON.parse(out);
  return { prefill: r.prefill_tok_s, decode: r.decode_tok_s };
}

for (const c of contexts.values()) await peerRound(c);  // warm-up: page in the weights
const rows = [];
const f1 = (x) => x.toFixed(1);
for (let r = 0; r < rounds; r++) {
  const load = loadavg()[0];
  const peer = {};
  for (const [th, c] of contexts) peer[th] = await peerRound(c);
  const ours = prefixdRound();
  const best = {
    prefill: Math.max(...Object.values(peer).map((p) => p.prefill)),
    decode: Math.max(...Object.values(peer).map((p) => p.decode)),
  };
  rows.push({ round: r + 1, load, peer, peer_best: best, prefixd: ours });
  const peerText = Object.entries(peer).map(([th, p]) => `-t ${th}: pp${pp} ${f1(p.prefill)} tg${tg} ` +
    `${f1(p.decode)} (wall ${f1(p.wall.prefill)} / ${f1(p.wall.decode)})`).join(", ");
  console.log(`round ${r + 1} (load ${load.toFixed(2)}): llama.cpp ${peerText} | prefixd -t ${threads}: ` +
    `pp${pp} ${f1(ours.prefill)} tg${tg} ${f1(ours.decode)} | ratio to the peer's best: ` +
    `pp ${(ours.prefill / best.prefill).toFixed(2)} tg ${(ours.decode / best.decode).toFixed(2)}`);
}
const mean = (f) => rows.reduce((s, r) => s + f(r), 0) / rows.length;
const summary = {
  model: resolve(opt.model), threads, prompt_tokens: pp, gen_tokens: tg, rounds,
  flash_attention: opt["flash-attention"], cpu: cpus()[0]?.model, rows,
  peer_threads: peerThreads,
  ratio_prefill: mean((r) => r.prefixd.prefill / r.peer_best.prefill),
  ratio_decode: mean((r) => r.prefixd.decode / r.peer_best.decode),
};
console.log(`mean ratio prefixd / llama.cpp's best: prefill ${summary.ratio_prefill.toFixed(2)}, ` +
  `decode ${summary.ratio_decode.toFixed(2)}`);
if (opt.json) writeFileSync(opt.json, JSON.stringify(summary, null, 2) + "\n");
for (const c of contexts.values()) await c.dispose();
await model.dispose();
