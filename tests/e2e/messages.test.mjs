// Anthropic's Messages API through the official @anthropic-ai/sdk client: plain and streamed
// messages, system blocks, usage whose figures add up to the prompt, cache reads, count_tokens,
// the same conversation sent in both dialects sharing its cached prefix, errors in Anthropic's
// shape, and x-api-key.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { binary, missingPrerequisite, repoRoot, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite();
const T = { timeout: 60000 };
const KEY = 'messages-test-key';

function anthropicClient(srv, options = {}) {
  return new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000, ...options });
}

function textOf(message) {
  return message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

function promptTokens(usage) {
  return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
}

describe('Anthropic Messages API', { skip: skip ?? false }, () => {
  let srv;
  let client;
  before(async () => {
    srv = await startServer();
    client = anthropicClient(srv);
  });
  after(async () => { await srv?.stop(); });

  // Greedy, so two identical requests say the same thing.
  const greedy = { temperature: 0, max_tokens: 24 };
  const user = (text) => [{ role: 'user', content: text }];

  it('answers a plain message', T, async () => {
    const m = await client.messages.create({ model: srv.model, messages: user('Once upon a time'), ...greedy });
    assert.match(m.id, /^msg_/);
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.equal(m.model, srv.model);
    assert.equal(m.content.length, 1);
    assert.equal(m.content[0].type, 'text');
    assert.ok(m.content[0].text.length > 0);
    assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason), m.stop_reason);
    assert.equal(m.stop_sequence, null);
    assert.ok(m.usage.output_tokens > 0 && m.usage.output_tokens <= 24);
    assert.ok(promptTokens(m.usage) > 1);
  });

  it('streams events in order, and the text equals the non-streamed answer', T, async () => {
    const params = { model: srv.model, messages: user(`The ${uniqueWord()} cat`), ...greedy };
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const types = [];
    let deltas = '';
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta') {
        assert.equal(ev.delta.type, 'text_delta');
        deltas += ev.delta.text;
      }
    }
    const final = await stream.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-2), 'message_delta');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(types[1], 'content_block_start');
    assert.equal(types.at(-3), 'content_block_stop');
    assert.deepEqual([...new Set(types.slice(2, -3))], ['content_block_delta']);
    assert.equal(deltas, textOf(whole));
    assert.equal(textOf(final), textOf(whole));
    assert.equal(final.stop_reason, whole.stop_reason);
    assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
    assert.equal(promptTokens(final.usage), promptTokens(whole.usage));
    // The second request read the first one's prompt from the cache.
    assert.ok(final.usage.cache_read_input_tokens > 0);
  });

  it('sends Anthropic SSE with ping, as server-sent events', T, async () => {
    const r = await srv.request('POST', '/v1/messages', {
      body: { model: srv.model, messages: user('Hello'), max_tokens: 4, temperature: 0, stream: true } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const names = [...r.text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(names.slice(0, 2), ['message_start', 'ping']);
    assert.equal(names.at(-1), 'message_stop');
    const data = [...r.text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]));
    assert.deepEqual(data.map((d) => d.type), names);
  });

  it('reads system as a string or as text blocks, the same prompt either way', T, async () => {
    const messages = user(`Tell me about ${uniqueWord()}`);
    const asString = { model: srv.model, system: 'You tell short stories.', messages };
    const asBlocks = { model: srv.model, messages,
      system: [{ type: 'text', text: 'You tell ' }, { type: 'text', text: 'short stories.', cache_control: { type: 'ephemeral' } }] };
    const a = await client.messages.countTokens(asString);
    const b = await client.messages.countTokens(asBlocks);
    assert.equal(a.input_tokens, b.input_tokens);
    const none = await client.messages.countTokens({ model: srv.model, messages });
    assert.ok(a.input_tokens > none.input_tokens);
    const ma = await client.messages.create({ ...asString, ...greedy });
    const mb = await client.messages.create({ ...asBlocks, ...greedy });
    assert.equal(textOf(ma), textOf(mb));
    assert.equal(promptTokens(mb.usage), b.input_tokens);
  });

  it('usage adds up to count_tokens, and a second identical request reads the cache', T, async () => {
    const params = { model: srv.model, system: 'Be kind.', messages: user(`A ${uniqueWord()} story about a dog`),
      metadata: { user_id: 'e2e' }, ...greedy };
    const { input_tokens: count } = await client.messages.countTokens({
      model: params.model, system: params.system, messages: params.messages });
    const first = await client.messages.create(params);
    assert.equal(promptTokens(first.usage), count);
    // Only the opening ("System: ...") can be cached by earlier tests; the rest is new. With
    // no cache_control breakpoint nothing is written on purpose (Anthropic's meaning): the
    // rest is input, though prefixd still caches it as any prompt.
    assert.ok(first.usage.cache_read_input_tokens < count - 4, JSON.stringify(first.usage));
    assert.equal(first.usage.cache_read_input_tokens, first.usage.prefix_cache.cached_tokens);
    assert.equal(first.usage.cache_creation_input_tokens, 0);
    assert.equal(first.usage.input_tokens, count - first.usage.cache_read_input_tokens);
    const second = await client.messages.create(params);
    assert.equal(promptTokens(second.usage), count);
    assert.ok(second.usage.cache_read_input_tokens > first.usage.cache_read_input_tokens, JSON.stringify(second.usage));
    assert.equal(second.usage.cache_read_input_tokens, second.usage.prefix_cache.cached_tokens);
    assert.equal(textOf(second), textOf(first));
  });

  it('cache_control breakpoints: creation up to the last one, split by ttl, input after it', T, async () => {
    const word = uniqueWord();
    const system = [{ type: 'text', text: `You are ${word}, a patient storyteller.`,
      cache_control: { type: 'ephemeral', ttl: '1h' } }];
    const messages = [
      { role: 'user', content: [{ type: 'text', text: `Tell me about ${word}.`, cache_control: { type: 'ephemeral' } }] },
      { role: 'assistant', content: 'Once there was a fox.' },
      { role: 'user', content: 'Go on.' }];
    const params = { model: srv.model, system, messages, ...greedy };
    const { input_tokens: count } = await client.messages.countTokens({ model: srv.model, system, messages });
    const first = await client.messages.create(params);
    const u = first.usage;
    assert.equal(promptTokens(u), count, JSON.stringify(u));
    assert.ok(u.cache_creation_input_tokens > 0, JSON.stringify(u));
    assert.ok(u.input_tokens > 0, `the tokens after the last breakpoint are input: ${JSON.stringify(u)}`);
    assert.equal(u.cache_creation.ephemeral_1h_input_tokens + u.cache_creation.ephemeral_5m_input_tokens,
      u.cache_creation_input_tokens);
    assert.ok(u.cache_creation.ephemeral_1h_input_tokens > 0, JSON.stringify(u));
    assert.ok(u.cache_creation.ephemeral_5m_input_tokens > 0, JSON.stringify(u));
    assert.ok(u.prefix_cache.retention.retained_tokens > 0, JSON.stringify(u.prefix_cache));
    // The same request again reads at least up to the last breakpoint and writes nothing.
    const second = await client.messages.create(params);
    assert.equal(promptTokens(second.usage), count);
    assert.ok(second.usage.cache_read_input_tokens >= u.cache_read_input_tokens + u.cache_creation_input_tokens,
      JSON.stringify(second.usage));
    assert.equal(second.usage.cache_creation_input_tokens, 0);
    assert.equal(textOf(second), textOf(first));
    const stats = await (await fetch(`${srv.url}/v1/prefix_cache_stats`)).json();
    assert.ok(stats.by_tier.pool.retained_tokens > 0, JSON.stringify(stats.by_tier.pool));
    assert.ok(stats.by_tier.pool.retained_bytes > 0);
    assert.ok(stats.retention.requests >= 2, JSON.stringify(stats.retention));
  });

  it('a streamed message_start carries the cache figures of the final usage', T, async () => {
    const word = uniqueWord();
    const params = { model: srv.model, ...greedy,
      system: [{ type: 'text', text: `You are ${word}.`, cache_control: { type: 'ephemeral', ttl: '1h' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: `Tell me about ${word}.`,
        cache_control: { type: 'ephemeral' } }, { type: 'text', text: ' Briefly.' }] }] };
    // The first stream writes the breakpoints' prefix, the second reads it.
    for (const round of ['writes', 'reads']) {
      let start;
      let delta;
      for await (const ev of client.messages.stream(params)) {
        // Copied as they arrive: the SDK updates its message snapshot in place afterwards.
        if (ev.type === 'message_start') start = structuredClone(ev.message.usage);
        if (ev.type === 'message_delta') delta = structuredClone(ev.usage);
      }
      assert.ok(start && delta, round);
      for (const k of ['input_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens', 'cache_creation']) {
        assert.deepEqual(start[k], delta[k], `${round}: message_start ${k} ${JSON.stringify(start)} vs ${JSON.stringify(delta)}`);
      }
      assert.equal(start.output_tokens, 0);
      if (round === 'writes') {
        assert.ok(start.cache_creation.ephemeral_1h_input_tokens > 0, JSON.stringify(start));
        assert.ok(start.cache_creation.ephemeral_5m_input_tokens > 0, JSON.stringify(start));
      } else {
        assert.ok(start.cache_read_input_tokens > 0, JSON.stringify(start));
      }
    }
  });

  it('a cache_control ttl other than 5m or 1h is a 400 naming the field', T, async () => {
    await assert.rejects(client.messages.create({ model: srv.model, ...greedy,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral', ttl: '2h' } }] }] }),
    (e) => e.status === 400 && /cache_control\.ttl/.test(e.message));
  });

  it('the same conversation in both dialects renders the same prompt and shares its cache', T, async () => {
    const word = uniqueWord();
    const anthropic = await client.messages.create({ model: srv.model, system: 'Be brief.',
      messages: [{ role: 'user', content: `Hi ${word}` }, { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: [{ type: 'text', text: 'Tell me a story.' }] }], ...greedy });
    const openai = await srv.client.chat.completions.create({ model: srv.model, temperature: 0, max_tokens: 24,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: `Hi ${word}` },
        { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Tell me a story.' }] });
    assert.equal(openai.usage.prompt_tokens, promptTokens(anthropic.usage));
    assert.ok(openai.usage.prompt_tokens_details.cached_tokens >= openai.usage.prompt_tokens - 1,
      JSON.stringify(openai.usage));
    assert.equal(openai.choices[0].message.content, textOf(anthropic));
  });

  it('stops at a stop sequence and names it', T, async () => {
    const params = { model: srv.model, messages: user('Once upon a time'), ...greedy };
    const text = textOf(await client.messages.create(params));
    const stop = text.trim().split(/\s+/)[2];
    assert.ok(stop, text);
    const m = await client.messages.create({ ...params, stop_sequences: [stop] });
    assert.equal(m.stop_reason, 'stop_sequence');
    assert.equal(m.stop_sequence, stop);
    assert.equal(textOf(m), text.slice(0, text.indexOf(stop)));
  });

  // stories260K cannot write a tool call, so parsed calls are covered by the parser's unit
  // tests (tool_call_parser_test.cc, anthropic_response_test.cc); here the server takes
  // tools, a tool_use turn and its tool_result through rendering and answers.
  it('accepts tools, tool_use and tool_result blocks and answers', T, async () => {
    const tools = [{ name: 'get_weather', description: 'Current weather',
      input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
    const messages = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: [{ type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: 'sunny' }] },
        { type: 'text', text: 'Thanks' }] },
    ];
    const m = await client.messages.create({ model: srv.model, tools, tool_choice: { type: 'auto' }, messages, ...greedy });
    assert.equal(m.type, 'message');
    assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason));
    const { input_tokens } = await client.messages.countTokens({ model: srv.model, tools, messages });
    assert.equal(promptTokens(m.usage), input_tokens);
    await assert.rejects(
      client.messages.create({ model: srv.model, tools, tool_choice: { type: 'any' }, messages, ...greedy }),
      // stories260K's template (ChatML) has no call syntax: a forced call cannot be written
      // (tool_choice.test.mjs forces calls through a template that has one).
      (e) => e.status === 400 && e.error.error.type === 'invalid_request_error' && /no tool-call syntax/.test(e.error.error.message));
  });

  it('answers errors in Anthropic\'s shape', T, async () => {
    await assert.rejects(client.messages.create({ model: srv.model, messages: user('hi') }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'invalid_request_error');
      assert.match(e.error.error.message, /max_tokens/);
      return true;
    });
    await assert.rejects(client.messages.create({ model: 'other-model', messages: user('hi'), max_tokens: 4 }),
      (e) => e.status === 400 && /not served here/.test(e.error.error.message));
    const notJson = await srv.request('POST', '/v1/messages', { body: 'hello', raw: true,
      headers: { 'content-type': 'text/plain' } });
    assert.equal(notJson.status, 415);
    assert.equal(notJson.json.type, 'error');
    assert.equal(notJson.json.error.type, 'invalid_request_error');
    const deep = await srv.request('POST', '/v1/messages', { raw: true, headers: { 'content-type': 'application/json' },
      body: `{"max_tokens":4,"messages":[{"role":"user","content":"x"}],"metadata":${'['.repeat(100)}${']'.repeat(100)}}` });
    assert.equal(deep.status, 400);
    assert.equal(deep.json.error.type, 'invalid_request_error');
  });
});

describe('Anthropic Messages API with --api-key', { skip: skip ?? false }, () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--api-key', KEY] }); });
  after(async () => { await srv?.stop(); });

  it('takes the key as x-api-key or Bearer, and refuses a wrong one with 401', T, async () => {
    const params = { model: srv.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };
    const viaHeader = await anthropicClient(srv, { apiKey: KEY }).messages.create(params);
    assert.equal(viaHeader.type, 'message');
    const viaBearer = await anthropicClient(srv, { apiKey: null, authToken: KEY }).messages.countTokens(params);
    assert.ok(viaBearer.input_tokens > 0);
    await assert.rejects(anthropicClient(srv, { apiKey: 'wrong' }).messages.create(params), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'authentication_error');
      return true;
    });
  });
});

// A breakpoint keeps the prompt up to the end of ITS block (a tool, a system block, a content
// block), not of the chat message holding it. Qwen2.5's template (tests/e2e/templates) prints
// the tools inside the system message, so a breakpoint on one tool used to reach the end of
// that whole message. Each request has a cache salt of its own, so nothing is read from the
// cache and cache_creation_input_tokens is exactly where the breakpoint ends; the distance
// between two breakpoints is checked against count_tokens of the prompts with and without the
// block between them (the vocabulary starts a token at each of these blocks' edges).
const vocabModel = path.join(repoRoot, '../shared/models/llama-2-tiny-random.gguf');
const here = path.dirname(new URL(import.meta.url).pathname);

describe('cache_control breakpoints end at their block (Qwen2.5 template)', {
  skip: skip ?? (existsSync(vocabModel) ? false : `${vocabModel} is missing`) }, () => {
  let dir;
  let srv;
  let client;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-breakpoints-'));
    const model = path.join(dir, 'qwen25.gguf');
    execFileSync(binary, ['make-model', '--out', model, '--vocab-from', vocabModel, '--vocab', '0',
      '--chat-template', path.join(here, 'templates/qwen2.5-instruct.jinja'), '--layers', '1', '--embd', '32',
      '--heads', '2', '--kv-heads', '2', '--ff', '64', '--ctx', '2048', '--tie-output'], { stdio: 'pipe' });
    srv = await startServer({ model });
    client = anthropicClient(srv);
  });
  after(async () => {
    await srv?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cc = { cache_control: { type: 'ephemeral' } };
  const weather = { name: 'get_weather', description: 'Current weather in a city',
    input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };
  const time = { name: 'get_time', description: 'Local time in a city',
    input_schema: { type: 'object', properties: { city: { type: 'string' } } } };
  const question = [{ role: 'user', content: 'What should I wear in Paris today?' }];
  let salts = 0;

  const count = async (params) => (await client.messages.countTokens({ model: srv.model, ...params })).input_tokens;
  // Where the request's breakpoint ends, in prompt tokens.
  async function breakpointEnd(params) {
    const m = await client.messages.create({ model: srv.model, max_tokens: 1, temperature: 0,
      cache_salt: `breakpoints-${++salts}`, ...params });
    const u = m.usage;
    assert.equal(promptTokens(u), await count(params), JSON.stringify(u));
    assert.equal(u.cache_read_input_tokens, 0, JSON.stringify(u));
    assert.ok(u.cache_creation_input_tokens > 0 && u.input_tokens > 0, JSON.stringify(u));
    assert.equal(u.prefix_cache.retention.retained_tokens, u.cache_creation_input_tokens);
    return u.cache_creation_input_tokens;
  }

  it('on a tool: up to that tool\'s definition, and the next tool adds exactly its own tokens', T, async () => {
    const system = 'You dress people for the weather.';
    const onFirst = await breakpointEnd({ system, messages: question, tools: [{ ...weather, ...cc }, time] });
    const onSecond = await breakpointEnd({ system, messages: question, tools: [weather, { ...time, ...cc }] });
    const both = await count({ system, messages: question, tools: [weather, time] });
    const first = await count({ system, messages: question, tools: [weather] });
    assert.equal(onSecond - onFirst, both - first, `first tool ends at ${onFirst}, second at ${onSecond}`);
    // A system block's breakpoint keeps the tools before it in Anthropic's order, though Qwen
    // prints the system text first: it ends where the last tool does.
    const onSystem = await breakpointEnd({ system: [{ type: 'text', text: system, ...cc }], messages: question,
      tools: [weather, time] });
    assert.equal(onSystem, onSecond);
  });

  it('on a system block: up to that block of the system text', T, async () => {
    const one = 'You are a patient storyteller.';
    const two = ' You answer briefly.';
    const onOne = await breakpointEnd({ system: [{ type: 'text', text: one, ...cc }, { type: 'text', text: two }],
      messages: question });
    const onTwo = await breakpointEnd({ system: [{ type: 'text', text: one }, { type: 'text', text: two, ...cc }],
      messages: question });
    assert.equal(onTwo - onOne, await count({ system: one + two, messages: question }) -
      await count({ system: one, messages: question }));
  });

  it('on a middle content block: up to that block, not the end of its message', T, async () => {
    // The last block ends in a newline: its last token never merges with the template's text after it.
    const blocks = ['Here is my question.', ' Where is the cat?', ' Answer in one word.\n'];
    const content = (marked) => blocks.map((text, i) => ({ type: 'text', text, ...(i === marked ? cc : {}) }));
    const turn = (c) => [{ role: 'user', content: 'Hello.' }, { role: 'assistant', content: 'Hi.' }, { role: 'user', content: c }];
    const onFirst = await breakpointEnd({ messages: turn(content(0)) });
    const onMiddle = await breakpointEnd({ messages: turn(content(1)) });
    const onLast = await breakpointEnd({ messages: turn(content(2)) });
    const without = (i) => blocks.filter((_, k) => k !== i).join('');
    const all = await count({ messages: turn(blocks.join('')) });
    assert.equal(onMiddle - onFirst, all - await count({ messages: turn(without(1)) }));
    assert.equal(onLast - onMiddle, all - await count({ messages: turn(without(2)) }));
    // The generation prompt and the message's own end are after the last block.
    assert.ok(onLast < all, `${onLast} < ${all}`);
  });
});
