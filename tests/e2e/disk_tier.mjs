// Helpers for the disk tier's end-to-end tests (restart, corruption, crash): a model whose
// context fits long prompts, waiting for the background disk writes, and reading the block
// files the way src/tier/README.md lays them out.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { binary, repoRoot } from './server.mjs';

// A SentencePiece vocabulary for make-model (32,000 Llama 2 tokens, so English text tokenizes).
export const vocabModel = path.join(repoRoot, '../shared/models/llama-2-tiny-random.gguf');

// Why a long-context model cannot be made here, or null.
export function missingVocabModel() {
  return existsSync(vocabModel) ? null : `the vocabulary model is missing (${vocabModel})`;
}

// Writes a small random-weight llama model with `vocabModel`'s vocabulary and a 2,048-token
// context (stories260K's 512 cannot hold a 1,500-token prompt) into `dir`; returns its path.
export function makeLongContextModel(dir) {
  const out = path.join(dir, 'long-context.gguf');
  const r = spawnSync(binary, ['make-model', '--out', out, '--vocab-from', vocabModel, '--vocab', '0',
    '--ctx', '2048', '--tie-output', '--seed', '11'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prefixd make-model failed (${r.status}): ${r.stderr}`);
  return out;
}

// Deterministic English-like text of `words` words (about 1.2 Llama 2 tokens each).
export function wordSalad(words, seed = 1) {
  const vocab = ('the quick brown fox jumps over a lazy dog while seven wise owls watch from an ' +
    'old oak tree near the river and every morning a small boat sails past the quiet village ' +
    'where children play by the sea').split(' ');
  let x = seed >>> 0;
  const out = [];
  for (let i = 0; i < words; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(vocab[x % vocab.length]);
  }
  return out.join(' ');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Waits until the disk write-through queue is empty after at least one write was queued:
// then every block in scope is a complete, synced file. Returns the disk tier's stats.
export async function waitForDiskWrites(srv, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const disk = (await srv.stats()).by_tier.disk;
    if (disk.writes_queued > 0 && disk.writes_pending === 0) return disk;
    if (Date.now() > deadline) throw new Error(`disk writes still pending: ${JSON.stringify(disk)}`);
    await sleep(20);
  }
}

// Every file under `dir`, as paths relative to it.
export function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? e.path, e.name)));
}

// Block files of this model (DIR/<fp>/<kk>/<key>.blk), outside quarantine/.
export function blockFiles(dir) {
  return listFiles(dir).filter((f) => f.endsWith('.blk') && !f.startsWith('quarantine'))
    .map((f) => path.join(dir, f));
}

function hex128(buf, offset) {
  return buf.readBigUInt64LE(offset).toString(16).padStart(16, '0') +
    buf.readBigUInt64LE(offset + 8).toString(16).padStart(16, '0');
}

// The key and parent key a block file's header names (src/tier/README.md: offsets 40, 56).
export function recordKeys(file) {
  const buf = readFileSync(file);
  return { key: hex128(buf, 40), parent: hex128(buf, 56) };
}

// `files` (the blocks of one prompt's chain) ordered from the first block on, by parent keys.
export function chainOrder(files) {
  const byParent = new Map();
  const keys = new Set();
  for (const f of files) {
    const { key, parent } = recordKeys(f);
    byParent.set(parent, f);
    keys.add(key);
  }
  const roots = [...byParent.keys()].filter((p) => !keys.has(p));
  if (roots.length !== 1) throw new Error(`not one chain: ${roots.length} first blocks`);
  const out = [];
  for (let p = roots[0]; byParent.has(p); p = recordKeys(byParent.get(p)).key) out.push(byParent.get(p));
  return out;
}
