// A table of a few hundred malformed requests sent with fetch: each gets a 4xx with an
// OpenAI-style error object, and the server keeps answering.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_KEY, missingPrerequisite, startServer } from './server.mjs';

const skip = missingPrerequisite();

// Values that are wrong for each field, whatever the rest of the body.
const BAD = {
  model: [5, true, [], {}, 'no-such-model', 'gpt-4o'],
  max_tokens: [-1, -100, 2.5, '16', true, [], {}, 1e9, 99999999999999999999],
  max_completion_tokens: [-1, 'x', 1e7, false],
  n_predict: [-2, 'all', 1e7],
  temperature: [-0.5, 3, '1', [], {}, true],
  top_p: [-0.1, 1.5, 'x', []],
  top_k: [-5, 2.5, 'k', {}],
  min_p: [-1, 2, 'x'],
  seed: ['42', 1.5, 1e300, []],
  stop: [5, true, {}, [1], [null], ['a', 'b', 'c', 'd', 'e'], [['a']]],
  n: [0, 2, -1, '1', 1.5],
  stream: ['true', 1, [], {}],
  stream_options: [true, 'x', 5, { include_usage: 'yes' }],
  cache_salt: [5, [], {}, true],
  prefix_cache: ['full', 5, [], { scope: 5 }, { scope: 'everything' }, { scope: 'auto:x' },
                 { scope: 'auto:0' }, { window: 0 }, { window: 'x' }],
  ignore_eos: ['yes', 1],
  frequency_penalty: [5, 'x'],
  presence_penalty: [-5, []],
};
const BAD_COMPLETIONS = {
  prompt: [null, '', [], [[]], [''], 5, true, {}, ['a', 'b'], [[1], [2]], [1, 'a'], [1, 2.5], [-1],
           [999999], [null], [{}], [[1, -1]], [[1, 'x']]],
  logprobs: [6, -1, true, '2', 2.5],
  echo: [true, 'no', 1],
  best_of: [2, 0, 'x'],
  suffix: ['tail', 5],
};
const BAD_CHAT = {
  messages: [null, [], 'hi', 5, {}, ['hi'], [null], [{}], [{ content: 'x' }], [{ role: 5, content: 'x' }],
             [{ role: 'wizard', content: 'x' }], [{ role: '', content: 'x' }], [{ role: 'user' }],
             [{ role: 'system', content: null }], [{ role: 'user', content: 5 }],
             [{ role: 'user', content: {} }], [{ role: 'user', content: ['x'] }],
             [{ role: 'user', content: [{}] }], [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }],
             [{ role: 'user', content: [{ type: 'text' }] }], [{ role: 'user', content: [{ type: 'text', text: 5 }] }],
             [{ role: 'user', content: 'x', name: 5 }], [{ role: 'assistant', content: 'x', tool_calls: {} }],
             [{ role: 'tool', content: 'x', tool_call_id: 5 }], [{ role: 'tool' }]],
  logprobs: [5, 'true', []],
  top_logprobs: [21, -1, 'x'],
  tools: [{}, 'x', 5],
  chat_template_kwargs: [[], 'x', 5],
};

function cases() {
  const out = [];
  const completion = { prompt: 'Once upon a time', max_tokens: 4 };
  const chat = { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };
  for (const [route, base, specific] of [['/v1/completions', completion, BAD_COMPLETIONS],
                                          ['/v1/chat/completions', chat, BAD_CHAT]]) {
    for (const [field, values] of Object.entries({ ...BAD, ...specific })) {
      for (const v of values) {
        out.push({ route, body: JSON.stringify({ ...base, [field]: v }), field });
      }
    }
    // Bodies that are not a JSON object, or not JSON, or not UTF-8.
    const raw = ['', ' ', '{', '}', '[', ']', 'null', 'true', '0', '"text"', '[]', '[{}]', '{,}',
                 '{"prompt": }', '{"prompt": "x",}', "{'prompt': 'x'}", '{"prompt": "x"} extra',
                 '{"messages": [', '{"prompt": "\\q"}', '{"prompt": "\\ud800"}', 'NaN', '{"a":1e999999}',
                 '<html></html>', 'prompt=Once', '\u0000', '{"prompt": "x"\u0000}'];
    for (const body of raw) out.push({ route, body, field: '' });
    for (const bytes of [[0xff], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
      const field = route.includes('chat') ? 'messages[0].content' : 'prompt';
      const head = route.includes('chat') ? '{"messages":[{"role":"user","content":"bad ' : '{"prompt":"bad ';
      const tail = route.includes('chat') ? '"}]}' : '"}';
      out.push({ route, body: Buffer.concat([Buffer.from(head), Buffer.from(bytes), Buffer.from(tail)]), field });
    }
  }
  // The admin probe.
  for (const body of ['', '{', '[]', '{}', '{"prompt": ""}', '{"prompt": 5}', '{"messages": []}',
                      '{"messages": "x"}', '{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}',
                      '{"prompt": "x", "cache_salt": 5}', '{"prompt": "x", "model": 5}', '{"prompt": [-1]}']) {
    out.push({ route: '/admin/api/cache/probe', body, field: '', admin: true });
  }
  out.push({ route: '/admin/api/cache/clear', body: '{"tier": "nvme"}', field: 'tier', admin: true });
  out.push({ route: '/admin/api/cache/clear', body: '{"tier": 5}', field: 'tier', admin: true });
  out.push({ route: '/tokenize', body: '{"content": 5}', field: 'content' });
  out.push({ route: '/detokenize', body: '{"tokens": [-1]}', field: 'tokens[0]' });
  return out;
}

describe('malformed requests', { skip: skip ?? false }, () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv?.stop(); });

  it('each gets a 4xx with an error object, and the server stays up', { timeout: 120000 }, async () => {
    const table = cases();
    assert.ok(table.length >= 300, `${table.length} cases`);
    for (const c of table) {
      const headers = { 'content-type': 'application/json' };
      if (c.admin) headers.authorization = `Bearer ${ADMIN_KEY}`;
      const r = await srv.request('POST', c.route, { body: c.body, raw: true, headers });
      const what = `${c.route} ${String(c.body).slice(0, 80)}`;
      assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.text}`);
      assert.ok(r.json?.error?.message, `${what}: no error object: ${r.text}`);
      if (c.field) {
        // The param names the field, or a part of it ("stop[0]", "prefix_cache.scope").
        const p = r.json.error.param ?? '';
        assert.ok(p === c.field || p.startsWith(`${c.field}[`) || p.startsWith(`${c.field}.`),
                  `${what}: param ${p}, expected ${c.field}`);
      }
    }
    assert.deepEqual((await srv.request('GET', '/health')).json, { status: 'ok' });
  });

  it('answers 413 to a body over the limit and 404 to unknown routes', { timeout: 60000 }, async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(9 * 2 ** 20) });
    const r = await srv.request('POST', '/v1/completions', { body: big, raw: true });
    assert.equal(r.status, 413);
    assert.ok(r.json?.error?.message);
    for (const [method, route] of [['GET', '/v1/nothing'], ['POST', '/v1/models/x'], ['GET', '/v1/completions']]) {
      const n = await srv.request(method, route);
      assert.equal(n.status, 404, `${method} ${route}`);
      assert.ok(n.json?.error?.message);
    }
    assert.deepEqual((await srv.request('GET', '/health')).json, { status: 'ok' });
  });
});
