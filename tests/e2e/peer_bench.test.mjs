// Smoke test of the side-by-side kernel benchmark (bench/peer/peer_bench.mjs): one short
// round of llama.cpp and prefixd on the test model writes a JSON result with positive figures
// for both engines, so the script that produced BENCHMARKS.md's ratios does not rot. The peer
// comes from the npm registry (bench/peer/package-lock.json); without it the test skips,
// saying why.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, missingPrerequisite, modelPath, repoRoot } from './server.mjs';

const peerDir = path.join(repoRoot, 'bench/peer');

// Installs the pinned peer once, as peer_bench.mjs would (`npm install` with the lock file:
// `npm ci` refuses it, since some of node-llama-cpp's optional builds for other platforms are
// not published at its version); returns why it cannot be had, or null.
function installPeer() {
  if (existsSync(path.join(peerDir, 'node_modules/node-llama-cpp'))) return null;
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--ignore-scripts',
    '--omit=optional'],
    { cwd: peerDir, encoding: 'utf8', env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' } });
  if (r.status !== 0) return `npm could not install the peer (node-llama-cpp): ${(r.stderr || '').trim().slice(0, 300)}`;
  return null;
}

// A soak (minutes, and an npm install of the peer): scripts/soak.sh runs it, CI names it skipped.
const skip = missingPrerequisite() ?? (!process.env.PREFIXD_SOAK
  ? 'a soak: scripts/soak.sh runs it (PREFIXD_SOAK=1)' : null) ?? (process.arch !== 'x64' || process.platform !== 'linux'
  ? `the pinned peer build is for linux-x64, not ${process.platform}-${process.arch}` : installPeer());
const out = mkdtempSync(path.join(tmpdir(), 'prefixd-e2e-peer-'));

describe('peer bench', { skip: skip ?? false }, () => {
  after(() => rmSync(out, { recursive: true, force: true }));

  it('measures llama.cpp and prefixd side by side and writes their ratios', { timeout: 180000 }, async () => {
    const json = path.join(out, 'peer.json');
    const { code, text } = await new Promise((resolve) => {
      const p = spawn(process.execPath, [path.join(peerDir, 'peer_bench.mjs'), '--model', modelPath,
        '--prefixd', binary, '--rounds', '1', '--prompt-tokens', '64', '--gen-tokens', '8', '--json', json],
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
  });
});
