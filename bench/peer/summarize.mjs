// Markdown table rows from peer_bench.mjs JSON results (one or more files):
//   node bench/peer/summarize.mjs bench/results/peer-native/*.json
import { readFileSync } from "node:fs";
import { basename } from "node:path";

const fmt = (x) => (x >= 1000 ? Math.round(x).toLocaleString("en-US") : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const single = [], batched = [];
for (const file of process.argv.slice(2)) {
  const r = JSON.parse(readFileSync(file, "utf8"));
  const name = basename(r.model, ".gguf") + (r.prefixd_args?.length ? ` (prefixd ${r.prefixd_args.join(" ")})` : "");
  for (const row of r.rows) {
    const load = row.loadavg.map((x) => x.toFixed(1)).join(" / ");
    const time = row.started.slice(11, 16);
    if (row.peer) {
      const th = Object.keys(row.peer).sort();
      const peer = (k) => th.map((t) => `${fmt(row.peer[t][k])} (t${t})`).join(" / ");
      single.push(`| ${name} | ${peer("prefill")} | ${peer("decode")} | ${fmt(row.prefixd.prefill)} | ` +
        `${fmt(row.prefixd.decode)} | ${row.ratio.prefill.toFixed(2)} | ${row.ratio.decode.toFixed(2)} | ${time}, ${load} |`);
    }
    for (const [n, b] of Object.entries(row.batch ?? {})) {
      const th = Object.keys(b.peer).sort();
      const peer = (k) => th.map((t) => `${fmt(b.peer[t][k])} (t${t})`).join(" / ");
      batched.push(`| ${name} | ${n} | ${peer("prefill")} | ${peer("decode")} | ${fmt(b.prefixd.prefill)} | ` +
        `${fmt(b.prefixd.decode)} | ${b.ratio.prefill.toFixed(2)} | ${b.ratio.decode.toFixed(2)} | ${time}, ${load} |`);
    }
  }
}
if (single.length) {
  console.log("| model | llama.cpp pp512 (threads) | llama.cpp tg128 (threads) | prefixd pp512 (-t 2) | " +
    "prefixd tg128 (-t 2) | ratio prefill | ratio decode | UTC, load 1/5/15 min |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  console.log(single.sort((a, b) => a.split("|").at(-2).localeCompare(b.split("|").at(-2))).join("\n"));
}
if (batched.length) {
  console.log("\n| model | sequences | llama.cpp S_PP (threads) | llama.cpp S_TG (threads) | prefixd prefill | " +
    "prefixd decode | ratio prefill | ratio decode | UTC, load 1/5/15 min |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  console.log(batched.sort((a, b) => a.split("|").at(-2).localeCompare(b.split("|").at(-2))).join("\n"));
}
