// The tokenizer test corpus: deterministic (seeded), 2,400 strings over the categories issue 6
// names (English, code, numbers, CJK, emoji, combining marks, whitespace runs, special tokens
// and their lookalikes). Used by tokenizer.test.mjs and bench/tokenize_bench.mjs.
function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeCorpus(seed = 20261123) {
  const rnd = mulberry32(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (a) => a[int(a.length)];
  const repeat = (n, f) => Array.from({ length: n }, f).join('');

  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Hello', 'World',
    'tokenizer', 'prefix', 'cache', 'HTTP', 'JSON', 'McDonald', 'naïve', 'café', 'résumé', 'über',
    'straße', 'I', 'a', 'GPT', 'LLaMA', 'Qwen', 'e.g.', 'etc', 'U.S.A.', 'don', 'isn', "o'clock"];
  const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "'D", "'x"];
  const punct = ['.', ',', '!', '?', ';', ':', '...', '—', '–', '-', '"', "'", '(', ')', '[', ']', '«', '»', '“', '”', '¿', '¡'];
  const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '\u00a0', '\u2003', '\u3000', '\u2028', '\u000b', '\f',
    '\u2029', '\u180e', '\u001c', '\u200b'];
  // Not U+0085 (NEL) or U+FEFF: the reference's JavaScript \s says NEL is not a space and
  // U+FEFF is, the opposite of Unicode's White_Space that Hugging Face's Rust regex and
  // llama.cpp use (and prefixd: src/tokenizer/pre_tokenizer_test.cc pins it).
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

