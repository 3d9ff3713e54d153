// `prefixd serve --request-log` then `prefixd replay --request-log`: the replay, with no
// model, equals the cached tokens the server reported, request by request (and per tier), at
// the server's own budgets, over a workload that evicts from the pool to host RAM, falls out
// of host RAM, and comes back from disk and from partial tails: first one request at a time,
// then eight clients at once, round after round, with retention in all three dialects and the
// kill switch thrown while requests run.
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

// One request of client `c` in `round`: the shared opening, the client's topic, the turns so
// far, in the three dialects in turn, with retention: prefix_cache.retention ranges (a short
// one that expires during the run), prompt_cache_retention 24h, cache_control.
async function sendOverlapping(srv, c, round) {
  const text = opening + topics[c % topics.length] + ` Friend number ${c} came too.` + turns.slice(0, round % turns.length + 1).join('');
  // Round 1 throws the kill switch when its first request answers: two answer at once, the
  // others generate long enough to be running then.
  const maxTokens = round === 1 ? (c < 2 ? 2 : 150) : 4 + ((c + round) % 4);
  const common = { model: srv.model, temperature: 0, max_tokens: maxTokens };
  let usage;
  if (c % 3 === 0) {
    const retention = c === 0 ? [{ token_start: 0, token_end: 24, priority: 90, duration_s: 3600 }]
      : [{ token_start: 0, token_end: 40, priority: 60, duration_s: 1 }];
    usage = (await srv.client.completions.create({ ...common, prompt: text, prefix_cache: { retention } })).usage;
  } else if (c % 3 === 1) {
    usage = (await srv.client.chat.completions.create({ ...common, prompt_cache_retention: '24h',
      messages: [{ role: 'system', content: opening }, { role: 'user', content: text.slice(opening.length) }] })).usage;
  } else {
    const m = await srv.request('POST', '/v1/messages', { body: { ...common,
      system: [{ type: 'text', text: opening, cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: text.slice(opening.length) }] } });
    assert.equal(m.status, 200, m.text);
    const u = m.json.usage;
    usage = { prompt_tokens: u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens,
      prompt_tokens_details: { cached_tokens: u.prefix_cache.cached_tokens }, prefix_cache: u.prefix_cache };
  }
  const byTier = usage.prefix_cache?.by_tier ?? {};
  return { prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details.cached_tokens,
    host: byTier.host ?? 0, disk: byTier.disk ?? 0, partial: byTier.partial ?? 0 };
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
    assert.equal(lines[0].prefixd_request_log, 2);
    assert.equal(lines.filter((l) => l.op === 'finish').length, reported.length, 'one finish line per request');

    const run = spawnSync(binary, ['replay', '--request-log', log, '--json'], { encoding: 'utf8', timeout: 60000 });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.mode, 'operations');
    assert.equal(out.diverged_operations, 0, out.first_divergence);
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
  it('equals the server request by request when eight clients overlap, with retention and the kill switch', { timeout: 240000 }, async () => {
    const probe = await startServer();
    const blockBytes = (await probe.request('GET', '/props')).json.kv.block_bytes;
    await probe.stop();
    const record = blockBytes + 256;
    const log = path.join(dir, 'overlap.jsonl');
    const args = ['--request-log', log, '--cache-bytes', String(12 * blockBytes),
      '--host-cache-bytes', String(10 * record), '--disk-cache-dir', path.join(dir, 'disk-overlap'),
      '--disk-cache-bytes', String(80 * record), '--max-batch-tokens', '48'];
    const srv = await startServer({ args });
    const reported = [];
    let stats;
    try {
      for (let round = 0; round < 4; round++) {
        const sends = [];
        for (let c = 0; c < 8; c++) sends.push(sendOverlapping(srv, c, round).then((r) => reported.push(r)));
        if (round === 1) {
          // Thrown while this round's requests run, and back on before the next round.
          await Promise.race(sends);
          assert.equal((await srv.admin('/admin/api/cache/disable')).status, 200);
        }
        await Promise.all(sends);
        if (round === 1) assert.equal((await srv.admin('/admin/api/cache/enable')).status, 200);
      }
      // Unrelated prompts kept off the disk push the clients' prefixes out of the pool and host
      // RAM; then every client comes back at once, and the disk serves them.
      const flood = [];
      for (let c = 0; c < 8; c++) {
        flood.push(srv.client.completions.create({ model: srv.model, temperature: 0, max_tokens: 2,
          prompt: `${topics[(c + 1) % topics.length]} The ${c} little fish swam far away to find a new home.`,
          prefix_cache: { scope: 'off' } }));
      }
      await Promise.all(flood);
      await waitForDiskIdle(srv);
      await Promise.all([...Array(8).keys()].map((c) => sendOverlapping(srv, c, 3).then((r) => reported.push(r))));
      stats = await srv.stats();
    } finally {
      const { code } = await srv.stop();
      assert.equal(code, 0);
    }
    assert.ok(stats.evictions > 0, `the pool evicted: ${JSON.stringify(stats)}`);
    assert.ok(reported.some((r) => r.host > 0), `a host RAM hit: ${JSON.stringify(reported)}`);
    assert.ok(reported.some((r) => r.disk > 0), `a disk hit: ${JSON.stringify(reported)}`);
    assert.ok(reported.some((r) => r.cached > 0 && r.cached > r.host + r.disk + r.partial), 'a pool hit');

    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // The requests overlapped in the engine, and the switch went off while some ran.
    const running = new Set();
    let most = 0, offWhileRunning = false;
    for (const l of lines) {
      if (l.op === 'admit') running.add(l.seq);
      if (l.op === 'finish') running.delete(l.seq);
      for (const v of l.preempted ?? []) running.delete(v);
      most = Math.max(most, running.size);
      if (l.op === 'enable' && !l.on) offWhileRunning = running.size > 0;
    }
    assert.ok(most >= 4, `at most ${most} requests ran at once`);
    assert.ok(offWhileRunning, 'the kill switch was thrown while requests ran');
    assert.ok(lines.some((l) => l.op === 'enable' && l.on === true));
    assert.ok(lines.some((l) => l.op === 'request' && l.retention.length > 0), 'requests with retention');
    // The log's figures are the ones the clients saw (it lists requests as they finished).
    const finishes = lines.filter((l) => l.op === 'finish');
    const key = (r) => JSON.stringify([r.prompt, r.cached, r.host, r.disk, r.partial]);
    const logged = finishes.map((f) => key({ prompt: f.prompt_tokens, cached: f.cached_tokens, ...f.by_tier }));
    assert.equal(finishes.length, reported.length + 8, 'a finish line per request (the flood too)');
    const unmatched = [...logged];
    for (const r of reported) {
      const at = unmatched.indexOf(key(r));
      assert.ok(at >= 0, `the log has what the client saw: ${key(r)}`);
      unmatched.splice(at, 1);
    }

    const run = spawnSync(binary, ['replay', '--request-log', log, '--json'], { encoding: 'utf8', timeout: 60000 });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.mode, 'operations');
    assert.equal(out.diverged_operations, 0, out.first_divergence);
    assert.equal(out.requests, finishes.length);
    out.by_request.forEach((p, i) => {
      const f = finishes[i];
      assert.deepEqual({ cached: p.cached_tokens, host: p.host, disk: p.disk, partial: p.partial },
        { cached: f.cached_tokens, host: f.by_tier.host, disk: f.by_tier.disk, partial: f.by_tier.partial },
        `request ${f.seq}: replay ${JSON.stringify(p)}, server ${JSON.stringify(f)}`);
    });
    assert.equal(out.requests_matching_server_by_tier, finishes.length);
  });
});
