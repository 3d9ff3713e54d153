// Issue 5, acceptance "Restart": serve with a disk cache, send a ~1,500-token chat, stop the
// server (SIGTERM, or kill -9 once the disk writes have completed), start it again on the same
// folder and resend: cached_tokens is exactly the part the scope policy persisted (the server's
// auto:30 or full, or a request's own prefix_cache.scope), all of it from disk, and the answer
// (tokens and logprobs) is identical to the first, cold one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blockFiles, makeLongContextModel, missingVocabModel, waitForDiskWrites, wordSalad } from './disk_tier.mjs';
import { missingPrerequisite, startServer } from './server.mjs';

const skip = missingPrerequisite() ?? missingVocabModel();
const work = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-restart-'));
const BS = 16;  // --block-size (the default)

// A stable head (a long system prompt) and a short last message, as agents send.
const system = wordSalad(1320, 7);
const messages = [
  { role: 'system', content: system },
  { role: 'user', content: 'What did the owls see from the old oak tree?' },
];

// The chat's tokens and where its last message starts, from the server's own tokenizer: the
// server renders chats without a template as "System: ...\nUser: ...\nAssistant:" (/props says
// "plain"), so the text before the last message is "System: <system>\n".
async function lastMessageStart(srv) {
  const props = (await srv.request('GET', '/props')).json;
  assert.equal(props.chat_template.format, 'plain', 'this test renders the plain chat format');
  const head = await srv.client.completions.create({
    model: srv.model, prompt: `System: ${system}\n`, max_tokens: 1, temperature: 0 });
  return head.usage.prompt_tokens;
}

// `override`: the request's own prefix_cache.scope (the server's policy stays the default).
function chat(srv, override) {
  return srv.client.chat.completions.create({
    model: srv.model, messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2,
    ...(override ? { prefix_cache: { scope: override } } : {}) });
}

// Each policy once, each way of stopping at least once (each case costs a cold 1,500-token
// prefill; the whole cross product would double the time for little more).
const cases = [
  { scope: 'auto:30', flag: [], stop: 'SIGTERM' },  // the default policy
  { scope: 'full', flag: ['--disk-prefix-cache', 'full'], stop: 'SIGKILL' },
  { scope: 'auto:30', flag: [], stop: 'SIGKILL', override: '520' },  // the first 520 tokens
];

describe('restart on the same disk cache', { skip: skip ?? false }, () => {
  let model;
  before(() => { model = makeLongContextModel(work); });
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const { scope, flag, stop, override } of cases) {
    const what = override ? `${scope} with a request scope of ${override}` : scope;
    it(`${what}, stopped with ${stop}: cached_tokens covers the scope, same answer`, { timeout: 60000 }, async (t) => {
      const dir = mkdtempSync(path.join(work, 'disk-'));
      const args = ['--disk-cache-dir', dir, ...flag];
      let first;
      let expected;
      const srv1 = await startServer({ model, args });
      try {
        assert.equal((await srv1.request('GET', '/props')).json.prefix_cache.disk_policy, scope);
        first = await chat(srv1, override);
        const n = first.usage.prompt_tokens;
        assert.ok(n >= 1400 && n <= 1700, `a ~1,500-token prompt, got ${n}`);
        assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
        // full: every full block of the prompt; the last prompt token is always recomputed.
        // auto with no similar prompt yet: the full blocks before the last message.
        // N: the full blocks of the first N tokens.
        if (override) {
          expected = Math.floor(Number(override) / BS) * BS;
        } else if (scope === 'full') {
          expected = Math.min(Math.floor(n / BS) * BS, n - 1);
        } else {
          expected = Math.floor((await lastMessageStart(srv1)) / BS) * BS;
          assert.ok(expected > 1000, `the scope keeps most of the prompt (${expected} of ${n})`);
        }
        t.diagnostic(`${n} prompt tokens, ${expected} in scope`);
        const disk = await waitForDiskWrites(srv1);
        assert.equal(disk.blocks, Math.ceil(expected / BS), JSON.stringify(disk));
        assert.equal(disk.write_failures, 0);
      } finally {
        if (stop === 'SIGKILL') {
          assert.equal((await srv1.kill('SIGKILL')).signal, 'SIGKILL');
        } else {
          assert.equal((await srv1.stop()).code, 0);
        }
      }
      assert.equal(blockFiles(dir).length, Math.ceil(expected / BS), 'one file per block in scope');

      const srv2 = await startServer({ model, args });
      try {
        assert.match(srv2.output(), new RegExp(`: ${Math.ceil(expected / BS)} block files \\(`));
        const again = await chat(srv2);
        const pc = again.usage.prefix_cache;
        assert.equal(again.usage.prompt_tokens, first.usage.prompt_tokens);
        assert.equal(again.usage.prompt_tokens_details.cached_tokens, expected, JSON.stringify(pc));
        assert.equal(pc.by_tier.disk, expected, JSON.stringify(pc));
        assert.equal(pc.by_tier.pool, 0, JSON.stringify(pc));
        assert.equal(again.choices[0].message.content, first.choices[0].message.content);
        assert.deepEqual(again.choices[0].logprobs, first.choices[0].logprobs, 'bit-identical logprobs');
        const stats = await srv2.stats();
        assert.equal(stats.by_tier.disk.quarantined, 0);
        assert.equal(stats.by_tier.disk.hits, Math.ceil(expected / BS));
      } finally {
        assert.equal((await srv2.stop()).code, 0);
      }
    });
  }
});
