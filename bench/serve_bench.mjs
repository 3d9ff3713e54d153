// Shared-system-prompt workload against `prefixd serve`, cache off vs on, side by side.
//
//   node bench/serve_bench.mjs --model MODEL [--bin build/app/prefixd] [--users 32]
//        [--system-tokens 1500] [--question-tokens 20] [--max-tokens 16] [--concurrency 1,8,32]
//        [--vocab 32000] [--threads 2]
//
// For each concurrency level and each cache setting, a fresh server gets `users` streaming
// requests: the same system prompt (token ids) followed by a different question each. Reports
// time to first token (mean, p50, p95), request throughput and generated tokens/s, and the
// cached tokens the server reported. Talks to 127.0.0.1 only; every request is bounded.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const bin = args.bin ?? 'build/app/prefixd';
const model = args.model;
if (!model) { console.error('--model MODEL is required'); process.exit(2); }
const users = Number(args.users ?? 32);
const systemTokens = Number(args['system-tokens'] ?? 1500);
const questionTokens = Number(args['question-tokens'] ?? 20);
const maxTokens = Number(args['max-tokens'] ?? 16);
const levels = (args.concurrency ?? '1,8,32').split(',').map(Number);
const threads = args.threads ?? '2';
const vocab = Number(args.vocab ?? 32000);

let seed = 12345;
const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const system = Array.from({ length: systemTokens }, () => 3 + rand(vocab - 3));

const servers = new Set();
// A crash of this script must not leave a server computing on the machine.
process.on('exit', () => { for (const p of servers) p.kill('SIGKILL'); });

async function startServer(cache) {
  const proc = spawn(bin, ['serve', '-m', model, '--port', '0', '--threads', threads,
    '--prefix-cache', cache ? 'on' : 'off', '--max-running', '32', '--ctx', '2048'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.add(proc);
  proc.on('exit', () => servers.delete(proc));
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', () => {});
  for (let i = 0; i < 600 && !/listening on (http:\/\/\S+)/.test(out); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const m = /listening on (http:\/\/\S+)/.exec(out);
  if (!m) throw new Error('server did not start: ' + out);
  return { proc, url: m[1] };
}

// node:http rather than fetch: fetch gives up when no byte arrives for 300 s, and a cold
// 1,500-token prefill behind 31 others takes longer than that on two cores.
function oneRequest(url, prompt) {
  const t0 = performance.now();
  const body = JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const req = http.request(url + '/v1/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
    }, (res) => {
      let ttft = null; let buf = ''; let usage = null;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let idx;
        while ((idx = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, idx).trim(); buf = buf.slice(idx + 2);
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const chunk = JSON.parse(line.slice(6));
          if (ttft === null && chunk.choices?.length) ttft = performance.now() - t0;
          if (chunk.usage) usage = chunk.usage;
        }
      });
      res.on('end', () => resolve({ ttft, total: performance.now() - t0, usage }));
      res.on('error', reject);
    });
    req.setTimeout(1800000, () => req.destroy(new Error('request took over 30 minutes')));
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const results = [];
for (const conc of levels) {
  for (const cache of [false, true]) {
    const { proc, url } = await startServer(cache);
    const prompts = Array.from({ length: users }, () =>
      [...system, ...Array.from({ length: questionTokens }, () => 3 + rand(vocab - 3))]);
    const t0 = performance.now();
    const out = [];
    let next = 0;
    await Promise.all(Array.from({ length: conc }, async () => {
      while (next < prompts.length) { const p = prompts[next++]; out.push(await oneRequest(url, p)); }
    }));
    const wall = (performance.now() - t0) / 1000;
    proc.kill('SIGTERM');
    await once(proc, 'exit');
    const ttfts = out.map((r) => r.ttft);
    const gen = out.reduce((a, r) => a + (r.usage?.completion_tokens ?? 0), 0);
    const cached = out.reduce((a, r) => a + (r.usage?.prompt_tokens_details?.cached_tokens ?? 0), 0);
    const row = { concurrency: conc, cache: cache ? 'on' : 'off', requests: out.length,
      ttft_mean_ms: ttfts.reduce((a, b) => a + b, 0) / ttfts.length, ttft_p50_ms: pct(ttfts, 0.5),
      ttft_p95_ms: pct(ttfts, 0.95), req_per_s: out.length / wall, gen_tok_per_s: gen / wall,
      cached_tokens: cached, wall_s: wall };
    results.push(row);
    console.error(JSON.stringify(row));
  }
}
console.log('| concurrency | cache | TTFT mean ms | TTFT p50 ms | TTFT p95 ms | req/s | gen tok/s | cached tokens |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  console.log(`| ${r.concurrency} | ${r.cache} | ${r.ttft_mean_ms.toFixed(0)} | ${r.ttft_p50_ms.toFixed(0)} | ${r.ttft_p95_ms.toFixed(0)} | ${r.req_per_s.toFixed(3)} | ${r.gen_tok_per_s.toFixed(1)} | ${r.cached_tokens} |`);
}
