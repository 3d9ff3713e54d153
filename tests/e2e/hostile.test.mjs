// Bodies a hostile or careless client sends (issue 16): each gets the answer expected, and
// the server keeps answering a fixed greedy request the same way afterwards.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ADMIN_KEY, missingPrerequisite, startServer } from './server.mjs';

const skip = missingPrerequisite();

// `n` arrays, one inside the other: JSON text, built without recursion.
function nested(n) { return '['.repeat(n) + ']'.repeat(n); }

describe('hostile requests', { skip: skip ?? false }, () => {
  let srv;
  let reference;
  const greedy = { prompt: 'Once upon a time', max_tokens: 12, temperature: 0 };
  before(async () => {
    srv = await startServer();
    reference = (await srv.request('POST', '/v1/completions', { body: greedy })).json.choices[0].text;
  });
  after(async () => {
    // After every probe above, SIGTERM stops the server cleanly (it crashed here once).
    const exit = await srv?.stop();
    if (exit) assert.deepEqual(exit, { code: 0, signal: null });
  });

  async function stillAnswers() {
    assert.deepEqual((await srv.request('GET', '/health')).json, { status: 'ok' });
    const r = await srv.request('POST', '/v1/completions', { body: greedy });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].text, reference);
  }

  it('refuses 60,000-deep nesting in every field that reaches the template, with a 400', { timeout: 60000 }, async () => {
    const deep = nested(60000);
    const user = '{"role":"user","content":"hi"}';
    const cases = [
      ['/v1/chat/completions', `{"messages":[${user}],"tools":${deep}}`, 'tools'],
      ['/v1/chat/completions', `{"messages":[${user},{"role":"assistant","content":null,"tool_calls":${deep}}]}`,
       'messages[1].tool_calls'],
      ['/v1/chat/completions', `{"messages":[${user}],"chat_template_kwargs":{"a":${deep}}}`, 'chat_template_kwargs'],
      ['/admin/api/cache/probe', `{"messages":[${user}],"tools":${deep}}`, 'tools'],
      ['/v1/completions', `{"prompt":${deep}}`, 'prompt'],
      ['/tokenize', `{"content":${deep}}`, 'content'],
    ];
    for (const [route, body, field] of cases) {
      const headers = { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` };
      const r = await srv.request('POST', route, { body, raw: true, headers });
      assert.equal(r.status, 400, `${route} ${field}: ${r.text.slice(0, 200)}`);
      assert.ok(r.json.error.param.startsWith(field), `${route}: param ${r.json.error.param}`);
      assert.match(r.json.error.message, /the limit is 64/);
      await stillAnswers();
    }
  });

  it('refuses bodies that are not JSON with 415, and takes the admin switches without a body', { timeout: 60000 }, async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const body = JSON.stringify({ ...greedy, pad: 'x'.repeat(10000) });
      const r = await srv.request('POST', '/v1/completions', { body, raw: true, headers: { 'content-type': type } });
      assert.equal(r.status, 415, `${type}: ${r.text}`);
      assert.match(r.json.error.message, /application\/json/);
    }
    const url = `${srv.url}/admin/api/cache/disable`;
    const started = Date.now();
    const off = await fetch(url, { method: 'POST', headers: { authorization: `bearer ${ADMIN_KEY}` } });
    assert.equal(off.status, 200);
    assert.equal((await off.json()).enabled, false);
    assert.ok(Date.now() - started < 2000, `disable took ${Date.now() - started} ms`);
    const on = await fetch(`${srv.url}/admin/api/cache/enable`, { method: 'POST', headers: { authorization: `BEARER ${ADMIN_KEY}` } });
    assert.equal((await on.json()).enabled, true);
    await stillAnswers();
  });

  it('a 1 MB chat of 16,000 messages costs time proportional to its size', { timeout: 120000 }, async () => {
    // Message starts were found by encoding every prefix again: 50,000 short messages cost
    // 61 s. Now one render, one encoding and one walk over the tokens.
    const messages = [];
    for (let i = 0; i < 16000; i++) {
      messages.push({ role: i % 2 ? 'assistant' : 'user', content: `Once upon a time there was a dog ${i}.` });
    }
    assert.ok(JSON.stringify(messages).length > 2 ** 20);
    let started = Date.now();
    const probe = await srv.admin('/admin/api/cache/probe', { messages });
    const probeMs = Date.now() - started;
    assert.equal(probe.status, 200, probe.text.slice(0, 300));
    assert.equal(probe.json.message_starts.length, 16000);
    for (let i = 1; i < 16000; i++) assert.ok(probe.json.message_starts[i] > probe.json.message_starts[i - 1]);
    started = Date.now();
    const chat = await srv.request('POST', '/v1/chat/completions', { body: { messages, max_tokens: 1 } });
    const chatMs = Date.now() - started;
    assert.equal(chat.status, 400);  // it does not fit the context: found after rendering and encoding it
    assert.match(chat.json.error.message, /the context holds/);
    // Generous for a loaded machine; the quadratic way took well over a minute.
    assert.ok(probeMs < 20000 && chatMs < 20000, `probe ${probeMs} ms, chat ${chatMs} ms`);
    // One message over the limit is refused before anything is rendered.
    const over = await srv.request('POST', '/v1/chat/completions',
                                   { body: { messages: [...messages, ...messages.slice(0, 400)], max_tokens: 1 } });
    assert.equal(over.status, 400);
    assert.equal(over.json.error.param, 'messages');
    assert.match(over.json.error.message, /the limit is 16384/);
    await stillAnswers();
  });

  it('answers a POST with no Content-Length at once (curl -X POST)', { timeout: 30000 }, async () => {
    const { port, hostname } = new URL(srv.url);
    const started = Date.now();
    const answer = await new Promise((resolve, reject) => {
      const sock = net.connect(Number(port), hostname);
      let data = '';
      sock.on('data', (d) => {
        data += d;
        if (/\r\n\r\n[\s\S]*\}/.test(data)) { sock.destroy(); resolve(data); }
      });
      sock.on('error', reject);
      sock.on('close', () => resolve(data));
      sock.write(`POST /admin/api/cache/disable HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
                 `Authorization: Bearer ${ADMIN_KEY}\r\n\r\n`);
    });
    assert.match(answer, /^HTTP\/1\.1 200/);
    assert.match(answer, /"enabled":false/);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    const on = await srv.admin('/admin/api/cache/enable', {});
    assert.equal(on.json.enabled, true);
    await stillAnswers();
  });

  // Raw HTTP/1.1 over one socket: resolves with all that came back when `done(text)` holds,
  // the socket closes, or after `ms`.
  function raw(bytes, done, ms = 5000) {
    const { port, hostname } = new URL(srv.url);
    return new Promise((resolve) => {
      const sock = net.connect(Number(port), hostname);
      let data = '';
      const timer = setTimeout(() => { sock.destroy(); resolve(data); }, ms);
      sock.on('data', (d) => {
        data += d;
        if (done(data)) { clearTimeout(timer); sock.destroy(); resolve(data); }
      });
      sock.on('error', () => {});
      sock.on('close', () => { clearTimeout(timer); resolve(data); });
      sock.write(bytes);
    });
  }

  it('serves only its own Host names, and refuses cross-site POSTs', { timeout: 30000 }, async () => {
    const { host } = new URL(srv.url);
    const get = (h) => `GET /health HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`;
    assert.match(await raw(get(host), (d) => d.includes('}')), /^HTTP\/1\.1 200/);
    assert.match(await raw(get('localhost:1234'), (d) => d.includes('}')), /^HTTP\/1\.1 200/);
    // DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1.
    assert.match(await raw(get('evil.example'), (d) => d.includes('}')), /^HTTP\/1\.1 403/);
    const post = (origin) => srv.request('POST', '/v1/completions', { body: greedy, headers: { origin } });
    assert.equal((await post('http://evil.example')).status, 403);
    assert.equal((await post(`http://${host}`)).status, 200);
  });

  it('refuses two different Content-Length headers, and Content-Length beside chunked', { timeout: 30000 }, async () => {
    // Request smuggling: a proxy and the server that disagree on where a body ends would let a
    // second request hide inside the first. Either framing conflict is a 400 and the connection
    // is closed, so nothing after it on the socket is read as a request.
    const { host } = new URL(srv.url);
    const body = JSON.stringify(greedy);
    const len = Buffer.byteLength(body);
    const smuggled = `GET /health HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const twoLengths = `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
                       `Content-Length: ${len}\r\nContent-Length: ${len + smuggled.length}\r\n\r\n${body}${smuggled}`;
    const out = await raw(twoLengths, () => false, 3000);
    assert.match(out, /^HTTP\/1\.1 400/, out.slice(0, 300));
    assert.equal(out.split('HTTP/1.1 ').length - 1, 1, `one answer, then the connection closes: ${out.slice(0, 500)}`);
    const both = `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
                 `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n` +
                 `${len.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`;
    const out2 = await raw(both, () => false, 3000);
    assert.match(out2, /^HTTP\/1\.1 400/, out2.slice(0, 300));
    assert.equal(out2.split('HTTP/1.1 ').length - 1, 1, out2.slice(0, 500));
    await stillAnswers();
  });

  it('answers pipelined requests, all of them, in order', { timeout: 30000 }, async () => {
    const { host } = new URL(srv.url);
    let bytes = '';
    for (let i = 0; i < 8; i++) bytes += `GET /health HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const body = JSON.stringify(greedy);
    bytes += `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
             `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const out = await raw(bytes, (d) => d.split('HTTP/1.1 200').length - 1 >= 9 && d.trimEnd().endsWith('}'));
    assert.equal(out.split('HTTP/1.1 200').length - 1, 9, out.slice(0, 500));
    assert.ok(out.includes(JSON.stringify(reference).slice(1, -1)));
  });

  it('keeps answering /health within 1 s while 200 connections trickle their headers', { timeout: 60000 }, async () => {
    const { port, hostname } = new URL(srv.url);
    const slow = [];
    for (let i = 0; i < 200; i++) {
      const s = net.connect(Number(port), hostname);
      s.on('error', () => {});
      s.write('GET /health HTTP/1.1\r\n');
      slow.push(s);
    }
    const timer = setInterval(() => { for (const s of slow) s.write('X-A: b\r\n'); }, 200);
    try {
      for (let i = 0; i < 5; i++) {
        const started = Date.now();
        assert.deepEqual((await srv.request('GET', '/health')).json, { status: 'ok' });
        assert.ok(Date.now() - started < 1000, `${Date.now() - started} ms`);
      }
    } finally {
      clearInterval(timer);
      for (const s of slow) s.destroy();
    }
    await stillAnswers();
  });

  it('64 streaming clients hanging up: each request cancelled, the server unchanged', { timeout: 60000 }, async () => {
    const before = await srv.request('GET', '/metrics');
    const disconnectsBefore = Number(/prefixd_client_disconnects_total (\d+)/.exec(before.text)?.[1] ?? 0);
    await Promise.all(Array.from({ length: 64 }, async () => {
      const ac = new AbortController();
      const res = await fetch(`${srv.url}/v1/completions`, {
        method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 200, stream: true, ignore_eos: true }),
      });
      const reader = res.body.getReader();
      await reader.read();  // the first chunk, then hang up
      ac.abort();
      await reader.cancel().catch(() => {});
    }));
    // Every cancelled request leaves the engine: a new one is served at once, the same as before.
    await stillAnswers();
    const after = await srv.request('GET', '/metrics');
    const disconnects = Number(/prefixd_client_disconnects_total (\d+)/.exec(after.text)?.[1] ?? 0);
    if (/prefixd_client_disconnects_total/.test(after.text)) assert.ok(disconnects > disconnectsBefore);
  });

  it('refuses a chunked body over the limit while reading it', { timeout: 30000 }, async () => {
    const { host } = new URL(srv.url);
    const before = srv.rssBytes();
    let bytes = `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
                'Transfer-Encoding: chunked\r\n\r\n';
    const chunk = 'x'.repeat(1 << 20);
    for (let i = 0; i < 12; i++) bytes += `${(1 << 20).toString(16)}\r\n${chunk}\r\n`;
    const out = await raw(bytes, (d) => d.includes('}'));
    assert.match(out, /^HTTP\/1\.1 413/);
    assert.ok(srv.rssBytes() - before < 64 * 2 ** 20, `RSS grew by ${srv.rssBytes() - before} bytes`);
    await stillAnswers();
  });
});

describe('with --api-key', { skip: skip ?? false }, () => {
  it('/props shows nothing private without the key; auth before the body', { timeout: 30000 }, async () => {
    const keyed = await startServer({ adminKey: null, args: ['--api-key', 'secret', '--disk-cache-dir', '/tmp/prefixd-hostile-disk'] });
    try {
      const open = await keyed.request('GET', '/props');
      assert.equal(open.status, 200);
      assert.ok(!open.text.includes('/tmp/prefixd-hostile-disk'), open.text);
      assert.ok(!open.text.includes('stories260K.gguf"') || !('path' in open.json.model));
      const full = await keyed.request('GET', '/props', { headers: { authorization: 'bearer secret' } });
      assert.equal(full.json.prefix_cache.disk_cache_dir, '/tmp/prefixd-hostile-disk');
      assert.ok(full.json.model.path);
      const unauth = await keyed.request('POST', '/v1/completions', { body: greedyBody() });
      assert.equal(unauth.status, 401);
    } finally {
      await keyed.stop();
    }
  });
});

function greedyBody() { return { prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }; }
