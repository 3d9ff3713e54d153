#include "model/hf_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/gguf_file.h"
#include "model/model_maker.h"

namespace prefixd {
namespace {

using nlohmann::json;

constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class HfTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hf_tokenizer_test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const json& j) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << j.dump();
    return path;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // A tiny Llama 3-style tokenizer.json: ids 0-3 in the vocabulary, 5 and 6 added (4 unused).
  static json Tokenizer() {
    return json{
        {"model",
         {{"type", "BPE"},
          {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"\xC4\xA0", 3}}},
          {"merges", json::array({json::array({"a", "b"})})}}},
        {"added_tokens",
         json::array({{{"id", 5}, {"content", "<|begin|>"}, {"special", true}},
                      {{"id", 6}, {"content", "<think>"}, {"special", false}}})},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Regex}}}},
                        {{"type", "ByteLevel"}}})}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", json::array({{{"SpecialToken", {{"id", "<|begin|>"}}}},
                                  {{"Sequence", {{"id", "A"}}}}})}}},
    };
  }

  std::filesystem::path dir_;
};

TEST_F(HfTokenizerTest, RecognisesThePreTokenizersOfKnownFamilies) {
  EXPECT_EQ(PreNameForHfRegex(kLlama3Regex), "llama-bpe");
  EXPECT_EQ(PreNameForHfRegex(
                R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
            "qwen2");
  EXPECT_EQ(PreNameForHfRegex("\\w+"), "");
}

TEST_F(HfTokenizerTest, WritesVocabularyMergesTypesAndSpecialTokens) {
  ModelSpec spec;
  spec.embd = 16;
  spec.num_heads = 2;
  spec.num_kv_heads = 2;
  spec.ff = 16;
  spec.tokenizer_json = Write("tokenizer.json", Tokenizer());
  spec.tokenizer_config = Write(
      "tokenizer_config.json",
      json{{"bos_token", {{"content", "<|begin|>"}}}, {"eos_token", "<think>"},
           {"chat_template", "{{ messages }}"}});
  ASSERT_TRUE(WriteRandomModel(spec, Path("m.gguf")).ok());
  auto file = GgufFile::Open(Path("m.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetString("tokenizer.ggml.model").value(), "gpt2");
  EXPECT_EQ(f.GetString("tokenizer.ggml.pre").value(), "llama-bpe");
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.tokens").value(),
            (std::vector<std::string>{"a", "b", "ab", "\xC4\xA0", "[PAD4]", "<|begin|>",
                                      "<think>"}));
  EXPECT_EQ(f.GetIntArray("tokenizer.ggml.token_type").value(),
            (std::vector<int64_t>{1, 1, 1, 1, 5, 3, 4}));
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.merges").value(), std::vector<std::string>{"a b"});
  EXPECT_EQ(f.GetInt("tokenizer.ggml.bos_token_id").value(), 5);
  EXPECT_EQ(f.GetInt("tokenizer.ggml.eos_token_id").value(), 6);
  // No add_bos_token in the config: the post-processor's template adds BOS.
  EXPECT_TRUE(f.GetBool("tokenizer.ggml.add_bos_token").value());
  EXPECT_EQ(f.GetString("tokenizer.chat_template").value(), "{{ messages }}");
  EXPECT_EQ(f.GetInt("llama.vocab_size").value(), 7);  // follows the tokenizer
}

// Qwen's tokenizer.json declares {"normalizer": {"type": "NFC"}}: make-model records it as
// tokenizer.ggml.normalizer = "nfc" (the tokenizer applies it); none (Llama 3) writes no key;
// a normalizer prefixd cannot apply is refused rather than silently dropped.
TEST_F(HfTokenizerTest, WritesTheNfcNormalizerAndRefusesOthers) {
  auto normalizer_of = [&](const json& normalizer) -> StatusOr<std::string> {
    json t = Tokenizer();
    t["normalizer"] = normalizer;
    GgufWriter w;
    auto r = SetHfTokenizerVocab({Write("n.json", t), "", ""}, w);
    if (!r.ok()) return r.status();
    if (auto st = w.Write(Path("n.gguf")); !st.ok()) return st;
    auto f = GgufFile::Open(Path("n.gguf"));
    if (!f.ok()) return f.status();
    const GgufValue* v = (*f)->Find("tokenizer.ggml.normalizer");
    return v == nullptr ? std::string("(absent)") : (*f)->GetString("tokenizer.ggml.normalizer").value();
  };
  EXPECT_EQ(normalizer_of(json{{"type", "NFC"}}).value(), "nfc");
  EXPECT_EQ(normalizer_of(json{{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}})}})
                .value(),
            "nfc");
  EXPECT_EQ(normalizer_of(json(nullptr)).value(), "(absent)");
  const auto nfkc = normalizer_of(json{{"type", "NFKC"}});
  ASSERT_FALSE(nfkc.ok());
  EXPECT_NE(nfkc.status().message().find("NFKC"), std::string_view::npos) << nfkc.status();
}

TEST_F(HfTokenizerTest, ConfigFlagOverridesThePostProcessor) {
  GgufWriter w;
  const std::string tok = Write("tokenizer.json", Tokenizer());
  const std::string config =
      Write("tokenizer_config.json", json{{"bos_token", "<|begin|>"}, {"add_bos_token", false}});
  ASSERT_TRUE(SetHfTokenizerVocab({tok, config, ""}, w).ok());
  ASSERT_TRUE(w.Write(Path("v.gguf")).ok());
  auto f = GgufFile::Open(Path("v.gguf"));
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE((*f)->GetBool("tokenizer.ggml.add_bos_token").value());
}

TEST_F(HfTokenizerTest, RefusesWhatItCannotConvert) {
  GgufWriter w;
  json not_bpe = Tokenizer();
  not_bpe["model"]["type"] = "Unigram";
  auto r = SetHfTokenizerVocab({Write("u.json", not_bpe), "", ""}, w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("BPE"), std::string_view::npos);

  json odd_regex = Tokenizer();
  odd_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  const std::string odd = Write("odd.json", odd_regex);
  r = SetHfTokenizerVocab({odd, "", ""}, w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--tokenizer-pre"), std::string_view::npos);
  r = SetHfTokenizerVocab({odd, "", "gpt2"}, w);  // named explicitly: accepted
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 7);

  r = SetHfTokenizerVocab({Path("missing.json"), "", ""}, w);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();

  const std::string bad_config = Write("c.json", json{{"eos_token", "<nope>"}});
  r = SetHfTokenizerVocab({Write("t.json", Tokenizer()), bad_config, ""}, w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("<nope>"), std::string_view::npos);
}

}  // namespace
}  // namespace prefixd
