// One streaming request to a prefixd server, timed by the client: time to first token is
// from sending the request to the first streamed chunk that carries a token.
//
//   await timedRequest(url, { prompt: [ids...] }, { maxTokens: 16 })   // /v1/completions
//   await timedRequest(url, { messages: [...] }, { maxTokens: 16 })    // /v1/chat/completions
//
// Uses node:http rather than fetch: fetch gives up when no byte arrives for 300 s, and a cold
// prefill queued behind others can take longer than that on two cores.
import http from 'node:http';

export function timedRequest(url, req, { maxTokens = 16, timeoutMs = 1800000 } = {}) {
  const chat = req.messages !== undefined;
  const body = JSON.stringify({
    ...(chat ? { messages: req.messages } : { prompt: req.prompt }),
    max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true,
    stream_options: { include_usage: true },
  });
  const route = chat ? '/v1/chat/completions' : '/v1/completions';
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    // A connection per request (agent: false): llama-server closes idle keep-alive sockets that
    // Node would otherwise reuse ("socket hang up"); every server is timed the same way.
    const r = http.request(url + route, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let ttft = null;
      let buf = '';
      let usage = null;
      let errorText = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (res.statusCode !== 200) { errorText += d; return; }
        buf += d;
        let idx;
        while ((idx = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, idx).trim();
          buf = buf.slice(idx + 2);
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) errorText += JSON.stringify(chunk.error);
          // Chat's first chunk carries only the role; the first token is the first content.
          const hasToken = chunk.choices?.some((c) => (c.text ?? c.delta?.content ?? '') !== '' ||
            c.finish_reason);
          if (ttft === null && hasToken) ttft = performance.now() - t0;
          if (chunk.usage) usage = chunk.usage;
        }
      });
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${route}: HTTP ${res.statusCode} ${errorText}`));
        } else if (ttft === null || usage === null) {
          reject(new Error(`${route}: the stream ended without a token or usage ${errorText}`.trim()));
        } else {
          resolve({ ttft_ms: ttft, total_ms: performance.now() - t0, usage });
        }
      });
      res.on('error', reject);
    });
    r.setTimeout(timeoutMs, () => r.destroy(new Error(`${route}: no answer within ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end(body);
  });
}

// Runs `requests` with `concurrency` clients pulling from one queue, in order. Resolves with
// one result per request, in request order, and the wall time.
export async function runRequests(url, requests, { concurrency = 1, maxTokens = 16, between } = {}) {
  const results = new Array(requests.length);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, async () => {
    while (next < requests.length) {
      const i = next++;
      results[i] = await timedRequest(url, requests[i], { maxTokens });
      if (between) await between(i);
    }
  }));
  return { results, wall_s: (performance.now() - t0) / 1000 };
}
