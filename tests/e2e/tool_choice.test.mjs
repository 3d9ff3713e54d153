// Forced tool calls (issue 19): tool_choice "required" / a named function (OpenAI) and
// {type: "any"} / {type: "tool"} (Anthropic) constrain generation to calls in the chat
// template's syntax, their arguments valid for the tool's schema: one call, or with parallel
// calls allowed (OpenAI's parallel_tool_calls, Anthropic's disable_parallel_tool_use) several
// in the Hermes syntax, the model choosing after each call between its end and another. The
// model here has random weights and could never write a call by itself, so every call below is
// the constraint's work; calls come back parsed, plain and streamed, through both official
// clients, and go round trip (the calls and tool results sent back). Stop strings do not cut a
// forced call. A template without a call syntax refuses a forced call; so does an unknown tool
// name, in each dialect's error shape. The same runs through a Llama 3-style template (JSON
// calls with "parameters", one call only).
//
// The last test measures the constraint's cost per generated token on the 32,000-token
// vocabulary of llama-2-tiny-random (the engine thread's CPU time outside the forward pass,
// forced calls against unconstrained replies of the same lengths), and prints it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { binary, metricValue, missingPrerequisite, repoRoot, startServer, uniqueWord } from './server.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const vocabModel = path.join(repoRoot, '../shared/models/llama-2-tiny-random.gguf');
const skip = missingPrerequisite() ?? (existsSync(vocabModel) ? null : `${vocabModel} is missing`);
const T = { timeout: 120000 };

// A Llama 3.1-style template reduced to what the Llama 3 JSON call syntax needs: a header
// template that renders tools (so the server's parser reads {"name", "parameters"} calls), an
// assistant turn's calls in that syntax, and tool results as ipython turns.
const LLAMA3_TOOLS_TEMPLATE = `{{- bos_token }}
{%- if tools %}{{- '<|start_header_id|>system<|end_header_id|>\n\nAnswer with a call as {"name": function name, "parameters": dictionary of argument name and its value}. Functions:\n' }}
{%- for t in tools %}{{- t | tojson }}{{- '\n' }}{%- endfor %}{{- '<|eot_id|>' }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'assistant' and message.tool_calls %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- for c in message.tool_calls %}{{- '{"name": "' + c.function.name + '", "parameters": ' + (c.function.arguments | tojson) + '}' }}{%- endfor %}{{- '<|eot_id|>' }}
{%- elif message.role == 'tool' %}{{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + message.content + '<|eot_id|>' }}
{%- else %}{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content + '<|eot_id|>' }}{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}`;

// A model with llama-2-tiny-random's 32,000-token vocabulary, random weights and a chat
// template: Qwen2.5-Instruct's (Hermes <tool_call> syntax) unless given.
function makeModel(dir, name = 'qwen2.5', template = readFileSync(path.join(here, 'templates/qwen2.5-instruct.jinja'), 'utf8')) {
  const tpl = path.join(dir, `${name}.jinja`);
  writeFileSync(tpl, template);
  const out = path.join(dir, `${name}.gguf`);
  execFileSync(binary, ['make-model', '--out', out, '--vocab-from', vocabModel, '--chat-template', tpl,
                        '--layers', '1', '--embd', '32', '--heads', '2', '--kv-heads', '2', '--ff', '64',
                        '--ctx', '2048', '--vocab', '0', '--tie-output'], { stdio: 'pipe' });
  return out;
}

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather in a city',
  parameters: {
    type: 'object',
    properties: {
      city: { type: 'string', maxLength: 20 },
      days: { type: 'integer' },
      unit: { enum: ['celsius', 'fahrenheit'] },
      hourly: { type: 'boolean' },
    },
    required: ['city', 'days'],
  },
};
const SEARCH = {
  name: 'search',
  description: 'Search the web',
  parameters: {
    type: 'object',
    properties: { query: { type: 'string', maxLength: 24 }, tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 } },
    required: ['query'],
  },
};
const openAiTools = [WEATHER, SEARCH].map((f) => ({ type: 'function', function: f }));
const anthropicTools = [WEATHER, SEARCH].map((f) => ({ name: f.name, description: f.description, input_schema: f.parameters }));

// The arguments follow the schema: the types, the enum, the bounds, the required properties,
// no other property.
function assertValid(args, schema) {
  assert.equal(typeof args, 'object');
  for (const r of schema.required ?? []) assert.ok(r in args, `missing ${r} in ${JSON.stringify(args)}`);
  for (const [k, v] of Object.entries(args)) {
    const s = schema.properties[k];
    assert.ok(s, `unexpected property ${k}`);
    if (s.enum) assert.ok(s.enum.includes(v), `${k}: ${v}`);
    if (s.type === 'string') assert.ok(typeof v === 'string' && [...v].length <= s.maxLength, `${k}: ${v}`);
    if (s.type === 'integer') assert.ok(Number.isInteger(v), `${k}: ${v}`);
    if (s.type === 'boolean') assert.equal(typeof v, 'boolean');
    if (s.type === 'array') {
      assert.ok(Array.isArray(v) && v.length <= s.maxItems);
      for (const x of v) assert.ok(typeof x === 'string' && [...x].length <= s.items.maxLength);
    }
  }
}

const schemaOf = (name) => [WEATHER, SEARCH].find((f) => f.name === name).parameters;

// OpenAI's tool_calls: at least one, each with its id and valid arguments for its tool.
function assertValidCalls(calls) {
  assert.ok(calls.length >= 1);
  for (const call of calls) {
    assert.equal(call.type, 'function');
    assert.match(call.id, /^call_/);
    assertValid(JSON.parse(call.function.arguments), schemaOf(call.function.name));
  }
}

// A streamed chat completion, gathered: its text, its calls by index ({name, arguments}) and
// their ids, its finish reason.
async function collectChatStream(stream) {
  let content = '';
  let finish = null;
  const calls = [];
  const ids = [];
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    content += c.delta?.content ?? '';
    for (const tc of c.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { name: '', arguments: '' };
      if (tc.id) ids[tc.index] = tc.id;
      calls[tc.index].name += tc.function?.name ?? '';
      calls[tc.index].arguments += tc.function?.arguments ?? '';
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(calls.filter(Boolean).length, calls.length, 'every index from 0 has a call');
  for (let i = 0; i < calls.length; ++i) assert.match(ids[i], /^call_/);
  return { content, calls, finish };
}

const functionsOf = (message) => message.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments }));
const toolUsesOf = (message) => message.content.filter((b) => b.type === 'tool_use');

// Tests of one call turn parallel calls off: with them on, a random prompt can keep the model
// writing calls until max_tokens (the parallel test covers several calls).
const greedy = { temperature: 0, max_tokens: 200 };
const question = (word) => [{ role: 'user', content: `What is the weather in ${word} this week?` }];

// A server on a model made with `template` (makeModel), started before the enclosing suite's
// tests and stopped after them; `s.srv` and `s.anthropic` (the official client on it) are set
// once it runs.
function serveForSuite(name, template) {
  const s = {};
  before(async () => {
    s.dir = mkdtempSync(path.join(os.tmpdir(), `prefixd-tool-choice-${name}-`));
    s.srv = await startServer({ model: makeModel(s.dir, name, template) });
    s.anthropic = new Anthropic({ baseURL: s.srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    await s.srv?.stop();
    if (s.dir) rmSync(s.dir, { recursive: true, force: true });
  });
  return s;
}

describe('forced tool calls', { skip: skip ?? false }, () => {
  const s = serveForSuite('qwen2.5');

  it('OpenAI: required without parallel calls gives one parsed call with finish_reason tool_calls, the same from the cache', T, async () => {
    const messages = question(uniqueWord());
    const params = { model: s.srv.model, messages, tools: openAiTools, tool_choice: 'required',
      parallel_tool_calls: false, ...greedy };
    const cold = await s.srv.client.chat.completions.create(params);
    const choice = cold.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    assertValidCalls(choice.message.tool_calls);
    // The same request again: its prompt comes from the cache, and the call is the same.
    const warm = await s.srv.client.chat.completions.create(params);
    assert.ok(warm.usage.prompt_tokens_details.cached_tokens > 0);
    assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
    assert.deepEqual(warm.choices[0].message.tool_calls.map((c) => c.function),
                     choice.message.tool_calls.map((c) => c.function));
  });

  it('OpenAI: a named function, streamed, equals the whole answer', T, async () => {
    const params = { model: s.srv.model, messages: question(uniqueWord()), tools: openAiTools,
      tool_choice: { type: 'function', function: { name: 'search' } }, parallel_tool_calls: false, ...greedy };
    const whole = await s.srv.client.chat.completions.create(params);
    assert.equal(whole.choices[0].finish_reason, 'tool_calls');
    assertValidCalls(whole.choices[0].message.tool_calls);
    for (const call of whole.choices[0].message.tool_calls) assert.equal(call.function.name, 'search');

    const streamed = await collectChatStream(await s.srv.client.chat.completions.create({ ...params, stream: true }));
    assert.equal(streamed.finish, 'tool_calls');
    assert.equal(streamed.content, '');
    assert.deepEqual(streamed.calls,
                     functionsOf(whole.choices[0].message));
  });

  it('OpenAI: the call and a tool result go round trip', T, async () => {
    const messages = question(uniqueWord());
    const first = await s.srv.client.chat.completions.create({ model: s.srv.model, messages, tools: openAiTools,
      tool_choice: { type: 'function', function: { name: 'get_weather' } }, parallel_tool_calls: false, ...greedy });
    const message = first.choices[0].message;
    const results = message.tool_calls.map((call) => ({ role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' }));
    const next = await s.srv.client.chat.completions.create({ model: s.srv.model, tools: openAiTools, ...greedy, max_tokens: 8,
      messages: [...messages, message, ...results] });
    assert.ok(['length', 'stop', 'tool_calls'].includes(next.choices[0].finish_reason));
    // The reply (the call) is part of the next prompt, which the cache serves up to it.
    assert.ok(next.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1,
              JSON.stringify(next.usage));
  });

  it('OpenAI: cut short by max_tokens, the text stays text with finish_reason length', T, async () => {
    const r = await s.srv.client.chat.completions.create({ model: s.srv.model, messages: question(uniqueWord()),
      tools: openAiTools, tool_choice: 'required', temperature: 0, max_tokens: 6 });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, 'length');
    assert.equal(choice.message.tool_calls, undefined);
    assert.ok(choice.message.content.startsWith('<tool'), choice.message.content);
    assert.equal(r.usage.completion_tokens, 6);
  });

  it('OpenAI: an unknown tool name or a schema the constraint cannot enforce is a 400 naming it', T, async () => {
    await assert.rejects(s.srv.client.chat.completions.create({ model: s.srv.model, messages: question('x'), tools: openAiTools,
      tool_choice: { type: 'function', function: { name: 'fly' } }, ...greedy }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.param, 'tool_choice.function.name');
      assert.match(e.message, /'fly', which is not among the request's tools/);
      return true;
    });
    const patterned = { type: 'function', function: { name: 'p', parameters: { type: 'object',
      properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } } } };
    await assert.rejects(s.srv.client.chat.completions.create({ model: s.srv.model, messages: question('x'),
      tools: [patterned], tool_choice: 'required', ...greedy }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.param, 'tools[0].function.parameters.properties.code.pattern');
      return true;
    });
  });

  it('Anthropic: any gives a tool_use block with stop_reason tool_use; tool, streamed, the same as whole', T, async () => {
    const messages = question(uniqueWord());
    const m = await s.anthropic.messages.create({ model: s.srv.model, messages, tools: anthropicTools,
      tool_choice: { type: 'any', disable_parallel_tool_use: true }, ...greedy });
    assert.equal(m.stop_reason, 'tool_use');
    const uses = toolUsesOf(m);
    assert.equal(uses.length, 1);
    assert.match(uses[0].id, /^toolu_/);
    assertValid(uses[0].input, schemaOf(uses[0].name));

    // One call: with parallel calls allowed a random prompt can keep the model writing calls
    // until max_tokens (the parallel test below covers several).
    const params = { model: s.srv.model, messages, tools: anthropicTools,
      tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true }, ...greedy };
    const whole = await s.anthropic.messages.create(params);
    const streamed = await s.anthropic.messages.stream(params).finalMessage();
    for (const msg of [whole, streamed]) {
      assert.equal(msg.stop_reason, 'tool_use');
      assert.equal(toolUsesOf(msg).length, 1);
      for (const use of toolUsesOf(msg)) {
        assert.equal(use.name, 'get_weather');
        assertValid(use.input, WEATHER.parameters);
      }
    }
    assert.deepEqual(toolUsesOf(streamed).map((b) => b.input), toolUsesOf(whole).map((b) => b.input));
  });

  it('Anthropic: the tool_use and its tool_result go round trip', T, async () => {
    const messages = question(uniqueWord());
    const first = await s.anthropic.messages.create({ model: s.srv.model, messages, tools: anthropicTools,
      tool_choice: { type: 'tool', name: 'search', disable_parallel_tool_use: true }, ...greedy });
    const results = toolUsesOf(first).map((use) => ({ type: 'tool_result', tool_use_id: use.id, content: 'three results' }));
    const next = await s.anthropic.messages.create({ model: s.srv.model, tools: anthropicTools, ...greedy, max_tokens: 8,
      messages: [...messages, { role: 'assistant', content: first.content }, { role: 'user', content: results }] });
    assert.equal(next.type, 'message');
    assert.ok(['max_tokens', 'end_turn', 'tool_use'].includes(next.stop_reason));
    assert.ok(next.usage.cache_read_input_tokens > 0, JSON.stringify(next.usage));
  });

  it('Anthropic: an unknown tool name is a 400 in Anthropic\'s shape', T, async () => {
    await assert.rejects(s.anthropic.messages.create({ model: s.srv.model, messages: question('x'), tools: anthropicTools,
      tool_choice: { type: 'tool', name: 'fly' }, ...greedy }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'invalid_request_error');
      assert.match(e.error.error.message, /tool_choice\.name.*'fly'/);
      return true;
    });
  });

  it('stop strings do not cut a forced call (OpenAI stop, Anthropic stop_sequences)', T, async () => {
    // Each of these occurs in every call (the JSON's own punctuation, the property written first),
    // so any of them applied to the text would end it inside the call.
    const stops = ['}', '": ', 'city', '"'];
    const messages = question(uniqueWord());
    const params = { model: s.srv.model, messages, tools: openAiTools, ...greedy, parallel_tool_calls: false,
      tool_choice: { type: 'function', function: { name: 'get_weather' } } };
    const whole = await s.srv.client.chat.completions.create({ ...params, stop: stops });
    assert.equal(whole.choices[0].finish_reason, 'tool_calls');
    assertValidCalls(whole.choices[0].message.tool_calls);
    // The same call as without stop strings, streamed too.
    const plain = await s.srv.client.chat.completions.create(params);
    assert.deepEqual(functionsOf(whole.choices[0].message), functionsOf(plain.choices[0].message));
    const streamed = await collectChatStream(await s.srv.client.chat.completions.create({ ...params, stop: stops, stream: true }));
    assert.equal(streamed.finish, 'tool_calls');
    assert.deepEqual(streamed.calls, functionsOf(plain.choices[0].message));

    const m = await s.anthropic.messages.create({ model: s.srv.model, messages, tools: anthropicTools, ...greedy,
      tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true }, stop_sequences: stops });
    assert.equal(m.stop_reason, 'tool_use');
    assert.equal(m.stop_sequence, null);
    assert.deepEqual(toolUsesOf(m).map((u) => u.input), functionsOf(plain.choices[0].message).map((f) => JSON.parse(f.arguments)));
  });

  it('parallel calls: several come back in each dialect\'s shape, and one with parallel calls off', T, async (t) => {
    // Sampling with fixed seeds: the first seed whose answer holds more than one call (the model
    // chooses after each call between its end token and another).
    const messages = [{ role: 'user', content: 'What is the weather in Paris and in Rome, and what does the web say?' }];
    const params = { model: s.srv.model, messages, tools: openAiTools, tool_choice: 'required', temperature: 1, max_tokens: 1500 };
    let found = null;
    for (let seed = 1; seed <= 32 && !found; ++seed) {
      const r = await s.srv.client.chat.completions.create({ ...params, seed });
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assertValidCalls(r.choices[0].message.tool_calls);
      assert.ok(r.choices[0].message.tool_calls.length <= 8);
      if (r.choices[0].message.tool_calls.length >= 2) found = { seed, whole: r };
    }
    assert.ok(found, 'no seed of 32 gave several calls');
    const { seed, whole } = found;
    const calls = functionsOf(whole.choices[0].message);
    t.diagnostic(`seed ${seed}: ${calls.length} calls`);
    assert.equal(new Set(whole.choices[0].message.tool_calls.map((c) => c.id)).size, calls.length, 'distinct ids');

    // Streamed: the same calls, each under its own index.
    const streamed = await collectChatStream(await s.srv.client.chat.completions.create({ ...params, seed, stream: true }));
    assert.equal(streamed.finish, 'tool_calls');
    assert.deepEqual(streamed.calls, calls);

    // Anthropic, the same conversation and seed: one tool_use block per call, whole and streamed.
    const anthropicParams = { model: s.srv.model, messages, tools: anthropicTools, tool_choice: { type: 'any' },
      temperature: 1, max_tokens: 1500, seed };
    for (const m of [await s.anthropic.messages.create(anthropicParams),
      await s.anthropic.messages.stream(anthropicParams).finalMessage()]) {
      assert.equal(m.stop_reason, 'tool_use');
      const uses = toolUsesOf(m);
      assert.deepEqual(uses.map((u) => ({ name: u.name, input: u.input })),
                       calls.map((c) => ({ name: c.name, input: JSON.parse(c.arguments) })));
      assert.equal(new Set(uses.map((u) => u.id)).size, uses.length);
    }

    // Parallel calls off, the same seed: the first call alone.
    const single = await s.srv.client.chat.completions.create({ ...params, seed, parallel_tool_calls: false });
    assert.deepEqual(functionsOf(single.choices[0].message), calls.slice(0, 1));
    const one = await s.anthropic.messages.create({ ...anthropicParams, tool_choice: { type: 'any', disable_parallel_tool_use: true } });
    assert.deepEqual(toolUsesOf(one).map((u) => u.input), [JSON.parse(calls[0].arguments)]);

    // Round trip: every call and its result go back; the cache serves the prompt and the calls.
    const results = whole.choices[0].message.tool_calls.map((c) => ({ role: 'tool', tool_call_id: c.id, content: 'ok' }));
    const next = await s.srv.client.chat.completions.create({ model: s.srv.model, tools: openAiTools, ...greedy, max_tokens: 8,
      messages: [...messages, whole.choices[0].message, ...results] });
    assert.ok(next.usage.prompt_tokens_details.cached_tokens >= whole.usage.prompt_tokens - 1, JSON.stringify(next.usage));
  });

  it('measures the constraint\'s cost per token on a 32,000-token vocabulary', T, async (t) => {
    const cpuOutsideForward = async () => {
      const text = (await s.srv.request('GET', '/metrics')).text;
      return { cpu: metricValue(text, 'prefixd_engine_thread_cpu_outside_forward_seconds_total'),
               tokens: metricValue(text, 'prefixd_generated_tokens_total') };
    };
    const N = 8;
    const measure = async (forced) => {
      const before = await cpuOutsideForward();
      for (let i = 0; i < N; ++i) {
        const body = { model: s.srv.model, messages: question(uniqueWord()), tools: openAiTools, temperature: 0,
          max_tokens: 64, ...(forced ? { tool_choice: 'required' } : { tool_choice: 'none', ignore_eos: true }) };
        await s.srv.client.chat.completions.create(body);
      }
      const after = await cpuOutsideForward();
      return { us: (after.cpu - before.cpu) * 1e6 / (after.tokens - before.tokens), tokens: after.tokens - before.tokens };
    };
    const plain = await measure(false);
    const forced = await measure(true);
    t.diagnostic(`engine CPU outside the forward pass per generated token: unconstrained ${plain.us.toFixed(1)} us ` +
                 `(${plain.tokens} tokens), forced call ${forced.us.toFixed(1)} us (${forced.tokens} tokens)`);
    console.log(`tool_choice cost: unconstrained ${plain.us.toFixed(1)} us/token, forced ${forced.us.toFixed(1)} us/token`);
    assert.ok(forced.tokens > 0 && plain.tokens > 0);
  });
});

describe('forced tool calls in the Llama 3 JSON syntax', { skip: skip ?? false }, () => {
  const s = serveForSuite('llama3-tools', LLAMA3_TOOLS_TEMPLATE);

  it('OpenAI: required, plain and streamed, then round trip', T, async () => {
    const messages = question(uniqueWord());
    const params = { model: s.srv.model, messages, tools: openAiTools, tool_choice: 'required', ...greedy };
    const whole = await s.srv.client.chat.completions.create(params);
    assert.equal(whole.choices[0].finish_reason, 'tool_calls');
    // Parallel calls are allowed (the default), but Llama 3's templates take one call a turn.
    assert.equal(whole.choices[0].message.tool_calls.length, 1);
    assertValidCalls(whole.choices[0].message.tool_calls);
    const call = whole.choices[0].message.tool_calls[0];
    const streamed = await collectChatStream(await s.srv.client.chat.completions.create({ ...params, stream: true }));
    assert.equal(streamed.finish, 'tool_calls');
    assert.deepEqual(streamed.calls, functionsOf(whole.choices[0].message));
    const next = await s.srv.client.chat.completions.create({ model: s.srv.model, tools: openAiTools, ...greedy, max_tokens: 8,
      messages: [...messages, whole.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'sunny' }] });
    assert.ok(next.usage.prompt_tokens_details.cached_tokens >= whole.usage.prompt_tokens - 1, JSON.stringify(next.usage));
  });

  it('Anthropic: a named tool comes back as tool_use', T, async () => {
    const m = await s.anthropic.messages.create({ model: s.srv.model, messages: question(uniqueWord()), tools: anthropicTools,
      tool_choice: { type: 'tool', name: 'search' }, ...greedy });
    assert.equal(m.stop_reason, 'tool_use');
    const use = m.content.find((b) => b.type === 'tool_use');
    assert.equal(use.name, 'search');
    assertValid(use.input, SEARCH.parameters);
  });
});
