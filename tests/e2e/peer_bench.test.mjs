// Smoke test of the side-by-side kernel benchmark (bench/peer/peer_bench.mjs): one short
// round of the native llama.cpp peer (llama-bench, llama-batched-bench) and prefixd on the test
// model writes a JSON result with positive figures for both engines, so the script behind
// BENCHMARKS.md's ratios does not rot. The peer is built on the machine by
// scripts/build-peer.sh (CI does not build it); without it the test skips, saying why.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, missingPrerequisite, modelPath, repoRoot } from './server.mjs';

const peerDir = path.join(repoRoot, 'bench/peer');

// Why the native peer cannot be used, or null (scripts/build-peer.sh --print exits 0 and
// prints the binaries' folder when they are built at the pinned commit).
function peerMissing() {
  const r = spawnSync(path.join(repoRoot, 'scripts/build-peer.sh'), ['--print'], { encoding: 'utf8' });
  if (r.status !== 0) {
    return 'the native llama.cpp peer is not built (scripts/build-peer.sh builds it; CI does not)';
  }
  return null;
}

// A soak (minutes): scripts/soak.sh runs it (PREFIXD_SOAK=1), CI names it skipped; it also needs the
// native peer, which CI does not build.
const skip = missingPrerequisite() ?? (!process.env.PREFIXD_SOAK
  ? 'a soak: scripts/soak.sh runs it (PREFIXD_SOAK=1)' : null) ?? peerMissing();
const out = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-peer-'));

describe('peer bench', { skip: skip ?? false }, () => {
  after(() => rmSync(out, { recursive: true, force: true }));

  it('measures llama.cpp and prefixd side by side and writes their ratios', { timeout: 180000 }, async () => {
    const json = path.join(out, 'peer.json');
    const { code, text } = await new Promise((resolve) => {
      const p = spawn(process.execPath, [path.join(peerDir, 'peer_bench.mjs'), '--model', modelPath,
        '--prefixd', binary, '--rounds', '1', '--reps', '1', '--prompt-tokens', '64', '--gen-tokens', '8',
        '--batch', '2,4', '--batch-prompt-tokens', '16', '--batch-gen-tokens', '4', '--json', json],
      { stdio: ['ignore', 'pipe', 'pipe'] });
      let t = '';
      p.stdout.on('data', (d) => { t += d; });
      p.stderr.on('data', (d) => { t += d; });
      p.on('exit', (c) => resolve({ code: c, text: t }));
    });
    assert.equal(code, 0, text);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    assert.deepEqual(r.peer_threads, [2, 1]);
    assert.equal(r.rows.length, 1);
    const row = r.rows[0];
    for (const th of ['1', '2']) {
      for (const k of ['prefill', 'decode']) {
        assert.ok(Number.isFinite(row.peer[th][k]) && row.peer[th][k] > 0, `peer -t ${th} ${k}: ${row.peer[th][k]}`);
      }
    }
    assert.ok(row.prefixd.prefill > 0 && row.prefixd.decode > 0, JSON.stringify(row.prefixd));
    assert.equal(r.ratio_prefill, row.prefixd.prefill / Math.max(row.peer['1'].prefill, row.peer['2'].prefill));
    assert.equal(r.ratio_decode, row.prefixd.decode / Math.max(row.peer['1'].decode, row.peer['2'].decode));
    assert.match(text, /mean ratio prefixd \/ llama\.cpp's best: prefill [\d.]+, decode [\d.]+/);
    assert.equal(row.loadavg.length, 3);
    for (const n of ['2', '4']) {
      const b = row.batch[n];
      for (const k of ['prefill', 'decode']) {
        assert.ok(b.prefixd[k] > 0 && b.peer_best[k] > 0, `batch ${n} ${k}: ${JSON.stringify(b)}`);
        assert.equal(b.ratio[k], b.prefixd[k] / Math.max(b.peer['1'][k], b.peer['2'][k]));
      }
    }
    assert.match(text, /mean ratio at batch 4: prefill [\d.]+, decode [\d.]+/);
  });
});
