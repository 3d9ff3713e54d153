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
//        [--json FILE]
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

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: resolve(opt.model), gpuLayers: 0 });
const context = await model.createContext({
  contextSize: Math.max(pp, tg) + 16, batchSize: pp, threads: { ideal: threads, min: threads },
  sequences: 1, flashAttention: flash,
});
const seq = context.getSequence();
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const randomTokens = (n) => Array.from({ length: n }, () => Math.floor(rand() * vocab));

async function peerRound() {
  await seq.clearHistory();
  const t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(randomTokens(pp));
  const t1 = performance.now();
  await seq.clearHistory();
  // One token at a time, each from the last one's logits (greedy), as llama-bench's tg does.
  let n = 0;
  const t2 = performance.now();
  for await (const _ of seq.evaluate(randomTokens(1), { temperature: 0 })) {
    if (++n >= tg) break;
  }
  const t3 = performance.now();
  return { prefill: (pp * 1000) / (t1 - t0), decode: (tg * 1000) / (t3 - t2) };
}

function prefixdRound() {
  const out = execFileSync(opt.prefixd, ["bench-model", "-m", resolve(opt.model), "-t", String(threads),
    "-r", "1", "--prompt-tokens", String(pp), "--gen-tokens", String(tg), "--json"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const r = JSON.parse(out);
  return { prefill: r.prefill_tok_s, decode: r.decode_tok_s };
}

await peerRound();  // warm-up: page in the weights, let ggml pick its kernels
const rows = [];
for (let r = 0; r < rounds; r++) {
  const load = loadavg()[0];
  const peer = await peerRound();
  const ours = prefixdRound();
  rows.push({ round: r + 1, load, peer, prefixd: ours });
  console.log(`round ${r + 1} (load ${load.toFixed(2)}): llama.cpp pp${pp} ${peer.prefill.toFixed(1)} ` +
    `tg${tg} ${peer.decode.toFixed(1)} | prefixd pp${pp} ${ours.prefill.toFixed(1)} tg${tg} ` +
    `${ours.decode.toFixed(1)} | ratio pp ${(ours.prefill / peer.prefill).toFixed(2)} ` +
    `tg ${(ours.decode / peer.decode).toFixed(2)}`);
}
const mean = (f) => rows.reduce((s, r) => s + f(r), 0) / rows.length;
const summary = {
  model: resolve(opt.model), threads, prompt_tokens: pp, gen_tokens: tg, rounds,
  flash_attention: opt["flash-attention"], cpu: cpus()[0]?.model, rows,
  ratio_prefill: mean((r) => r.prefixd.prefill / r.peer.prefill),
  ratio_decode: mean((r) => r.prefixd.decode / r.peer.decode),
};
console.log(`mean ratio prefixd / llama.cpp: prefill ${summary.ratio_prefill.toFixed(2)}, ` +
  `decode ${summary.ratio_decode.toFixed(2)}`);
if (opt.json) writeFileSync(opt.json, JSON.stringify(summary, null, 2) + "\n");
await context.dispose();
await model.dispose();
