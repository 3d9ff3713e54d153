// Small GETs per second and /health latency under slow connections, against a running
// prefixd (issue 16's before/after figures).
//
//   node bench/http_bench.mjs URL [SECONDS]
//
// Prints, for 1, 64 and 256 concurrent keep-alive clients, GET /health requests per second
// and streamed completions per second (POST /v1/completions, `stream: true`, 16 tokens each,
// every SSE event read; a completion counts when its `[DONE]` arrives); then /health p99 while
// 200 connections trickle header bytes. Needs Node 20+ (fetch,
// undici's per-origin pool opens one connection per concurrent request).
import net from 'node:net';

const url = process.argv[2];
const seconds = Number(process.argv[3] ?? 3);
if (!url) { console.error('usage: node bench/http_bench.mjs URL [SECONDS]'); process.exit(2); }

// Requests per second with `clients` concurrent loops, each calling `once` (true: answered
// as expected) until the time is up.
async function ratePerSecond(clients, once) {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (Date.now() < end) {
      try {
        if (await once()) done++; else failed++;
      } catch { failed++; }
    }
  }));
  return { rps: done / seconds, failed };
}

const getsPerSecond = (clients) => ratePerSecond(clients, async () => {
  const r = await fetch(`${url}/health`);
  await r.text();
  return r.ok;
});

const STREAM_BODY = JSON.stringify({
  prompt: 'Once upon a time', max_tokens: 16, stream: true, temperature: 0, ignore_eos: true,
});

const streamedCompletionsPerSecond = (clients) => ratePerSecond(clients, async () => {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: STREAM_BODY,
  });
  const text = await r.text();
  return r.ok && text.includes('data: [DONE]');
});

async function healthP99UnderSlowConnections(n) {
  const { port, hostname } = new URL(url);
  const slow = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(Number(port), hostname);
    s.on('error', () => {});
    s.write('GET /health HTTP/1.1\r\n');
    slow.push(s);
  }
  const timer = setInterval(() => { for (const s of slow) s.write('X-A: b\r\n'); }, 1000);
  const times = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t = performance.now();
    try {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
      await r.text();
      times.push(performance.now() - t);
    } catch { times.push(5000); }
  }
  clearInterval(timer);
  for (const s of slow) s.destroy();
  times.sort((a, b) => a - b);
  return times[Math.min(times.length - 1, Math.floor(times.length * 0.99))];
}

for (const c of [1, 64, 256]) {
  const { rps, failed } = await getsPerSecond(c);
  console.log(`GET /health, ${c} clients: ${rps.toFixed(0)} req/s${failed ? ` (${failed} failed)` : ''}`);
}
for (const c of [1, 64, 256]) {
  const { rps, failed } = await streamedCompletionsPerSecond(c);
  console.log(`streamed completions (16 tokens), ${c} clients: ${rps.toFixed(1)} /s${failed ? ` (${failed} failed)` : ''}`);
}
console.log(`GET /health p99 under 200 slow connections: ${(await healthP99UnderSlowConnections(200)).toFixed(1)} ms`);
