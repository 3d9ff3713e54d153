// Smoke test of the workload benchmark (bench/bench_serve.mjs): every suite runs on tiny
// sizes and writes a JSON result with every workload, every cache configuration and sane
// numbers, so the benchmark does not rot between the runs that produce BENCHMARKS.md.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, missingPrerequisite, modelPath, repoRoot } from './server.mjs';

const skip = missingPrerequisite();
const out = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-bench-'));
const hasGnuplot = spawnSync('gnuplot', ['--version']).status === 0;

function runBench(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(repoRoot, 'bench/bench_serve.mjs'), '--bin', binary,
      '--model', modelPath, '--quick', '--threads', '1', '--out', out, '--disk-root', out, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => { text += d; });
    p.stderr.on('data', (d) => { text += d; });
    p.on('exit', (code) => resolve({ code, text }));
  });
}

const positive = (x) => Number.isFinite(x) && x > 0;

describe('bench-serve', { skip: skip ?? false }, () => {
  after(() => rmSync(out, { recursive: true, force: true }));

  it('runs every workload in the three cache configurations', { timeout: 120000 }, async () => {
    const { code, text } = await runBench(['--suite', 'workloads,tiers,scope', '--name', 'smoke',
      '--max-tokens', '4', '--reps', '1', '--dd-mib', '8', '--prefix-tokens', '64', '--policies', 'auto:2,full',
      '--set', 'users=4,offUsers=2,levels=1+4,regenerate=2,sessions=2,turns=2,volatile=2,system=64,' +
        'question=8,agentShared=48,agentTask=8,toolMin=8,toolMax=16,replyMin=2,replyMax=4']);
    assert.equal(code, 0, text);
    const r = JSON.parse(readFileSync(path.join(out, 'smoke.json'), 'utf8'));
    assert.deepEqual(r.workloads.map((w) => w.name),
      ['regenerate', 'shared-c1', 'shared-c4', 'agent', 'volatile', 'restart']);
    for (const w of r.workloads) {
      assert.deepEqual(Object.keys(w.by_config), ['off', 'pool', 'tiers'], w.name);
      for (const [config, { summary: s, requests }] of Object.entries(w.by_config)) {
        const what = `${w.name} ${config}`;
        assert.equal(requests.length, s.requests, what);
        assert.ok(requests.every((q) => positive(q.ttft_ms) && q.ttft_ms <= q.total_ms), what);
        assert.ok(positive(s.ttft_mean_ms) && s.ttft_p50_ms <= s.ttft_p95_ms, what);
        assert.ok(positive(s.req_per_s) && positive(s.gen_tok_per_s), what);
        assert.ok(s.token_hit_rate >= 0 && s.token_hit_rate < 1, what);
        // Nothing beats the ideal: the longest prefix each prompt shares with an earlier one.
        assert.ok(s.ideal_cached_tokens > 0 && s.cached_tokens <= s.ideal_cached_tokens, what);
        // The pool alone reaches it one request at a time on every workload but the restart
        // (which loses the pool); concurrent requests may each miss a partial tail the others
        // are still computing.
        if (config === 'pool' && w.name !== 'restart') {
          if (w.concurrency === 1) assert.equal(s.cached_tokens, s.ideal_cached_tokens, what);
          else assert.ok(s.cached_tokens >= 0.9 * s.ideal_cached_tokens, what);
        }
        if (config === 'off') assert.equal(s.cached_tokens, 0, what);
        // The same prompt again, or one sharing a 64-token head: the cache must serve some.
        else assert.ok(s.cached_tokens > 0, `${what}: ${JSON.stringify(s)}`);
      }
      if (hasGnuplot) assert.ok(existsSync(path.join(out, `smoke-${w.name}.png`)), w.name);
    }
    // After the restart only the disk tier can serve the agent sessions' earlier turns.
    const restart = r.workloads.find((w) => w.name === 'restart');
    assert.equal(restart.by_config.pool.requests.filter((q) => q.phase === 1).length, restart.phase_sizes[1]);
    assert.ok(restart.by_config.tiers.summary.cached_by_tier.disk > 0, JSON.stringify(restart.by_config.tiers.summary));
    assert.ok(positive(r.agent_target.off_over_tiers));

    const tiers = Object.fromEntries(r.tier_ttft.rows.map((x) => [x.place, x]));
    assert.deepEqual(Object.keys(tiers), ['cold', 'pool', 'host', 'disk', 'disk-warm']);
    assert.deepEqual(tiers.cold.cached_tokens, [0]);
    for (const place of ['pool', 'host', 'disk', 'disk-warm']) {
      assert.ok(tiers[place].cached_tokens[0] >= 48, `${place}: ${JSON.stringify(tiers[place])}`);
    }
    assert.ok(tiers.host.by_tier[0].host > 0 && tiers.disk.by_tier[0].disk > 0, JSON.stringify(tiers));
    assert.ok(positive(tiers.disk.restore_mb_per_s_median) && positive(r.tier_ttft.dd.mb_per_s));

    assert.deepEqual(r.scope.rows.map((x) => x.policy), ['auto:2', 'full']);
    const [auto2, full] = r.scope.rows;
    // full writes every full block; auto:2 only what a recent prompt shared.
    assert.ok(full.disk_blocks_written >= auto2.disk_blocks_written, JSON.stringify(r.scope.rows));
    assert.ok(full.disk_blocks_written > 0 && full.cached_tokens > 0);
  });
});
