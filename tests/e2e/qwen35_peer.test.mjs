// qwen35 against llama.cpp (issue 18's acceptance): on an F16 random-weight qwen35 file that
// `prefixd make-model --arch qwen35` writes, llama.cpp's llama-server loads it and both engines
// generate the same 24 tokens greedily from the same prompt ids, on several prompts
// (bench/peer/greedy_agreement.mjs does the comparison). The native peer is found through
// PREFIXD_PEER_BIN (its bin folder) or scripts/build-peer.sh --print; without it the test skips,
// saying why.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { binary, repoRoot } from './server.mjs';

const TOKENS = 24;

function peerBin() {
  if (process.env.PREFIXD_PEER_BIN) return path.resolve(process.env.PREFIXD_PEER_BIN);
  const r = spawnSync(path.join(repoRoot, 'scripts/build-peer.sh'), ['--print'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

const bin = peerBin();
const skip = !existsSync(binary) ? `the prefixd binary is not built (${binary})`
  : !bin || !existsSync(path.join(bin, 'llama-server'))
    ? 'the native llama.cpp peer is not built (scripts/build-peer.sh builds it, or set ' +
      'PREFIXD_PEER_BIN to its bin folder)'
    : false;
const dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-qwen35-peer-'));

describe('qwen35 greedy agreement with llama.cpp', { skip }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it(`llama.cpp loads make-model's F16 qwen35 and generates the same ${TOKENS} tokens`, { timeout: 300000 }, () => {
    const model = path.join(dir, 'qwen35-f16.gguf');
    // 4 layers: DeltaNet x 3 (2 Q/K heads, 4 V heads of 32) then gated attention (4 heads of 32,
    // 2 KV heads, RoPE over 8 dims).
    const made = spawnSync(binary, ['make-model', '--out', model, '--arch', 'qwen35', '--type', 'f16',
      '--layers', '4', '--embd', '128', '--heads', '4', '--kv-heads', '2', '--head-dim', '32',
      '--ff', '256', '--vocab', '512', '--ctx', '2048', '--rope-base', '10000000', '--seed', '3'],
    { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const json = path.join(dir, 'agreement.json');
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bench/peer/greedy_agreement.mjs'),
      '--model', model, '--prefixd', binary, '--peer-bin', bin, '--tokens', String(TOKENS),
      '--quant-dot', 'f32', '--json', json], { encoding: 'utf8', timeout: 280000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const result = JSON.parse(readFileSync(json, 'utf8'));
    assert.ok(result.rows.length >= 5, JSON.stringify(result));
    for (const row of result.rows) {
      assert.equal(row.f32, TOKENS, `${JSON.stringify(row.prompt)}: the engines part after ${row.f32} tokens\n${r.stdout}`);
    }
  });
});
