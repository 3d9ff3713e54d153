// `prefixd make-model --arch llama|qwen2|qwen3|qwen3moe|qwen35` (and llama with Llama 3.1 RoPE
// scaling) writes random-weight models that `prefixd serve` loads and answers with; greedy
// answers repeat, and the second request is served from the prefix cache (qwen35: from a
// recurrent-state snapshot, with the same greedy text as a server without a cache; with
// --state-checkpoint-blocks 0 it reuses nothing and says why). Unknown architectures are
// refused.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, startServer } from './server.mjs';

const skip = existsSync(binary) ? false : `the prefixd binary is not built (${binary})`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-arch-'));

function makeModel(name, args) {
  const out = path.join(dir, `${name}.gguf`);
  const r = spawnSync(binary, ['make-model', '--out', out, '--layers', '2', '--embd', '64',
    '--heads', '4', '--kv-heads', '2', '--ff', '128', '--vocab', '400', ...args], { encoding: 'utf8' });
  return { out, ...r };
}

const SHAPES = {
  llama: ['--arch', 'llama'],
  qwen2: ['--arch', 'qwen2', '--rope-base', '1000000', '--tie-output'],
  qwen3: ['--arch', 'qwen3', '--head-dim', '32', '--rope-base', '1000000'],
  qwen3moe: ['--arch', 'qwen3moe', '--head-dim', '32', '--rope-base', '1000000', '--experts', '8',
    '--experts-used', '2', '--expert-ff', '64'],
  llama3: ['--arch', 'llama', '--rope-base', '500000', '--rope-scaling', 'llama3',
    '--rope-scaling-factor', '8', '--rope-original-ctx', '64'],
};

describe('architectures', { skip }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, args] of Object.entries(SHAPES)) {
    it(`${name}: make-model writes it, serve loads it and answers from the cache`, { timeout: 60000 }, async () => {
      const made = makeModel(name, args);
      assert.equal(made.status, 0, made.stderr);
      const srv = await startServer({ model: made.out, adminKey: null });
      try {
        const params = { model: srv.model, prompt: 'Once upon a time the little dog', max_tokens: 12,
          temperature: 0 };
        const a = await srv.client.completions.create(params);
        const b = await srv.client.completions.create(params);
        assert.equal(a.usage.completion_tokens, 12);
        assert.equal(b.choices[0].text, a.choices[0].text);
        assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(b.usage));
      } finally {
        await srv.stop();
      }
    });
  }

  // The hybrid: DeltaNet then gated attention (interval 2 over the 2 layers). The cache keeps
  // recurrent-state snapshots at block boundaries and before each prompt's last token.
  const QWEN35 = ['--arch', 'qwen35', '--head-dim', '32', '--rope-base', '10000000',
    '--full-attention-interval', '2'];
  const STORY = 'Once upon a time the little dog ran to the river, where the old fisherman sat ' +
    'mending his nets and singing about the sea';

  async function greedy(srv, prompt) {
    return srv.client.completions.create({ model: srv.model, prompt, max_tokens: 12, temperature: 0 });
  }

  it('qwen35: the second request resumes from a state snapshot with the cache-off greedy text', { timeout: 60000 }, async () => {
    const made = makeModel('qwen35', QWEN35);
    assert.equal(made.status, 0, made.stderr);
    const longer = `${STORY} and the waves`;
    const cold = await startServer({ model: made.out, adminKey: null, args: ['--prefix-cache', 'off'] });
    let want, wantLonger;
    try {
      want = (await greedy(cold, STORY)).choices[0].text;
      wantLonger = (await greedy(cold, longer)).choices[0].text;
    } finally {
      await cold.stop();
    }
    const srv = await startServer({ model: made.out, adminKey: null });
    try {
      const a = await greedy(srv, STORY);
      const b = await greedy(srv, STORY);
      assert.equal(a.usage.completion_tokens, 12);
      assert.equal(a.choices[0].text, want);
      assert.equal(b.choices[0].text, want);
      assert.equal(a.usage.prompt_tokens_details.cached_tokens, 0);
      // The same prompt resumes at its end: every token but the last, which is always computed.
      assert.ok(b.usage.prompt_tokens > 16, JSON.stringify(b.usage));
      assert.equal(b.usage.prompt_tokens_details.cached_tokens, b.usage.prompt_tokens - 1,
        JSON.stringify(b.usage));
      assert.equal(b.usage.prefix_cache.state_snapshot.resumed_at, b.usage.prompt_tokens - 1);
      assert.ok(b.usage.prefix_cache.state_snapshot.bytes > 0, JSON.stringify(b.usage));
      assert.equal(b.usage.prefix_cache.disabled_reason, undefined);
      // A longer prompt resumes at a snapshot inside what they share.
      const c = await greedy(srv, longer);
      assert.equal(c.choices[0].text, wantLonger);
      assert.ok(c.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(c.usage));
      const stats = await (await fetch(`${srv.url}/v1/prefix_cache_stats`)).json();
      assert.equal(stats.enabled, true);
      assert.ok(stats.hits >= 2, JSON.stringify(stats));
      // The default (auto): a checkpoint every as many blocks as one snapshot's bytes fill in KV.
      assert.equal(stats.state_snapshots.checkpoint_blocks,
        Math.max(1, Math.ceil(stats.state_snapshots.bytes_each / stats.block_bytes)), JSON.stringify(stats));
      assert.ok(stats.state_snapshots.count > 0, JSON.stringify(stats.state_snapshots));
      assert.equal(stats.state_snapshots.bytes, stats.state_snapshots.count * stats.state_snapshots.bytes_each);
      const metrics = await (await fetch(`${srv.url}/metrics`)).text();
      assert.match(metrics, /^prefixd_prefix_cache_state_snapshots [1-9]/m);
    } finally {
      await srv.stop();
    }
  });

  it('qwen35 with --state-checkpoint-blocks 0: the cache reuses nothing and says why', { timeout: 60000 }, async () => {
    const made = makeModel('qwen35-nosnap', QWEN35);
    assert.equal(made.status, 0, made.stderr);
    const srv = await startServer({ model: made.out, adminKey: null, args: ['--state-checkpoint-blocks', '0'] });
    try {
      const a = await greedy(srv, STORY);
      const b = await greedy(srv, STORY);
      assert.equal(b.choices[0].text, a.choices[0].text);
      assert.equal(b.usage.prompt_tokens_details.cached_tokens, 0, JSON.stringify(b.usage));
      assert.match(b.usage.prefix_cache.disabled_reason, /recurrent \(DeltaNet\) layers.*--state-checkpoint-blocks/);
      const stats = await (await fetch(`${srv.url}/v1/prefix_cache_stats`)).json();
      assert.equal(stats.enabled, false);
      assert.match(stats.reason, /qwen35.*recurrent/);
      assert.equal(stats.hits, 0);
    } finally {
      await srv.stop();
    }
  });

  it('make-model refuses an unknown architecture, naming the supported ones', () => {
    const made = makeModel('gpt2', ['--arch', 'gpt2']);
    assert.notEqual(made.status, 0);
    assert.match(made.stderr, /supported: llama, qwen2, qwen3/);
  });
});
