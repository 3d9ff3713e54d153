#include "tokenizer/spm_tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {
namespace {

constexpr int32_t kUnk = 0;
constexpr int32_t kBos = 1;
constexpr int32_t kEos = 2;
constexpr int32_t kFirstByte = 3;  // <0x00> .. <0xFF> are ids 3 .. 258

// A small SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then `normal`
// (text with U+2581 for a space, score) and `user_defined` tokens.
Vocab MakeVocab(const std::vector<std::pair<std::string, float>>& normal,
                const std::vector<std::string>& user_defined = {}) {
  Vocab v;
  v.kind = Vocab::Kind::kSentencePiece;
  auto add = [&v](std::string text, float score, TokenType type) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.token_types.push_back(type);
  };
  add("<unk>", 0, TokenType::kUnknown);
  add("<s>", 0, TokenType::kControl);
  add("</s>", 0, TokenType::kControl);
  for (int b = 0; b < 256; ++b) add(absl::StrFormat("<0x%02X>", b), 0, TokenType::kByte);
  for (const auto& [text, score] : normal) add(text, score, TokenType::kNormal);
  for (const auto& text : user_defined) add(text, 0, TokenType::kUserDefined);
  v.unk_id = kUnk;
  v.bos_id = kBos;
  v.eos_id = kEos;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

std::unique_ptr<Tokenizer> MustCreate(Vocab v) {
  auto t = Tokenizer::Create(std::move(v));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

int32_t Id(const Tokenizer& t, std::string_view text) {
  for (int32_t i = 0; i < t.vocab_size(); ++i) {
    if (t.vocab().tokens[i] == text) return i;
  }
  ADD_FAILURE() << "no token " << text;
  return -1;
}

int32_t ByteId(uint8_t b) { return kFirstByte + b; }

EncodeOptions NoBos() {
  EncodeOptions o;
  o.add_bos = false;
  return o;
}

std::string Decode(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += t.Piece(id);
  return out;
}

// The naive statement of the merge rule, O(n^2): repeatedly merge the adjacent pair whose
// concatenation is a token with the highest score, leftmost on ties; then byte fallback.
std::vector<int32_t> NaiveEncodeFragment(const Tokenizer& t, const std::string& escaped) {
  std::vector<std::string> symbols;
  for (size_t i = 0; i < escaped.size();) {
    const auto c = static_cast<uint8_t>(escaped[i]);
    size_t len = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 1;
    if (i + len > escaped.size()) len = 1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<uint8_t>(escaped[i + k]) & 0xC0) != 0x80) len = 1;
    }
    symbols.push_back(escaped.substr(i, len));
    i += len;
  }
  auto find = [&t](const std::string& s) {
    for (int32_t i = 0; i < t.vocab_size(); ++i) {
      if (t.vocab().tokens[i] == s) return i;
    }
    return -1;
  };
  while (true) {
    int best = -1;
    float best_score = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const int32_t id = find(symbols[i] + symbols[i + 1]);
      if (id < 0) continue;
      if (best < 0 || t.vocab().scores[id] > best_score) {
        best = static_cast<int>(i);
        best_score = t.vocab().scores[id];
      }
    }
    if (best < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> out;
  for (const auto& s : symbols) {
    const int32_t id = find(s);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char c : s) out.push_back(ByteId(static_cast<uint8_t>(c)));
    }
  }
  return out;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  return out;
}

TEST(SpmTokenizer, MergesHighestScoreFirst) {
  // "bc" outscores "ab", so "abc" becomes a + bc, not ab + c.
  Vocab v = MakeVocab({{"a", -10}, {"b", -10}, {"c", -10}, {"ab", -2}, {"bc", -1}});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  EXPECT_EQ(t->Encode("abc", NoBos()), (std::vector<int32_t>{Id(*t, "a"), Id(*t, "bc")}));
  EXPECT_EQ(t->Encode("ab", NoBos()), (std::vector<int32_t>{Id(*t, "ab")}));
}

TEST(SpmTokenizer, MergesChainIntoLongerTokens) {
  Vocab v = MakeVocab({{"\xE2\x96\x81", -5},
                       {"h", -5},
                       {"e", -5},
                       {"l", -5},
                       {"o", -5},
                       {"he", -3},
                       {"ll", -2},
                       {"hell", -1},
                       {"hello", -0.5},
                       {"\xE2\x96\x81hello", -0.1}});
  auto t = MustCreate(v);
  EXPECT_EQ(t->Encode("hello", NoBos()), (std::vector<int32_t>{Id(*t, "\xE2\x96\x81hello")}));
  EXPECT_EQ(t->Encode("hello", {}), (std::vector<int32_t>{kBos, Id(*t, "\xE2\x96\x81hello")}));
}

TEST(SpmTokenizer, EqualScoresMergeLeftmostFirst) {
  Vocab v = MakeVocab({{"a", -5}, {"aa", -1}});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  EXPECT_EQ(t->Encode("aaa", NoBos()), (std::vector<int32_t>{Id(*t, "aa"), Id(*t, "a")}));
  EXPECT_EQ(t->Encode("aaaa", NoBos()), (std::vector<int32_t>{Id(*t, "aa"), Id(*t, "aa")}));
}

TEST(SpmTokenizer, CharactersOutsideTheVocabularyFallBackToBytes) {
  Vocab v = MakeVocab({{"\xE2\x96\x81", -1}, {"a", -1}});
  auto t = MustCreate(v);
  // "é" is C3 A9; the escaped space stays a token.
  EXPECT_EQ(t->Encode("a\xC3\xA9", {}),
            (std::vector<int32_t>{kBos, Id(*t, "\xE2\x96\x81"), Id(*t, "a"), ByteId(0xC3),
                                  ByteId(0xA9)}));
  EXPECT_EQ(Decode(*t, t->Encode("a\xC3\xA9", {})), " a\xC3\xA9");
}

TEST(SpmTokenizer, InvalidUtf8BecomesBytesWithoutCrashing) {
  Vocab v = MakeVocab({{"a", -1}, {"\xE2\x96\x81", -1}});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  // A stray continuation byte, a lead byte followed by ASCII, a truncated 3-byte sequence.
  const std::string text =
      "\x80"
      "a\xC3"
      "a\xE6\x97";
  EXPECT_EQ(t->Encode(text, NoBos()),
            (std::vector<int32_t>{ByteId(0x80), Id(*t, "a"), ByteId(0xC3), Id(*t, "a"),
                                  ByteId(0xE6), ByteId(0x97)}));
  EXPECT_EQ(Decode(*t, t->Encode(text, NoBos())), text);
  const std::string all_bad = "\xFF\xFE\xF8\xC0";
  EXPECT_EQ(Decode(*t, t->Encode(all_bad, NoBos())), all_bad);
}

TEST(SpmTokenizer, SpecialTokenTextIsParsedWhenAsked) {
  Vocab v = MakeVocab({{"\xE2\x96\x81", -3},
                       {"a", -3},
                       {"b", -3},
                       {"s", -3},
                       {"\xE2\x96\x81"
                        "a",
                        -1},
                       {"\xE2\x96\x81"
                        "b",
                        -1}});
  auto t = MustCreate(v);
  const int32_t sp_a = Id(*t,
                          "\xE2\x96\x81"
                          "a");
  const int32_t sp_b = Id(*t,
                          "\xE2\x96\x81"
                          "b");
  // The fragment after a special token gets the space prefix again.
  EXPECT_EQ(t->Encode("a<s>b", {}), (std::vector<int32_t>{kBos, sp_a, kBos, sp_b}));
  EXPECT_EQ(t->Encode("a</s>", {}), (std::vector<int32_t>{kBos, sp_a, kEos}));
  EXPECT_EQ(t->Encode("<unk>", NoBos()), (std::vector<int32_t>{kUnk}));
  // Off: the text is just characters ('<' and '>' are not in this vocabulary).
  EncodeOptions literal = NoBos();
  literal.parse_special = false;
  EXPECT_EQ(t->Encode("a<s>b", literal),
            (std::vector<int32_t>{sp_a, ByteId('<'), Id(*t, "s"), ByteId('>'), Id(*t, "b")}));
}

// A text encoded in pieces (a chat prompt around a reply's own token ids) must not get a
// second space prefix in the middle: only the start of the whole text gets one.
TEST(SpmTokenizer, ContinuationGetsNoSpacePrefixButFragmentsAfterSpecialTokensDo) {
  Vocab v = MakeVocab({{"\xE2\x96\x81", -3}, {"a", -3}, {"b", -3}, {"\xE2\x96\x81" "a", -1},
                       {"\xE2\x96\x81" "b", -1}});
  auto t = MustCreate(v);
  const int32_t sp_a = Id(*t, "\xE2\x96\x81" "a");
  const int32_t sp_b = Id(*t, "\xE2\x96\x81" "b");
  EncodeOptions cont = NoBos();
  cont.continuation = true;
  EXPECT_EQ(t->Encode("a", cont), (std::vector<int32_t>{Id(*t, "a")}));
  EXPECT_EQ(t->Encode(" a", cont), (std::vector<int32_t>{sp_a}));
  EXPECT_EQ(t->Encode("a<s>b", cont), (std::vector<int32_t>{Id(*t, "a"), kBos, sp_b}));
  // Without it, the start of the text gets the prefix.
  EXPECT_EQ(t->Encode("a", NoBos()), (std::vector<int32_t>{sp_a}));
}

TEST(SpmTokenizer, LongerSpecialTokensAreCutFirst) {
  Vocab v = MakeVocab({{"x", -1}}, {"<a>", "<a><b>"});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  const int32_t ab = Id(*t, "<a><b>");
  const int32_t a = Id(*t, "<a>");
  EXPECT_EQ(t->Encode("<a><b>x<a>", NoBos()), (std::vector<int32_t>{ab, Id(*t, "x"), a}));
}

TEST(SpmTokenizer, UserDefinedTokensAreCutEvenWithoutSpecialParsing) {
  Vocab v = MakeVocab({{"x", -1}}, {"<tool>"});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  EncodeOptions literal = NoBos();
  literal.parse_special = false;
  const int32_t tool = Id(*t, "<tool>");
  EXPECT_EQ(t->Encode("x<tool>x", literal), (std::vector<int32_t>{Id(*t, "x"), tool, Id(*t, "x")}));
  EXPECT_EQ(t->Piece(tool), "<tool>");
}

TEST(SpmTokenizer, AddBosFollowsTheOptionOverTheVocabulary) {
  Vocab v =
      MakeVocab({{"\xE2\x96\x81"
                  "a",
                  -1}});
  v.add_bos = false;
  auto t = MustCreate(v);
  const int32_t sp_a = Id(*t,
                          "\xE2\x96\x81"
                          "a");
  EXPECT_EQ(t->Encode("a", {}), (std::vector<int32_t>{sp_a}));
  EncodeOptions with_bos;
  with_bos.add_bos = true;
  EXPECT_EQ(t->Encode("a", with_bos), (std::vector<int32_t>{kBos, sp_a}));
  EncodeOptions with_eos;
  with_eos.add_eos = true;
  EXPECT_EQ(t->Encode("a", with_eos), (std::vector<int32_t>{sp_a, kEos}));

  v.add_bos = true;
  t = MustCreate(v);
  EXPECT_EQ(t->Encode("a", {}), (std::vector<int32_t>{kBos, sp_a}));
  EXPECT_EQ(t->Encode("a", NoBos()), (std::vector<int32_t>{sp_a}));
}

TEST(SpmTokenizer, EmptyTextIsBosAloneOrNothing) {
  auto t = MustCreate(MakeVocab({{"\xE2\x96\x81", -1}}));
  EXPECT_EQ(t->Encode("", {}), (std::vector<int32_t>{kBos}));
  EXPECT_TRUE(t->Encode("", NoBos()).empty());
}

TEST(SpmTokenizer, PiecesOfEachTokenType) {
  auto t = MustCreate(MakeVocab({{"\xE2\x96\x81the", -1},
                                 {"a\xE2\x96\x81\xE2\x96\x81"
                                  "b",
                                  -1}}));
  EXPECT_EQ(t->Piece(Id(*t, "\xE2\x96\x81the")), " the");
  EXPECT_EQ(t->Piece(Id(*t,
                        "a\xE2\x96\x81\xE2\x96\x81"
                        "b")),
            "a  b");
  EXPECT_EQ(t->Piece(ByteId(0x0A)), "\n");
  EXPECT_EQ(t->Piece(ByteId(0xFF)), "\xFF");
  EXPECT_EQ(t->Piece(kBos), "");
  EXPECT_EQ(t->Piece(kEos), "");
  EXPECT_EQ(t->Piece(kUnk), "");
  EXPECT_EQ(t->Piece(-1), "");
  EXPECT_EQ(t->Piece(t->vocab_size()), "");
  EXPECT_TRUE(t->IsEndOfGeneration(kEos));
  EXPECT_FALSE(t->IsEndOfGeneration(kBos));
}

TEST(SpmTokenizer, CreateRejectsUnusableVocabularies) {
  EXPECT_EQ(Tokenizer::Create(Vocab{}).status().code(), absl::StatusCode::kInvalidArgument);
  Vocab v = MakeVocab({{"a", -1}});
  v.scores.pop_back();
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
  v = MakeVocab({{"a", -1}});
  v.token_types.pop_back();
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
  v = MakeVocab({{"a", -1}});
  v.bos_id = static_cast<int32_t>(v.tokens.size());
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
  v = MakeVocab({{"a", -1}});
  v.bos_id = -1;  // add_bos without a BOS token
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
  v = MakeVocab({{"a", -1}, {"a", -2}});
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
  v = MakeVocab({{"a", -1}});
  v.kind = Vocab::Kind::kBytePairGpt2;  // byte-level BPE without a pre-tokenizer name
  EXPECT_EQ(Tokenizer::Create(v).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpmTokenizer, EmptyTokenTextNeverMatches) {
  Vocab v = MakeVocab({{"a", -1}, {"", -1}});
  v.add_space_prefix = false;
  auto t = MustCreate(v);
  EXPECT_EQ(t->Encode("a", NoBos()), (std::vector<int32_t>{Id(*t, "a")}));
}

TEST(StreamingDecoder, HoldsAUtf8CharacterSplitOverByteTokensUntilComplete) {
  auto t = MustCreate(MakeVocab({{"\xE2\x96\x81hi", -1}}));
  StreamingDecoder d(*t);
  EXPECT_EQ(d.Push(kBos), "");
  EXPECT_EQ(d.Push(Id(*t, "\xE2\x96\x81hi")), " hi");
  // U+1F642 (F0 9F 99 82) over four byte tokens.
  EXPECT_EQ(d.Push(ByteId(0xF0)), "");
  EXPECT_EQ(d.Push(ByteId(0x9F)), "");
  EXPECT_EQ(d.Push(ByteId(0x99)), "");
  EXPECT_EQ(d.Push(ByteId(0x82)), "\xF0\x9F\x99\x82");
  EXPECT_EQ(d.Push(ByteId(0xC3)), "");
  EXPECT_EQ(d.Finish(), "\xC3");
  EXPECT_EQ(d.Finish(), "");
}

TEST(StreamingDecoder, LetsBytesThatCannotCompleteThrough) {
  auto t = MustCreate(MakeVocab({{"a", -1}}));
  StreamingDecoder d(*t);
  EXPECT_EQ(d.Push(ByteId(0xE6)), "");
  EXPECT_EQ(d.Push(Id(*t, "a")),
            "\xE6"
            "a");                           // the lead byte can no longer complete
  EXPECT_EQ(d.Push(ByteId(0x80)), "\x80");  // a stray continuation byte
  EXPECT_EQ(d.Push(ByteId(0xFF)), "\xFF");
  EXPECT_EQ(d.Finish(), "");
}

// A vocabulary of a few characters and their pairs with random scores, plus byte fallback.
Vocab RandomVocab(std::mt19937& rng) {
  const std::vector<std::string> chars = {"\xE2\x96\x81", "a", "b", "c", "\xC3\xA9",
                                          "\xE6\x97\xA5", "\n"};
  std::uniform_real_distribution<float> score(-20, 0);
  std::vector<std::pair<std::string, float>> normal;
  for (const auto& c : chars) normal.push_back({c, score(rng)});
  for (const auto& x : chars) {
    for (const auto& y : chars) {
      if (rng() % 2) normal.push_back({x + y, score(rng)});
    }
  }
  for (int i = 0; i < 20; ++i) {
    const std::string w =
        chars[rng() % chars.size()] + chars[rng() % chars.size()] + chars[rng() % chars.size()];
    bool seen = false;
    for (const auto& [text, s] : normal) seen = seen || text == w;
    if (!seen) normal.push_back({w, score(rng)});
  }
  // Equal scores on purpose, to exercise the leftmost-first tie break.
  for (size_t i = 0; i + 1 < normal.size(); i += 5) normal[i + 1].second = normal[i].second;
  return MakeVocab(normal);
}

std::string RandomText(std::mt19937& rng) {
  const std::vector<std::string> parts = {
      " ", "a", "b", "c", "\xC3\xA9", "\xE6\x97\xA5", "\n", "x", "\xF0\x9F\x99\x82", "  "};
  std::string s;
  const int n = static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) {
    if (rng() % 10 == 0) {
      s.push_back(static_cast<char>(rng() % 256));  // any byte, valid UTF-8 or not
    } else {
      s += parts[rng() % parts.size()];
    }
  }
  return s;
}

TEST(SpmTokenizer, RandomizedRoundTripAndNaiveMergeAgree) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 40; ++round) {
    Vocab v = RandomVocab(rng);
    v.add_space_prefix = round % 2 == 0;
    auto t = MustCreate(v);
    ASSERT_NE(t, nullptr);
    EncodeOptions options = NoBos();
    options.parse_special = false;
    for (int i = 0; i < 50; ++i) {
      const std::string text = RandomText(rng);
      const std::vector<int32_t> ids = t->Encode(text, options);
      const std::string expected = text.empty() || !v.add_space_prefix ? text : " " + text;
      ASSERT_EQ(Decode(*t, ids), expected) << "round " << round << " text '" << text << "'";
      if (!text.empty()) {
        ASSERT_EQ(ids, NaiveEncodeFragment(*t, Escape(expected)))
            << "round " << round << " text '" << text << "'";
      }
      // Streaming gives the same bytes.
      StreamingDecoder d(*t);
      std::string streamed;
      for (int32_t id : ids) streamed += d.Push(id);
      streamed += d.Finish();
      ASSERT_EQ(streamed, expected);
    }
  }
}

TEST(SpmTokenizer, EncodesOneHundredKilobytesQuickly) {
  std::mt19937 rng(5);
  std::vector<std::pair<std::string, float>> normal;
  const std::string letters = "abcdefghijklmnopqrstuvwxyz";
  for (char c : letters) normal.push_back({std::string(1, c), -100});
  normal.push_back({"\xE2\x96\x81", -100});
  for (char a : letters) {
    for (char b : letters) {
      normal.push_back({std::string(1, a) + b, -static_cast<float>(rng() % 1000)});
      normal.push_back({"\xE2\x96\x81" + std::string(1, a) + b, -static_cast<float>(rng() % 1000)});
    }
  }
  auto t = MustCreate(MakeVocab(normal));
  std::string text;
  while (text.size() < 100 * 1024) {
    const int len = 1 + static_cast<int>(rng() % 9);
    for (int i = 0; i < len; ++i) text.push_back(letters[rng() % letters.size()]);
    text.push_back(' ');
  }
  // One word of 100 KB too: the worst case for a single fragment.
  const std::string one_word(100 * 1024, 'a');
  const auto start = std::chrono::steady_clock::now();
  const auto ids = t->Encode(text, {});
  const auto ids_word = t->Encode(one_word, {});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 1.0);
  EXPECT_EQ(Decode(*t, ids), " " + text);
  EXPECT_EQ(Decode(*t, ids_word), " " + one_word);
}

}  // namespace
}  // namespace prefixd
