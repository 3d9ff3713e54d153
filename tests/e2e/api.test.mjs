// The OpenAI-compatible API through the official client: completions, chat, streaming,
// cached_tokens, cache_salt isolation, stop strings, errors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { missingPrerequisite, startServer, uniqueWord } from './server.mjs';

const skip = missingPrerequisite();
const T = { timeout: 60000 };

describe('OpenAI API', { skip: skip ?? false }, () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv?.stop(); });

  // Greedy, so two identical requests must say the same thing.
  const greedy = { temperature: 0, max_tokens: 24 };

  async function streamText(params) {
    const stream = await srv.client.completions.create({ ...params, stream: true });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      if (chunk.choices.length) {
        text += chunk.choices[0].text;
        finish = chunk.choices[0].finish_reason ?? finish;
      }
    }
    return { text, finish };
  }

  async function streamChat(params) {
    const stream = await srv.client.chat.completions.create({
      ...params, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish = null;
    let usage = null;
    let role = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      if (!chunk.choices.length) continue;
      const c = chunk.choices[0];
      role = role ?? c.delta.role ?? null;
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
    return { text, finish, usage, role };
  }

  it('completes a string prompt', T, async () => {
    const r = await srv.client.completions.create({ model: srv.model, prompt: 'Once upon a time', ...greedy });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.ok(r.choices[0].text.length > 0);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 24);
    assert.ok(r.usage.prompt_tokens > 1);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
    assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
    assert.equal(typeof r.usage.prefix_cache.by_tier.pool, 'number');
  });

  it('completes a token-id prompt the same as its text', T, async () => {
    const text = await srv.client.completions.create({ model: srv.model, prompt: 'Once upon a time', ...greedy });
    const tok = await srv.request('POST', '/tokenize', { body: { content: 'Once upon a time', add_special: true } });
    assert.equal(tok.status, 200);
    const ids = tok.json.tokens;
    assert.equal(ids.length, text.usage.prompt_tokens);
    const byIds = await srv.client.completions.create({ model: srv.model, prompt: ids, ...greedy });
    assert.equal(byIds.usage.prompt_tokens, ids.length);
    assert.equal(byIds.choices[0].text, text.choices[0].text);
    const nested = await srv.client.completions.create({ model: srv.model, prompt: [ids], ...greedy });
    assert.equal(nested.choices[0].text, text.choices[0].text);
    const detok = await srv.request('POST', '/detokenize', { body: { tokens: ids.slice(1) } });
    assert.equal(detok.json.content.trim(), 'Once upon a time');
  });

  it('chats', T, async () => {
    const r = await srv.client.chat.completions.create({
      model: srv.model,
      messages: [{ role: 'system', content: 'You tell short stories.' },
                 { role: 'user', content: [{ type: 'text', text: 'Tell me about a cat.' }] }],
      ...greedy,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 5);
  });

  it('streams the same text as it returns whole (completions)', T, async () => {
    const params = { model: srv.model, prompt: `The dog ${uniqueWord()} ran`, ...greedy, max_tokens: 40 };
    const whole = await srv.client.completions.create(params);
    const streamed = await streamText(params);
    assert.equal(streamed.text, whole.choices[0].text);
    assert.equal(streamed.finish, whole.choices[0].finish_reason);
  });

  it('streams the same text as it returns whole (chat), with usage', T, async () => {
    const params = { model: srv.model, messages: [{ role: 'user', content: `Say ${uniqueWord()}` }], ...greedy };
    const whole = await srv.client.chat.completions.create(params);
    const streamed = await streamChat(params);
    assert.equal(streamed.role, 'assistant');
    assert.equal(streamed.text, whole.choices[0].message.content);
    assert.equal(streamed.finish, whole.choices[0].finish_reason);
    assert.ok(streamed.usage);
    assert.equal(streamed.usage.completion_tokens, whole.usage.completion_tokens);
    assert.equal(streamed.usage.prompt_tokens, whole.usage.prompt_tokens);
  });

  it('reports cached_tokens: 0 first, > 0 on a repeat, 0 under another salt', T, async () => {
    const salt = `tenant-${uniqueWord()}`;
    const params = {
      model: srv.model,
      prompt: 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.',
      ...greedy,
    };
    const first = await srv.client.completions.create({ ...params, cache_salt: salt });
    assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(first.usage.prefix_cache.diverged_at_token, 0);
    const again = await srv.client.completions.create({ ...params, cache_salt: salt });
    assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0);
    assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prefix_cache.cached_tokens);
    assert.equal(again.choices[0].text, first.choices[0].text);
    const other = await srv.client.completions.create({ ...params, cache_salt: `${salt}-other` });
    assert.equal(other.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(other.choices[0].text, first.choices[0].text);
  });

  it('says in which message a chat diverged from the cache', T, async () => {
    const salt = `chat-${uniqueWord()}`;
    const history = [
      { role: 'system', content: 'You are a storyteller who tells stories about animals.' },
      { role: 'user', content: 'Tell me a story about a brave little dog.' },
    ];
    await srv.client.chat.completions.create({ model: srv.model, messages: history, cache_salt: salt, ...greedy });
    const next = await srv.client.chat.completions.create({
      model: srv.model, cache_salt: salt, ...greedy,
      messages: [...history.slice(0, 1), { role: 'user', content: 'Tell me a story about a sleepy old cat.' }],
    });
    const pc = next.usage.prefix_cache;
    assert.ok(pc.cached_tokens > 0);
    assert.equal(pc.diverged_at_token, pc.cached_tokens);
    assert.equal(pc.diverged_in_message, 1);
  });

  it('stops before a stop string', T, async () => {
    const params = { model: srv.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 60 };
    const full = (await srv.client.completions.create(params)).choices[0].text;
    const words = full.trim().split(/\s+/);
    const stop = words[Math.min(4, words.length - 1)];
    const cut = full.indexOf(stop);
    assert.ok(cut > 0, `'${stop}' in '${full}'`);
    const stopped = await srv.client.completions.create({ ...params, stop: [stop, 'zzzz'] });
    assert.equal(stopped.choices[0].text, full.slice(0, cut));
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.ok(stopped.usage.completion_tokens < 60);
    const streamed = await streamText({ ...params, stop });
    assert.equal(streamed.text, full.slice(0, cut));
    assert.equal(streamed.finish, 'stop');
  });

  it('returns logprobs in the legacy completions shape', T, async () => {
    const r = await srv.client.completions.create({
      model: srv.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 8, logprobs: 2 });
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, 8);
    assert.equal(lp.token_logprobs.length, 8);
    assert.equal(lp.top_logprobs.length, 8);
    assert.equal(lp.text_offset[0], 0);
    assert.equal(lp.tokens.join(''), r.choices[0].text);
    for (const v of lp.token_logprobs) assert.ok(v <= 0);
  });

  it('streams logprobs with their text, and returns chat logprobs', T, async () => {
    const stream = await srv.client.completions.create({
      model: srv.model, prompt: 'Once upon a time', temperature: 0, max_tokens: 10, logprobs: 1, stream: true });
    let text = '';
    const tokens = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      text += c.text;
      if (c.logprobs) tokens.push(...c.logprobs.tokens);
    }
    assert.equal(tokens.length, 10);
    assert.equal(tokens.join(''), text);
    const chat = await srv.client.chat.completions.create({
      model: srv.model, messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 6,
      logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0].logprobs.content;
    assert.ok(content.length > 0);
    assert.equal(content.map((t) => t.token).join(''), chat.choices[0].message.content);
    for (const t of content) {
      assert.equal(t.top_logprobs.length, 3);
      assert.ok(t.logprob <= 0);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    }
  });

  it('lists the model, answers /health and /props', T, async () => {
    const models = await srv.client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [srv.model]);
    assert.deepEqual((await srv.request('GET', '/health')).json, { status: 'ok' });
    const props = (await srv.request('GET', '/props')).json;
    assert.equal(props.model.id, srv.model);
    assert.equal(props.kv.block_size, 16);
    assert.equal(props.kv.dtype, 'f16');
    assert.equal(props.backend, 'cpu');
    assert.equal(props.prefix_cache.hash, 'xxh3');
    assert.equal(props.chat_template.format, 'plain');
  });

  it('answers bad requests with the SDK error classes', T, async () => {
    const cases = [
      { max_tokens: -1 },
      { max_tokens: 1e9 },
      { n: 2 },
      { prompt: '' },
      { prompt: ['a', 'b'] },
      { temperature: 'hot' },
      { model: 'gpt-4o' },
      { stop: ['a', 'b', 'c', 'd', 'e'] },
      { logprobs: 9 },
      { echo: true },
      { prompt: 'x '.repeat(5000) },
    ];
    for (const bad of cases) {
      await assert.rejects(
        srv.client.completions.create({ model: srv.model, prompt: 'Once', max_tokens: 4, ...bad }),
        (e) => {
          assert.ok(e instanceof OpenAI.BadRequestError, `${JSON.stringify(bad).slice(0, 60)}: ${e}`);
          assert.equal(e.status, 400);
          assert.ok(e.error?.message, 'an error message');
          return true;
        });
    }
    await assert.rejects(
      srv.client.chat.completions.create({ model: srv.model, messages: [] }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages');
    await assert.rejects(
      srv.client.chat.completions.create({ model: srv.model, messages: [{ role: 'wizard', content: 'hi' }] }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages[0].role');
    await assert.rejects(srv.client.get('/no-such-route'), (e) => e instanceof OpenAI.NotFoundError);
  });

  it('asks for the API key when one is configured', T, async () => {
    const keyed = await startServer({ adminKey: null, args: ['--api-key', 'secret'] });
    try {
      const bad = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
      await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
      const good = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'secret', maxRetries: 0 });
      assert.equal((await good.models.list()).data.length, 1);
    } finally {
      await keyed.stop();
    }
  });
});
