// llama.cpp and prefixd side by side on one GGUF file: prefill pp N and decode tg N as
// llama-bench measures them (a prompt of random token ids evaluated in one batch from an empty
// context; tokens generated one at a time), and optionally whole-batch prefill and decode at
// several parallel sequences as llama-batched-bench measures them. The two engines alternate
// round by round (and which goes first alternates too), so both see the same minutes of a noisy
// machine.
//
// The peer is a native llama.cpp built on this machine by scripts/build-peer.sh (the source is
// the gitRelease.bundle of the pinned npm package node-llama-cpp, built with GGML_NATIVE=ON):
// `llama-bench` and `llama-batched-bench`. It is the peer measured here, not a dependency of
// prefixd. (Until issue 15 this script ran node-llama-cpp's prebuilt CPU binary, whose generic
// x86 build is slower than a native one; figures from it flatter prefixd.)
//
//   node bench/peer/peer_bench.mjs --model M.gguf [--prefixd build/app/prefixd] [--threads 2]
//        [--prompt-tokens 512] [--gen-tokens 128] [--rounds 3] [--reps 2]
//        [--flash-attention auto|on|off] [--peer-threads 1] [--peer-bin DIR]
//        [--batch 8,32] [--batch-prompt-tokens 128] [--batch-gen-tokens 32]
//        [--prefixd-args="--quant-dot int8"] [--no-single] [--json FILE]
//
// Per round: `llama-bench -t T -p PP -n TG -r REPS -o json` for T in {--threads, --peer-threads}
// and `prefixd bench-model --threads T -r REPS --prompt-tokens PP --gen-tokens TG --json`; with
// --batch, `llama-batched-bench -npp BP -ntg BG -npl N1,N2 --output-format jsonl` at the same
// thread counts and `prefixd bench-model --batch N --prompt-tokens BP --gen-tokens BG -r 1`
// for each N. Each ratio is prefixd / the peer's best thread count of the round. The load
// average (1, 5, 15 min) is recorded at the start of each round.
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    prefixd: { type: "string", default: resolve(root, "build/app/prefixd") },
    threads: { type: "string", default: "2" },
    "prompt-tokens": { type: "string", default: "512" },
    "gen-tokens": { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    reps: { type: "string", default: "2" },
    "flash-attention": { type: "string", default: "auto" },
    "peer-threads": { type: "string", default: "1" },
    "peer-bin": { type: "string" },
    batch: { type: "string", default: "" },
    "batch-prompt-tokens": { type: "string", default: "128" },
    "batch-gen-tokens": { type: "string", default: "32" },
    "prefixd-args": { type: "string", default: "" },
    "no-single": { type: "boolean", default: false },
    json: { type: "string" },
  },
});
if (!opt.model) {
  console.error("usage: node bench/peer/peer_bench.mjs --model FILE.gguf [options]; see the header");
  process.exit(2);
}
const num = (k) => Number(opt[k]);
const threads = num("threads"), pp = num("prompt-tokens"), tg = num("gen-tokens");
const rounds = num("rounds"), reps = num("reps");
const bpp = num("batch-prompt-tokens"), btg = num("batch-gen-tokens");
const batches = opt.batch.split(",").filter(Boolean).map(Number);
if (!["auto", "on", "off"].includes(opt["flash-attention"])) {
  console.error("--flash-attention takes auto, on or off");
  process.exit(2);
}
const prefixdArgs = opt["prefixd-args"].split(/\s+/).filter(Boolean);

// The native peer: --peer-bin, or what scripts/build-peer.sh built (it prints the folder).
function peerBin() {
  if (opt["peer-bin"]) return resolve(opt["peer-bin"]);
  try {
    return execFileSync(resolve(root, "scripts/build-peer.sh"), ["--print"], { encoding: "utf8" }).trim();
  } catch {
    return null;
  }
}
const bin = peerBin();
if (!bin || !existsSync(resolve(bin, "llama-bench"))) {
  console.error("peer: the native llama.cpp is not built; run scripts/build-peer.sh (or pass --peer-bin DIR)");
  process.exit(3);
}
const model = resolve(opt.model);
const peerThreads = [...new Set([threads, ...opt["peer-threads"].split(",").filter(Boolean).map(Number)])];
const run = (file, args) => execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
  maxBuffer: 64 << 20 });

let peerInfo = null;
function peerSingle(th) {
  const out = JSON.parse(run(resolve(bin, "llama-bench"), ["-m", model, "-t", String(th), "-p", String(pp),
    "-n", String(tg), "-r", String(reps), "-fa", opt["flash-attention"], "-o", "json"]));
  const pick = (f) => out.find(f);
  const p = pick((r) => r.n_prompt === pp && r.n_gen === 0);
  const g = pick((r) => r.n_prompt === 0 && r.n_gen === tg);
  peerInfo ??= { build_commit: out[0]?.build_commit, build_number: out[0]?.build_number,
    cpu_info: out[0]?.cpu_info, backends: out[0]?.backends, model_type: out[0]?.model_type };
  return { prefill: p.avg_ts, decode: g.avg_ts, prefill_samples: p.samples_ts, decode_samples: g.samples_ts };
}

function prefixdSingle() {
  const r = JSON.parse(run(opt.prefixd, ["bench-model", "-m", model, "--threads", String(threads),
    "-r", String(reps), "--prompt-tokens", String(pp), "--gen-tokens", String(tg), "--json", ...prefixdArgs]));
  return { prefill: r.prefill_tok_s, decode: r.decode_tok_s };
}

// llama-batched-bench prints its jsonl lines through llama.cpp's asynchronous log, and a line
// is sometimes lost when the process exits (seen here for the last -npl entry); a sequence
// count missing from the output is run again on its own (twice at most).
function peerBatched(th, npl = batches, tries = 3) {
  const ctx = Math.max(...npl) * (bpp + btg) + 16;
  const out = run(resolve(bin, "llama-batched-bench"), ["-m", model, "-t", String(th), "-tb", String(th),
    "-c", String(ctx), "-b", "2048", "-ub", "512", "-fa", opt["flash-attention"], "-npp", String(bpp),
    "-ntg", String(btg), "-npl", npl.join(","), "--output-format", "jsonl"]);
  const res = {};
  for (const line of out.split("\n")) {
    if (!line.startsWith("{")) continue;
    const j = JSON.parse(line);
    res[j.pl] = { prefill: j.speed_pp, decode: j.speed_tg };
  }
  for (const n of npl) {
    if (res[n]) continue;
    if (tries <= 1) throw new Error(`llama-batched-bench -t ${th} gave no result for ${n} sequences`);
    Object.assign(res, peerBatched(th, [n], tries - 1));
  }
  return res;
}

function prefixdBatched(n) {
  const r = JSON.parse(run(opt.prefixd, ["bench-model", "-m", model, "--threads", String(threads), "-r", "1",
    "--batch", String(n), "--prompt-tokens", String(bpp), "--gen-tokens", String(btg), "--json", ...prefixdArgs]));
  return { prefill: r.prefill_tok_s, decode: r.decode_tok_s };
}

const best = (byThreads, k) => Math.max(...Object.values(byThreads).map((p) => p[k]));
const f1 = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const rows = [];
for (let r = 0; r < rounds; r++) {
  const load = loadavg();
  const row = { round: r + 1, loadavg: load, started: new Date().toISOString() };
  const peerFirst = r % 2 === 0;
  const steps = [];
  if (!opt["no-single"]) {
    const peerStep = () => { row.peer = {}; for (const th of peerThreads) row.peer[th] = peerSingle(th); };
    const oursStep = () => { row.prefixd = prefixdSingle(); };
    steps.push(...(peerFirst ? [peerStep, oursStep] : [oursStep, peerStep]));
  }
  if (batches.length) {
    const peerStep = () => {
      row.batch_peer = {};
      for (const th of peerThreads) row.batch_peer[th] = peerBatched(th);
    };
    const oursStep = () => { row.batch_prefixd = {}; for (const n of batches) row.batch_prefixd[n] = prefixdBatched(n); };
    steps.push(...(peerFirst ? [peerStep, oursStep] : [oursStep, peerStep]));
  }
  for (const s of steps) s();
  const parts = [`round ${r + 1} (load ${load.map((x) => x.toFixed(2)).join(" ")})`];
  if (row.peer) {
    row.peer_best = { prefill: best(row.peer, "prefill"), decode: best(row.peer, "decode") };
    row.ratio = { prefill: row.prefixd.prefill / row.peer_best.prefill, decode: row.prefixd.decode / row.peer_best.decode };
    const peerText = Object.entries(row.peer).map(([th, p]) => `-t ${th}: pp${pp} ${f1(p.prefill)} tg${tg} ${f1(p.decode)}`).join(", ");
    parts.push(`llama.cpp ${peerText} | prefixd -t ${threads}: pp${pp} ${f1(row.prefixd.prefill)} tg${tg} ` +
      `${f1(row.prefixd.decode)} | ratio to the peer's best: pp ${row.ratio.prefill.toFixed(2)} tg ${row.ratio.decode.toFixed(2)}`);
  }
  if (batches.length) {
    row.batch = {};
    for (const n of batches) {
      const byTh = Object.fromEntries(peerThreads.map((th) => [th, row.batch_peer[th][n]]));
      const pb = { prefill: best(byTh, "prefill"), decode: best(byTh, "decode") };
      const ours = row.batch_prefixd[n];
      row.batch[n] = { peer: byTh, peer_best: pb, prefixd: ours,
        ratio: { prefill: ours.prefill / pb.prefill, decode: ours.decode / pb.decode } };
      parts.push(`batch ${n} (pp${bpp} tg${btg}): llama.cpp best S_PP ${f1(pb.prefill)} S_TG ${f1(pb.decode)} | prefixd ` +
        `${f1(ours.prefill)} / ${f1(ours.decode)} | ratio pp ${row.batch[n].ratio.prefill.toFixed(2)} ` +
        `tg ${row.batch[n].ratio.decode.toFixed(2)}`);
    }
    delete row.batch_peer;
    delete row.batch_prefixd;
  }
  rows.push(row);
  console.log(parts.join("\n  "));
}
const mean = (f) => rows.reduce((s, r) => s + f(r), 0) / rows.length;
const summary = {
  model, threads, prompt_tokens: pp, gen_tokens: tg, rounds, reps, flash_attention: opt["flash-attention"],
  cpu: cpus()[0]?.model, peer: { bin, ...peerInfo }, peer_threads: peerThreads, prefixd_args: prefixdArgs,
  batch: batches, batch_prompt_tokens: bpp, batch_gen_tokens: btg, rows,
};
if (!opt["no-single"]) {
  summary.ratio_prefill = mean((r) => r.ratio.prefill);
  summary.ratio_decode = mean((r) => r.ratio.decode);
  console.log(`mean ratio prefixd / llama.cpp's best: prefill ${summary.ratio_prefill.toFixed(2)}, ` +
    `decode ${summary.ratio_decode.toFixed(2)}`);
}
if (batches.length) {
  summary.ratio_batch = Object.fromEntries(batches.map((n) => [n, {
    prefill: mean((r) => r.batch[n].ratio.prefill), decode: mean((r) => r.batch[n].ratio.decode) }]));
  for (const n of batches) {
    console.log(`mean ratio at batch ${n}: prefill ${summary.ratio_batch[n].prefill.toFixed(2)}, ` +
      `decode ${summary.ratio_batch[n].decode.toFixed(2)}`);
  }
}
if (opt.json) writeFileSync(opt.json, JSON.stringify(summary, null, 2) + "\n");
