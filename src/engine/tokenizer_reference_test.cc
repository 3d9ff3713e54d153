// The SentencePiece tokenizer against llama.cpp's output on real vocabularies (files under
// ../shared, see ../shared/README.md): token ids must match exactly.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/vocab_loader.h"
#include "model/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {
namespace {

const std::string kShared = PREFIXD_SHARED_DIR;

std::string IdsToString(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// The tokenizer of the model at `path`, or nullptr (with the reason in `skip`) when absent.
std::unique_ptr<Tokenizer> LoadTokenizer(const std::string& path, std::string& skip) {
  if (!std::filesystem::exists(path)) {
    skip = path + " is not there";
    return nullptr;
  }
  auto file = GgufFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  auto vocab = LoadVocab(**file);
  EXPECT_TRUE(vocab.ok()) << vocab.status();
  if (!vocab.ok()) return nullptr;
  auto tokenizer = Tokenizer::Create(*std::move(vocab));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return nullptr;
  return std::move(*tokenizer);
}

nlohmann::json LoadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(TokenizerReference, Llama2VocabularyMatchesLlamaCppOnAllStrings) {
  const std::string json_path = kShared + "/reference/llama2_spm_tokenize.json";
  std::string skip;
  auto tokenizer = LoadTokenizer(kShared + "/models/llama-2-tiny-random.gguf", skip);
  if (!skip.empty() || !std::filesystem::exists(json_path)) {
    GTEST_SKIP() << "reference data missing: " << (skip.empty() ? json_path : skip);
  }
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 32000);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);

  const nlohmann::json reference = LoadJson(json_path);
  const auto& cases = reference.at("cases");
  ASSERT_EQ(cases.size(), 120u);
  int num_exact = 0;
  int num_decoded = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> expected = c.at("ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tokenizer->Encode(text, EncodeOptions{});
    EXPECT_EQ(got, expected) << "text '" << text << "'\n  expected " << IdsToString(expected)
                             << "\n  got      " << IdsToString(got);
    num_exact += got == expected;

    // Decoding: the pieces after BOS give the text back with the one space SentencePiece put
    // in front, except where the text spells a control token (<s>, </s>, <unk>), whose piece
    // is empty.
    ASSERT_FALSE(expected.empty());
    ASSERT_EQ(expected[0], tokenizer->bos_id());
    std::string decoded;
    for (size_t i = 1; i < expected.size(); ++i) decoded += tokenizer->Piece(expected[i]);
    const bool spells_control = text.find("<s>") != std::string::npos ||
                                text.find("</s>") != std::string::npos ||
                                text.find("<unk>") != std::string::npos;
    if (spells_control) {
      EXPECT_EQ(decoded, "") << "text '" << text << "'";
      continue;
    }
    if (text.empty()) {
      EXPECT_EQ(decoded, "");
    } else {
      ASSERT_FALSE(decoded.empty()) << "text '" << text << "'";
      EXPECT_EQ(decoded[0], ' ') << "text '" << text << "'";
      EXPECT_EQ(decoded.substr(1), text);
    }
    ++num_decoded;
  }
  EXPECT_EQ(num_exact, 120);
  EXPECT_EQ(num_decoded, 117);  // all but "<s>", "</s>", "<unk>"

  // 100 KB of the same strings in one fragment: fast, and decodes back.
  std::string big;
  while (big.size() < 100 * 1024) {
    for (const auto& c : cases) {
      const std::string text = c.at("text").get<std::string>();
      if (text.find('<') == std::string::npos) big += text;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tokenizer->Encode(big, EncodeOptions{});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 1.0) << big.size() << " bytes";
  std::string decoded;
  for (int32_t id : ids) decoded += tokenizer->Piece(id);
  EXPECT_EQ(decoded, " " + big);
}

TEST(TokenizerReference, Stories260KPromptsAndGeneratedPieces) {
  const std::string json_path = kShared + "/reference/stories260K_greedy.json";
  std::string skip;
  auto tokenizer = LoadTokenizer(kShared + "/models/stories260K.gguf", skip);
  if (!skip.empty() || !std::filesystem::exists(json_path)) {
    GTEST_SKIP() << "reference data missing: " << (skip.empty() ? json_path : skip);
  }
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 512);

  const nlohmann::json reference = LoadJson(json_path);
  const auto& results = reference.at("results");
  ASSERT_EQ(results.size(), 5u);
  for (const auto& r : results) {
    const std::string prompt = r.at("prompt").get<std::string>();
    const auto expected = r.at("prompt_token_ids").get<std::vector<int32_t>>();
    const auto got = tokenizer->Encode(prompt, EncodeOptions{});
    EXPECT_EQ(got, expected) << "prompt '" << prompt << "'\n  expected " << IdsToString(expected)
                             << "\n  got      " << IdsToString(got);

    const auto generated = r.at("generated_token_ids").get<std::vector<int32_t>>();
    const auto pieces = r.at("generated_pieces").get<std::vector<std::string>>();
    ASSERT_EQ(generated.size(), pieces.size());
    std::string text;
    StreamingDecoder streaming(*tokenizer);
    std::string streamed;
    for (size_t i = 0; i < generated.size(); ++i) {
      EXPECT_EQ(tokenizer->Piece(generated[i]), pieces[i]) << "token " << generated[i];
      text += tokenizer->Piece(generated[i]);
      streamed += streaming.Push(generated[i]);
    }
    streamed += streaming.Finish();
    EXPECT_EQ(text, r.at("generated_text").get<std::string>()) << "prompt '" << prompt << "'";
    EXPECT_EQ(streamed, text);
  }
}

}  // namespace
}  // namespace prefixd
