// Issue 5, acceptance "Corruption": with blocks on disk and the server stopped, flip a byte in
// one block file, truncate another, swap two between keys, and drop a block of another model
// fingerprint into this model's folder. The restarted server quarantines the damaged files (at
// the start-up scan or on first read; counted in the stats and /metrics, moved to
// quarantine/), leaves the foreign ones where they are, recomputes, and answers exactly as the
// first, cold run did. Then clearing the disk tier leaves the probe nothing to report.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync,
  rmSync, statSync, truncateSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { blockFiles, chainOrder, listFiles, waitForDiskWrites, wordSalad } from './disk_tier.mjs';
import { metricValue, missingPrerequisite, startServer } from './server.mjs';

const skip = missingPrerequisite();
const dir = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-corrupt-'));
const BS = 16;
const args = ['--disk-cache-dir', dir, '--disk-prefix-cache', 'full'];
// Four prompts whose first blocks differ, so each has its own chain of block files.
const prompts = ['One', 'Two', 'Three', 'Four'].map((n, i) => `Tale ${n}. ${wordSalad(45, 100 + i)}`);

function complete(srv, prompt) {
  return srv.client.completions.create({
    model: srv.model, prompt, max_tokens: 10, temperature: 0, logprobs: 2, cache_salt: 'corrupt' });
}

function flipByte(file, offset) {
  const buf = readFileSync(file);
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from([buf[offset] ^ 0x5a]), 0, 1, offset);
  closeSync(fd);
}

describe('damaged block files on disk', { skip: skip ?? false }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('are quarantined, recomputed, and never change an answer', { timeout: 60000 }, async () => {
    // 1. Cold answers, and each prompt's chain of block files.
    const cold = [];
    const chains = [];
    const srv1 = await startServer({ args });
    try {
      for (const prompt of prompts) {
        const before = new Set(blockFiles(dir));
        const r = await complete(srv1, prompt);
        // The prompts share a few leading tokens ("Tale "), never a whole block.
        assert.ok(r.usage.prompt_tokens_details.cached_tokens < BS);
        assert.ok(r.usage.prompt_tokens >= 4 * BS, `at least 4 blocks (${r.usage.prompt_tokens} tokens)`);
        cold.push(r);
        await waitForDiskWrites(srv1);
        chains.push(chainOrder(blockFiles(dir).filter((f) => !before.has(f))));
        assert.equal(chains.at(-1).length, Math.floor(r.usage.prompt_tokens / BS));
      }
    } finally {
      assert.equal((await srv1.stop()).code, 0);
    }
    const modelDir = path.dirname(path.dirname(chains[0][0]));

    // 2. Another fingerprint (block size 32) writes its own folder beside ours.
    const srv2 = await startServer({ args: [...args, '--block-size', '32'] });
    try {
      await complete(srv2, prompts[0]);
      await waitForDiskWrites(srv2);
    } finally {
      assert.equal((await srv2.stop()).code, 0);
    }
    const otherDir = readdirSync(dir).map((d) => path.join(dir, d))
      .find((d) => d !== modelDir && !d.endsWith('quarantine'));
    const otherFiles = listFiles(otherDir).filter((f) => f.endsWith('.blk'));
    assert.ok(otherFiles.length > 0);

    // 3. The damage, each at the third block of a chain (the first two stay good).
    flipByte(chains[0][2], statSync(chains[0][2]).size - 200);  // inside the KV bytes
    truncateSync(chains[1][2], Math.floor(statSync(chains[1][2]).size / 2));
    const tmp = `${chains[2][2]}.swap`;
    renameSync(chains[2][2], tmp);
    renameSync(chains[3][2], chains[2][2]);
    renameSync(tmp, chains[3][2]);
    // A foreign record inside our folder, under its own key's name.
    const foreign = path.join(modelDir, otherFiles[0]);
    mkdirSync(path.dirname(foreign), { recursive: true });
    copyFileSync(path.join(otherDir, otherFiles[0]), foreign);

    // 4. Restart: the scan quarantines the truncated and the swapped files and leaves the
    // foreign ones; the flipped byte is found when the block is read.
    const srv3 = await startServer({ args });
    try {
      assert.match(srv3.output(), / 3 quarantined, /);
      assert.match(srv3.output(), / 1 foreign files and 1 other models' folders left alone/);
      assert.equal((await srv3.stats()).by_tier.disk.quarantined, 3);
      for (let i = 0; i < prompts.length; i++) {
        const r = await complete(srv3, prompts[i]);
        const pc = r.usage.prefix_cache;
        assert.equal(r.usage.prompt_tokens_details.cached_tokens, 2 * BS, `prompt ${i}: ${JSON.stringify(pc)}`);
        // The leading tokens the prompts share may come from the pool, the rest is disk's.
        assert.equal(pc.by_tier.pool + pc.by_tier.disk, 2 * BS, `prompt ${i}: ${JSON.stringify(pc)}`);
        assert.ok(pc.by_tier.disk > BS, `prompt ${i}: ${JSON.stringify(pc)}`);
        assert.equal(r.choices[0].text, cold[i].choices[0].text, `prompt ${i}`);
        assert.deepEqual(r.choices[0].logprobs, cold[i].choices[0].logprobs, `prompt ${i}: bit-identical logprobs`);
      }
      const stats = await srv3.stats();
      assert.equal(stats.by_tier.disk.quarantined, 4, JSON.stringify(stats.by_tier.disk));
      const metrics = (await srv3.request('GET', '/metrics')).text;
      assert.equal(metricValue(metrics, 'prefixd_tier_quarantined_total\\{tier="disk"\\}'), 4);
      const quarantined = readdirSync(path.join(dir, 'quarantine')).sort();
      assert.equal(quarantined.length, 4, quarantined.join(' '));
      for (const cause of ['checksum', 'truncated', 'key-mismatch']) {
        assert.ok(quarantined.some((f) => f.includes(`.${cause}.`)), `a '${cause}' file in ${quarantined}`);
      }
      // Recomputed blocks are written again: each chain is whole on disk once more.
      await waitForDiskWrites(srv3);
      for (const chain of chains) for (const f of chain) assert.ok(existsSync(f), `${f} rewritten`);

      // Clearing the disk drops the partial tails that may hang off its blocks, and the probe
      // reports nothing that is gone (pool and host RAM cleared too: nothing is resident).
      const probe = async () => (await srv3.admin('/admin/api/cache/probe',
        { prompt: prompts[0], cache_salt: 'corrupt' })).json;
      assert.equal((await srv3.admin('/admin/api/cache/clear', { tier: 'pool' })).status, 200);
      const n0 = cold[0].usage.prompt_tokens;
      assert.notEqual(n0 % BS, 0, 'the prompt ends inside a block, so it has a partial tail');
      let p = await probe();
      assert.equal(p.by_tier.host + p.by_tier.disk, Math.floor(n0 / BS) * BS, JSON.stringify(p));
      assert.equal(p.by_tier.partial, n0 % BS, `the prompt's tail: ${JSON.stringify(p)}`);
      assert.equal((await srv3.admin('/admin/api/cache/clear', { tier: 'disk' })).status, 200);
      p = await probe();
      assert.equal(p.by_tier.disk, 0, JSON.stringify(p));
      assert.equal(p.by_tier.partial, 0, JSON.stringify(p));
      assert.equal((await srv3.stats()).by_tier.partial.entries, 0);
      assert.equal((await srv3.admin('/admin/api/cache/clear', { tier: 'host' })).status, 200);
      p = await probe();
      assert.equal(p.resident_tokens, 0, JSON.stringify(p));
      const fresh = await complete(srv3, prompts[0]);
      assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0, 'the probe said nothing was resident');
      assert.deepEqual(fresh.choices[0].logprobs, cold[0].choices[0].logprobs);
    } finally {
      assert.equal((await srv3.stop()).code, 0);
    }
    assert.ok(existsSync(foreign), 'the foreign record is left where it was');
    for (const f of otherFiles) assert.ok(existsSync(path.join(otherDir, f)), `${f} of the other model kept`);
  });
});
