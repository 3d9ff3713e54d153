// Greedy agreement with the native peer, a diagnostic (not a gate): for a few prompts, the
// tokens prefixd and llama.cpp generate greedily from the same prompt token ids on the same
// GGUF file, and how many agree before the first difference. Two engines that round
// differently (integer dot products, accumulation orders, F16 K/V) part ways once two logits
// come within their rounding gap, which random-weight models reach sooner than trained ones.
//
//   node bench/peer/greedy_agreement.mjs --model M.gguf [--prefixd build/app/prefixd]
//        [--peer-bin peer/build/bin] [--tokens 64] [--threads 2] [--quant-dot int8,f32]
//        [--peer-args="-fa off"] [--json FILE]
//
// --peer-args: more llama-server flags, split at spaces (write it with `=`: the value starts
// with a dash). `-fa off` measures how much of a parting comes from llama.cpp's CPU flash
// attention, which with an F16 K/V cache and under 64 query rows (every decode step and short
// prompt) rounds the query to F16 and accumulates the weighted values in an F16 buffer, one
// rounding to 11 significant bits per position; prefixd accumulates in F32.
//
// prefixd: `prefixd generate -m M -p PROMPT -n N --ignore-eos --json --quant-dot Q` (greedy:
// temperature 0), which reports its prompt ids and generated ids. The peer: `llama-server -m M`
// on a free loopback port (startPeerServer, bench/serve/server.mjs), then POST /completion
// with those prompt ids, top-k 1 as the only sampler, `ignore_eos`, `return_tokens`, no prompt cache,
// Where the engines part, one more peer request (the prompt plus the agreed tokens, one token,
// `n_probs: 2`) gives the peer's margin there (its pick's log-probability minus the runner-up's)
// and whether prefixd's pick is that runner-up, so a parting at a near-tie is told from a real
// difference. (Per-step probabilities of the long request cannot be used: llama-server merges
// the entries of tokens that end mid UTF-8 character.)
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startPeerServer } from "../serve/server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    prefixd: { type: "string", default: resolve(root, "build/app/prefixd") },
    "peer-bin": { type: "string", default: resolve(root, "peer/build/bin") },
    tokens: { type: "string", default: "64" },
    threads: { type: "string", default: "2" },
    "quant-dot": { type: "string", default: "int8,f32" },
    json: { type: "string" },
    "peer-args": { type: "string", default: "" },
  },
});
if (!opt.model) {
  console.error("usage: node bench/peer/greedy_agreement.mjs --model FILE.gguf [options]; see the header");
  process.exit(2);
}
const server = resolve(opt["peer-bin"], "llama-server");
if (!existsSync(server)) {
  console.error(`greedy_agreement: no ${server}: build the peer with scripts/build-peer.sh`);
  process.exit(1);
}

const PROMPTS = [
  "Once upon a time",
  "The capital of France is",
  "def fibonacci(n):",
  "In 1969, the first humans",
  "Q: What is two plus two?\nA:",
];
const n = Number(opt.tokens);

function prefixdGreedy(prompt, quantDot) {
  const out = execFileSync(opt.prefixd, [
    "generate", "-m", opt.model, "-p", prompt, "-n", String(n), "--ignore-eos", "--json",
    "-t", opt.threads, "--quant-dot", quantDot, "--prefix-cache", "off",
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return JSON.parse(out.trim().split("\n").pop());
}

async function peerGreedy(url, promptIds, count) {
  const r = await fetch(`${url}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      prompt: promptIds, n_predict: count, samplers: ["top_k"], top_k: 1, temperature: 0,
      ignore_eos: true, return_tokens: true, cache_prompt: false,
    }),
  });
  if (!r.ok) throw new Error(`llama-server: HTTP ${r.status}: ${await r.text()}`);
  return (await r.json()).tokens;
}

// The peer's two most likely next tokens after `ids`, with end-of-generation tokens banned
// (`ignoreEos`, as in peerGreedy) or not; [] where no probabilities came back (a token that
// ends mid UTF-8 character).
async function peerTop2(url, ids, ignoreEos) {
  const r = await fetch(`${url}/completion`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      prompt: ids, n_predict: 1, samplers: ["top_k"], top_k: 1, temperature: 0,
      ignore_eos: ignoreEos, cache_prompt: false, n_probs: 2,
    }),
  });
  if (!r.ok) throw new Error(`llama-server: HTTP ${r.status}: ${await r.text()}`);
  return (await r.json()).completion_probabilities?.[0]?.top_logprobs ?? [];
}

// Where the engines part (after `agreedIds`): the peer's margin between its top two there and
// whether prefixd's token `mine` is the runner-up (margin null: no probabilities came back).
async function parting(url, promptIds, agreedIds, mine) {
  const top = await peerTop2(url, [...promptIds, ...agreedIds], true);
  if (top.length < 2) return { margin: null, runner_up: false };
  return { margin: top[0].logprob - top[1].logprob, runner_up: mine === top[1].id };
}

function agreed(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

// How many of prefixd's `mine` tokens the peer's greedy choices reproduce. llama-server's
// `ignore_eos` bans end-of-generation tokens (a -inf logit bias) where prefixd's --ignore-eos
// only keeps going, so where prefixd took such a token, the peer is asked again without the
// ban: if that is its greedy choice too, the engines agree there, and the peer continues from
// the prompt, the agreed tokens and that one. Returns the count and those positions.
async function agreement(url, promptIds, mine) {
  const eos = [];
  let theirs = await peerGreedy(url, promptIds, n);
  let i = agreed(mine, theirs);
  while (i < n) {
    const unbanned = await peerTop2(url, [...promptIds, ...mine.slice(0, i)], false);
    if (unbanned[0]?.id !== mine[i]) break;
    eos.push(i);
    const rest = await peerGreedy(url, [...promptIds, ...mine.slice(0, i + 1)], n - i - 1);
    theirs = [...mine.slice(0, i + 1), ...rest];
    i = agreed(mine, theirs);
  }
  return { count: i, eos };
}

// llama-server on the same model and threads (bench/serve/server.mjs starts and stops it).
const peerArgs = opt["peer-args"].split(" ").filter((a) => a !== "");
const peer = await startPeerServer({ peerBin: server, model: opt.model, threads: Number(opt.threads),
  ctx: 4096, peerArgs });
const rows = [];
try {
  for (const prompt of PROMPTS) {
    const row = { prompt };
    for (const q of opt["quant-dot"].split(",")) {
      const mine = prefixdGreedy(prompt, q);
      row.prompt_ids ??= mine.prompt_ids;
      const { count, eos } = await agreement(peer.url, mine.prompt_ids, mine.generated_ids);
      row[q] = count;
      if (eos.length > 0) row[`${q}_eos_agreed_at`] = eos;
      if (row[q] < n) {
        row[`${q}_parting`] = await parting(peer.url, mine.prompt_ids,
          mine.generated_ids.slice(0, row[q]), mine.generated_ids[row[q]]);
      }
    }
    rows.push(row);
    console.log(`${JSON.stringify(prompt)}: tokens agreeing before the first difference (of ${n}): ` +
                opt["quant-dot"].split(",").map((q) => `${q} ${row[q]}` + (row[`${q}_parting`]
                  ? ` (peer margin there ${row[`${q}_parting`].margin?.toExponential(2) ?? "unknown"}` +
                    `${row[`${q}_parting`].runner_up ? ", prefixd took its runner-up" : ""})` : "") +
                  (row[`${q}_eos_agreed_at`] ? ` (end-of-generation agreed at ${row[`${q}_eos_agreed_at`]})` : "")).join(", "));
  }
} finally {
  await peer.stop();
}
const v = spawnSync(server, ["--version"], { encoding: "utf8" });
const version = `${v.stdout}${v.stderr}`.split("\n").find((l) => l.startsWith("version")) ?? "";
if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({ model: opt.model, tokens: n, peer: version, peer_args: peerArgs, rows }, null, 2));
}
