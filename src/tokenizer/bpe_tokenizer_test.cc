#include "tokenizer/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {
namespace {

// A byte-level vocabulary: the 256 byte characters (ids 0..255, in byte order), then one
// token per merge result in merge order, then the added tokens.
struct VocabBuilder {
  Vocab v;
  explicit VocabBuilder(std::string pre = "gpt2") {
    v.kind = Vocab::Kind::kBytePairGpt2;
    v.pre = std::move(pre);
    v.add_bos = false;
    v.add_space_prefix = false;
    for (int b = 0; b < 256; ++b) Add(std::string(ByteToUnicode(static_cast<uint8_t>(b))));
  }
  int32_t Add(std::string text, TokenType type = TokenType::kNormal) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(0);
    v.token_types.push_back(type);
    return static_cast<int32_t>(v.tokens.size()) - 1;
  }
  // `left` and `right` in byte-level spelling; adds the result as a token unless present.
  int32_t Merge(const std::string& left, const std::string& right) {
    v.merges.push_back(left + " " + right);
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.tokens[i] == left + right) return static_cast<int32_t>(i);
    }
    return Add(left + right);
  }
};

std::unique_ptr<Tokenizer> MustCreate(Vocab v) {
  auto t = Tokenizer::Create(std::move(v));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

EncodeOptions Plain() {
  EncodeOptions o;
  o.add_bos = false;
  return o;
}

std::string Decode(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += t.Piece(id);
  return out;
}

// The naive statement of byte-level BPE, O(n^2) per word and on strings: split with the
// pre-tokenizer, spell each word's bytes, then repeatedly merge the adjacent pair with the
// lowest rank (leftmost among equals) until none has a merge.
std::vector<int32_t> NaiveEncode(const Vocab& v, std::string_view text) {
  auto pre = PreTokenizer::Create(v.pre);
  EXPECT_TRUE(pre.ok());
  auto id_of = [&v](const std::string& s) {
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.tokens[i] == s) return static_cast<int32_t>(i);
    }
    return int32_t{-1};
  };
  auto rank_of = [&v](const std::string& a, const std::string& b) {
    for (size_t r = 0; r < v.merges.size(); ++r) {
      if (v.merges[r] == a + " " + b) return static_cast<int>(r);
    }
    return -1;
  };
  std::vector<int32_t> out;
  for (std::string_view word : (*pre)->Split(text)) {
    std::vector<std::string> symbols;
    for (char c : word) symbols.emplace_back(ByteToUnicode(static_cast<uint8_t>(c)));
    while (true) {
      int best = -1;
      int best_rank = -1;
      for (size_t k = 0; k + 1 < symbols.size(); ++k) {
        const int r = rank_of(symbols[k], symbols[k + 1]);
        if (r >= 0 && (best_rank < 0 || r < best_rank)) {
          best = static_cast<int>(k);
          best_rank = r;
        }
      }
      if (best < 0) break;
      symbols[best] += symbols[best + 1];
      symbols.erase(symbols.begin() + best + 1);
    }
    for (const std::string& s : symbols) out.push_back(id_of(s));
  }
  return out;
}

TEST(BpeTokenizer, MergesLowestRankFirst) {
  VocabBuilder b;
  const int32_t bc = b.Merge("b", "c");  // rank 0
  b.Merge("a", "b");                     // rank 1: loses to "b c" in "abc"
  auto t = MustCreate(b.v);
  EXPECT_EQ(t->Encode("abc", Plain()), (std::vector<int32_t>{'a', bc}));
}

TEST(BpeTokenizer, EqualPairsMergeLeftmostFirst) {
  VocabBuilder b;
  const int32_t aa = b.Merge("a", "a");
  auto t = MustCreate(b.v);
  EXPECT_EQ(t->Encode("aaa", Plain()), (std::vector<int32_t>{aa, 'a'}));
}

TEST(BpeTokenizer, MergesNeverCrossPreTokenizerPieces) {
  VocabBuilder b;
  const std::string space(ByteToUnicode(' '));
  const int32_t a_space = b.Merge("a", space);
  const int32_t space_b = b.Merge(space, "b");
  auto t = MustCreate(b.v);
  // gpt2 splits "a b" into "a" | " b": the first merge would cross the pieces.
  EXPECT_EQ(t->Encode("a b", Plain()), (std::vector<int32_t>{'a', space_b}));
  (void)a_space;
}

TEST(BpeTokenizer, IgnoreMergesEmitsAWholeWordToken) {
  // Merges make "ab" + "c"; "abc" exists only as a token. Llama 3 (ignore_merges) takes it.
  for (const char* pre : {"gpt2", "llama-bpe"}) {
    VocabBuilder b(pre);
    const int32_t ab = b.Merge("a", "b");
    const int32_t abc = b.Add("abc");
    auto t = MustCreate(b.v);
    const auto expected = std::string(pre) == "gpt2" ? std::vector<int32_t>{ab, 'c'}
                                                      : std::vector<int32_t>{abc};
    EXPECT_EQ(t->Encode("abc", Plain()), expected) << pre;
  }
}

TEST(BpeTokenizer, AddedTokensAreCutOutLeftmostThenLongest) {
  VocabBuilder b;
  const int32_t eot = b.Add("<|eot|>", TokenType::kControl);
  const int32_t think = b.Add("<think>", TokenType::kUserDefined);
  const int32_t xy = b.Add("xy", TokenType::kUserDefined);
  const int32_t yzw = b.Add("yzw", TokenType::kUserDefined);
  const int32_t eot_long = b.Add("<|eot|>!", TokenType::kControl);
  auto t = MustCreate(b.v);
  EXPECT_EQ(t->Encode("a<|eot|><think>", Plain()), (std::vector<int32_t>{'a', eot, think}));
  EXPECT_EQ(t->Encode("<|eot|>!", Plain()), (std::vector<int32_t>{eot_long}));
  // Leftmost wins over longest: "xy" starts first, so "yzw" is not matched.
  EXPECT_EQ(t->Encode("xyzw", Plain()), (std::vector<int32_t>{xy, 'z', 'w'}));
  EXPECT_EQ(t->Encode("yzw", Plain()), (std::vector<int32_t>{yzw}));
  // Without special parsing control tokens are text; user-defined ones are still cut out.
  EncodeOptions o = Plain();
  o.parse_special = false;
  const auto ids = t->Encode("<|eot|><think>", o);
  EXPECT_EQ(ids.back(), think);
  EXPECT_EQ(Decode(*t, ids), "<|eot|><think>");
}

TEST(BpeTokenizer, BosAndEosFollowTheVocabularyAndOptions) {
  VocabBuilder b;
  b.v.bos_id = b.Add("<|begin|>", TokenType::kControl);
  b.v.eos_id = b.Add("<|end|>", TokenType::kControl);
  b.v.add_bos = true;
  auto t = MustCreate(b.v);
  EXPECT_EQ(t->Encode("a", EncodeOptions{}), (std::vector<int32_t>{b.v.bos_id, 'a'}));
  EXPECT_EQ(t->Encode("a", Plain()), (std::vector<int32_t>{'a'}));
  EncodeOptions eos;
  eos.add_eos = true;
  EXPECT_EQ(t->Encode("", eos), (std::vector<int32_t>{b.v.bos_id, b.v.eos_id}));
  EXPECT_EQ(t->Piece(b.v.bos_id), "");  // control tokens print nothing
}

TEST(BpeTokenizer, PiecesAreBytesAndStreamingHoldsSplitCharacters) {
  VocabBuilder b;
  auto t = MustCreate(b.v);
  // No merges: "é" is two byte tokens, each piece one byte of it.
  const auto ids = t->Encode("é!", Plain());
  ASSERT_EQ(ids.size(), 3u);
  StreamingDecoder d(*t);
  EXPECT_EQ(d.Push(ids[0]), "");
  EXPECT_EQ(d.Push(ids[1]), "é");
  EXPECT_EQ(d.Push(ids[2]), "!");
  EXPECT_EQ(d.Finish(), "");
}

TEST(BpeTokenizer, CreateRejectsBadVocabularies) {
  {
    VocabBuilder b("falcon");
    auto t = Tokenizer::Create(b.v);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("falcon"), std::string_view::npos);
  }
  {
    VocabBuilder b;
    b.v.merges.push_back("nospace");
    auto t = Tokenizer::Create(b.v);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("nospace"), std::string_view::npos);
  }
  {
    VocabBuilder b;
    b.v.add_bos = true;  // no bos id
    EXPECT_FALSE(Tokenizer::Create(b.v).ok());
  }
}

// Random merge tables over a small alphabet, random texts: the heap-based merge equals the
// naive one, and decoding gives the text back.
TEST(BpeTokenizer, RandomVocabulariesMatchTheNaiveMerge) {
  std::mt19937 rng(3);
  const std::vector<std::string> letters = {"a", "b", "c", " ", "\n", "1", "é"};
  for (int vocab_trial = 0; vocab_trial < 30; ++vocab_trial) {
    VocabBuilder b(vocab_trial % 2 == 0 ? "gpt2" : "qwen2");
    std::vector<std::string> pool;
    for (const std::string& l : letters) pool.push_back(ByteLevelEncode(l));
    const int num_merges = 5 + static_cast<int>(rng() % 60);
    std::set<std::string> merged;
    for (int m = 0; m < num_merges; ++m) {
      const std::string left = pool[rng() % pool.size()];
      const std::string right = pool[rng() % pool.size()];
      if (!merged.insert(left + " " + right).second) continue;
      b.Merge(left, right);
      pool.push_back(left + right);
    }
    auto t = MustCreate(b.v);
    for (int trial = 0; trial < 100; ++trial) {
      std::string text;
      const int len = static_cast<int>(rng() % 24);
      for (int k = 0; k < len; ++k) text += letters[rng() % letters.size()];
      const auto ids = t->Encode(text, Plain());
      ASSERT_EQ(ids, NaiveEncode(b.v, text)) << "vocab " << vocab_trial << " text '" << text << "'";
      EXPECT_EQ(Decode(*t, ids), text);
    }
  }
}

// decode(encode(s)) == s for random valid UTF-8 (any code point) and for random bytes.
TEST(BpeTokenizer, RandomTextRoundTrips) {
  VocabBuilder b("llama-bpe");
  b.Merge(ByteToUnicode(' ').data(), "t");
  b.Merge("t", "h");
  b.Add("<|x|>", TokenType::kControl);
  auto t = MustCreate(b.v);
  std::mt19937 rng(5);
  auto append_utf8 = [](std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  };
  for (int trial = 0; trial < 1000; ++trial) {
    std::string text;
    const int len = static_cast<int>(rng() % 30);
    for (int k = 0; k < len; ++k) {
      if (trial % 2 == 1) {
        text.push_back(static_cast<char>(rng() % 256));  // arbitrary bytes
        continue;
      }
      // Mostly ASCII and BMP; some astral; never a surrogate.
      uint32_t cp = rng() % 4 == 0 ? rng() % 0x110000 : rng() % 0x3000;
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      append_utf8(text, cp);
    }
    EncodeOptions o = Plain();
    o.parse_special = false;
    EXPECT_EQ(Decode(*t, t->Encode(text, o)), text) << trial;
  }
}

TEST(BpeTokenizer, EncodesALongTextQuickly) {
  VocabBuilder b("llama-bpe");
  const std::string sp(ByteToUnicode(' '));
  b.Merge(sp, "t");
  b.Merge(sp + "t", "h");
  b.Merge(sp + "th", "e");
  auto t = MustCreate(b.v);
  std::string text;
  while (text.size() < 100000) text += "the quick brown fox, 12345 and the lazy dog\n";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = t->Encode(text, Plain());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(Decode(*t, ids), text);
  EXPECT_LT(s, 5.0) << "100 KB took " << s << " s";  // generous: sanitizer builds
}

}  // namespace
}  // namespace prefixd

namespace prefixd {
namespace {

// Issue 14: Qwen's tokenizer.json normalizes to NFC, so "e" + U+0301 must tokenize as "é".
// The normalizer applies between added tokens; decoding gives the NFC text back.
TEST(BpeTokenizer, NfcNormalizerComposesBeforeMerging) {
  auto spell = [](const std::string& bytes) {
    std::string s;
    for (unsigned char b : bytes) s += ByteToUnicode(b);
    return s;
  };
  for (const bool nfc : {true, false}) {
    VocabBuilder b("qwen2");
    b.v.normalizer = nfc ? "nfc" : "";
    const int32_t e_acute_id = b.Merge(spell("\xC3"), spell("\xA9"));
    b.Merge(spell("\xEA"), spell("\xB0"));
    const int32_t ga = b.Merge(spell("\xEA\xB0"), spell("\x80"));  // 가 (U+AC00), one token
    const int32_t special = b.Add("<|im_start|>", TokenType::kControl);
    auto t = MustCreate(b.v);
    ASSERT_NE(t, nullptr);
    const std::vector<int32_t> composed = t->Encode("\xC3\xA9", Plain());
    EXPECT_EQ(composed, std::vector<int32_t>{e_acute_id});
    const std::vector<int32_t> decomposed = t->Encode("e\xCC\x81", Plain());
    const std::vector<int32_t> jamo = t->Encode("\xE1\x84\x80\xE1\x85\xA1", Plain());
    if (nfc) {
      EXPECT_EQ(decomposed, composed);
      EXPECT_EQ(jamo, std::vector<int32_t>{ga});
      EXPECT_EQ(Decode(*t, decomposed), "\xC3\xA9");
      // Singletons map (U+212B -> U+00C5), compatibility characters do not (ﬁ stays ﬁ).
      EXPECT_EQ(t->Encode("\xE2\x84\xAB", Plain()), t->Encode("\xC3\x85", Plain()));
      EXPECT_EQ(Decode(*t, t->Encode("\xEF\xAC\x81", Plain())), "\xEF\xAC\x81");
      EXPECT_NE(t->Encode("\xEF\xAC\x81", Plain()), t->Encode("fi", Plain()));
      // Around an added token, each side is normalized on its own.
      EncodeOptions special_on = Plain();
      special_on.parse_special = true;
      EXPECT_EQ(t->Encode("e\xCC\x81<|im_start|>e\xCC\x81", special_on),
                (std::vector<int32_t>{e_acute_id, special, e_acute_id}));
    } else {
      // Without a normalizer the text is tokenized as it is: e, then U+0301's two bytes.
      EXPECT_EQ(decomposed.size(), 3u);
      EXPECT_NE(decomposed, composed);
      EXPECT_EQ(Decode(*t, decomposed), "e\xCC\x81");
    }
  }
}

TEST(BpeTokenizer, RefusesAnUnknownNormalizer) {
  VocabBuilder b("qwen2");
  b.v.normalizer = "nfkc";
  EXPECT_FALSE(Tokenizer::Create(b.v).ok());
}

}  // namespace
}  // namespace prefixd
