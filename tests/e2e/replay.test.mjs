// `prefixd serve --request-log` then `prefixd replay --request-log`: the replay, with no
// model, predicts the cached tokens the server reported, request by request (and per tier),
// at the server's own budgets, over a workload that evicts from the pool to host RAM, falls
// out of host RAM, and comes back from disk and from partial tails.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, missingPrerequisite, startServer } from './server.mjs';

const skip = missingPrerequisite();
const dir = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-replay-'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Waits until the disk tier has written everything queued, so the next request sees it (the
// replay runs one request at a time and lets each one's writes land first).
async function waitForDiskIdle(srv, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const disk = (await srv.stats()).by_tier.disk;
    if (disk.writes_pending === 0) return;
    if (Date.now() > deadline) throw new Error(`disk writes still pending: ${JSON.stringify(disk)}`);
    await sleep(10);
  }
}

const opening = 'Once upon a time there was a little girl named Lily. She loved to play outside in the sun with her friends. ';
const topics = [
  'One day she found a big red ball in the park and wanted to share it.',
  'Her mom made a cake for the birthday party and everyone was happy.',
  'A small dog ran into the garden and looked for a bone under the tree.',
  'The boy wanted to fly his kite but the wind was too strong that day.',
];
const turns = [' They played all day.', ' Then it started to rain.', ' At night they went home and slept.'];

// Completions that share an opening and grow turn by turn, chats (message boundaries for the
// auto scope), a tenant's salt, and exact resubmissions (partial tails).
function workload() {
  const reqs = [];
  for (let round = 0; round < turns.length; round++) {
    topics.forEach((topic, t) => {
      const prompt = opening + topic + turns.slice(0, round + 1).join('');
      reqs.push({ kind: 'completion', prompt, salt: t === 3 ? 'tenant-b' : undefined });
      if (t === 1) reqs.push({ kind: 'completion', prompt });  // the same prompt again
    });
    reqs.push({
      kind: 'chat',
      messages: [{ role: 'system', content: opening },
        { role: 'user', content: topics[round] + turns.slice(0, round + 1).join('') }],
    });
  }
  reqs.push({ kind: 'completion', prompt: opening + topics[0] + turns[0] });  // long gone from the pool
  return reqs;
}

async function send(srv, r) {
  const common = { model: srv.model, temperature: 0, max_tokens: 6 };
  if (r.salt) common.cache_salt = r.salt;
  const out = r.kind === 'chat'
    ? await srv.client.chat.completions.create({ ...common, messages: r.messages })
    : await srv.client.completions.create({ ...common, prompt: r.prompt });
  const byTier = out.usage.prefix_cache?.by_tier ?? {};
  return {
    cached: out.usage.prompt_tokens_details.cached_tokens,
    host: byTier.host ?? 0,
    disk: byTier.disk ?? 0,
    partial: byTier.partial ?? 0,
  };
}

describe('replay of a request log', { skip: skip ?? false }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('predicts what the server reported, request by request, at its budgets', { timeout: 120000 }, async () => {
    // The budgets are counted in blocks: read a block's size first.
    const probe = await startServer();
    const blockBytes = (await probe.request('GET', '/props')).json.kv.block_bytes;
    await probe.stop();
    assert.ok(blockBytes > 0);
    const record = blockBytes + 256;  // a block's record on host or disk is a little bigger
    const log = path.join(dir, 'requests.jsonl');
    const args = ['--request-log', log, '--cache-bytes', String(8 * blockBytes),
      '--host-cache-bytes', String(6 * record), '--disk-cache-dir', path.join(dir, 'disk'),
      '--disk-cache-bytes', String(60 * record)];
    const srv = await startServer({ args });
    const reported = [];
    let stats;
    try {
      for (const r of workload()) {
        reported.push(await send(srv, r));
        await waitForDiskIdle(srv);
      }
      stats = await srv.stats();
    } finally {
      const { code } = await srv.stop();
      assert.equal(code, 0);
    }
    // The workload exercised what it claims to.
    assert.ok(stats.evictions > 0, `the pool evicted: ${JSON.stringify(stats)}`);
    assert.ok(reported.some((r) => r.host > 0), `a host RAM hit: ${JSON.stringify(reported)}`);
    assert.ok(reported.some((r) => r.disk > 0), `a disk hit: ${JSON.stringify(reported)}`);
    assert.ok(reported.some((r) => r.cached > r.host + r.disk + r.partial), 'a pool hit');

    const text = readFileSync(log, 'utf8');
    assert.ok(!text.includes('Lily') && !text.includes('tenant-b'), 'the log holds no text');
    const lines = text.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].prefixd_request_log, 1);
    assert.equal(lines.length - 1, reported.length, 'one line per request');

    const run = spawnSync(binary, ['replay', '--request-log', log, '--json'], { encoding: 'utf8', timeout: 60000 });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.requests, reported.length);
    out.by_request.forEach((p, i) => {
      const want = reported[i];
      assert.deepEqual({ cached: p.cached_tokens, host: p.host, disk: p.disk, partial: p.partial }, want,
        `request ${i}: replay ${JSON.stringify(p)}, server ${JSON.stringify(want)}`);
    });
    assert.equal(out.requests_matching_server, reported.length);
    const cached = reported.reduce((s, r) => s + r.cached, 0);
    assert.equal(out.cached_tokens, cached);
    assert.ok(Math.abs(out.cached_fraction - cached / out.prompt_tokens) < 1e-12);
    assert.ok(out.by_tier.host.cached_tokens > 0 && out.by_tier.disk.cached_tokens > 0);
  });
});
