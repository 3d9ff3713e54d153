#include "engine/vocab_loader.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "model/gguf_writer.h"

namespace prefixd {
namespace {

// A GGUF file in memory, built by a writer; keeps the bytes alive for the parsed file.
class FileFixture {
 public:
  GgufWriter writer;

  const GgufFile& Parse() {
    bytes_ = writer.Serialize();
    auto file = GgufFile::Parse(bytes_, "test.gguf");
    EXPECT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    return *file_;
  }

 private:
  std::vector<uint8_t> bytes_;
  std::unique_ptr<GgufFile> file_;
};

void SetSpm(GgufWriter& w, int num_tokens) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  while (static_cast<int>(tokens.size()) < num_tokens) {
    tokens.push_back("t" + std::to_string(tokens.size()));
  }
  tokens.resize(num_tokens);
  w.Set("tokenizer.ggml.model", GgufValue::String("llama"));
  w.Set("tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
}

TEST(VocabLoader, SentencePieceDefaultsFollowLlamaCpp) {
  FileFixture f;
  SetSpm(f.writer, 10);
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->kind, Vocab::Kind::kSentencePiece);
  EXPECT_EQ(vocab->tokens.size(), 10u);
  EXPECT_EQ(vocab->scores, std::vector<float>(10, 0.0f));
  EXPECT_EQ(vocab->token_types, std::vector<TokenType>(10, TokenType::kNormal));
  EXPECT_EQ(vocab->bos_id, 1);
  EXPECT_EQ(vocab->eos_id, 2);
  EXPECT_EQ(vocab->unk_id, 0);
  EXPECT_EQ(vocab->pad_id, -1);
  EXPECT_EQ(vocab->eot_id, -1);
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_FALSE(vocab->add_eos);
  EXPECT_TRUE(vocab->add_space_prefix);
}

TEST(VocabLoader, ReadsEveryKey) {
  FileFixture f;
  SetSpm(f.writer, 6);
  f.writer.Set("tokenizer.ggml.scores", GgufValue::F32Array({0, 0, 0, -1, -2, -3}));
  f.writer.Set("tokenizer.ggml.token_type", GgufValue::I32Array({2, 3, 3, 1, 6, 4}));
  f.writer.Set("tokenizer.ggml.bos_token_id", GgufValue::U32(3));
  f.writer.Set("tokenizer.ggml.eos_token_id", GgufValue::U32(4));
  f.writer.Set("tokenizer.ggml.unknown_token_id", GgufValue::U32(5));
  f.writer.Set("tokenizer.ggml.padding_token_id", GgufValue::U32(0));
  f.writer.Set("tokenizer.ggml.eot_token_id", GgufValue::U32(2));
  f.writer.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
  f.writer.Set("tokenizer.ggml.add_eos_token", GgufValue::Bool(true));
  f.writer.Set("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false));
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->scores, (std::vector<float>{0, 0, 0, -1, -2, -3}));
  EXPECT_EQ(
      vocab->token_types,
      (std::vector<TokenType>{TokenType::kUnknown, TokenType::kControl, TokenType::kControl,
                              TokenType::kNormal, TokenType::kByte, TokenType::kUserDefined}));
  EXPECT_EQ(vocab->bos_id, 3);
  EXPECT_EQ(vocab->eos_id, 4);
  EXPECT_EQ(vocab->unk_id, 5);
  EXPECT_EQ(vocab->pad_id, 0);
  EXPECT_EQ(vocab->eot_id, 2);
  EXPECT_FALSE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_eos);
  EXPECT_FALSE(vocab->add_space_prefix);
}

TEST(VocabLoader, Int32ScoresAreAccepted) {
  FileFixture f;
  SetSpm(f.writer, 4);
  f.writer.Set("tokenizer.ggml.scores", GgufValue::I32Array({0, 1, 2, -7}));
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->scores, (std::vector<float>{0, 1, 2, -7}));
}

TEST(VocabLoader, NoneSentinelIdsKeepTheDefault) {
  FileFixture f;
  SetSpm(f.writer, 4);
  f.writer.Set("tokenizer.ggml.padding_token_id", GgufValue::U32(0xFFFFFFFFu));
  f.writer.Set("tokenizer.ggml.bos_token_id", GgufValue::U32(4));  // one past the end
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->pad_id, -1);
  EXPECT_EQ(vocab->bos_id, 1);
}

TEST(VocabLoader, EndOfTurnIsFoundByTextWithoutAKey) {
  FileFixture f;
  f.writer.Set("tokenizer.ggml.model", GgufValue::String("llama"));
  f.writer.Set("tokenizer.ggml.tokens",
               GgufValue::StringArray({"<unk>", "<s>", "</s>", "a", "<|im_end|>"}));
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->eot_id, 4);
}

TEST(VocabLoader, Gpt2ReadsMergesAndPreTokenizer) {
  FileFixture f;
  f.writer.Set("tokenizer.ggml.model", GgufValue::String("gpt2"));
  f.writer.Set("tokenizer.ggml.pre", GgufValue::String("llama-bpe"));
  std::vector<std::string> tokens;
  for (int i = 0; i < 20; ++i) tokens.push_back("t" + std::to_string(i));
  f.writer.Set("tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  f.writer.Set("tokenizer.ggml.merges", GgufValue::StringArray({"t 1", "t1 2"}));
  auto vocab = LoadVocab(f.Parse());
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  EXPECT_EQ(vocab->kind, Vocab::Kind::kBytePairGpt2);
  EXPECT_EQ(vocab->merges, (std::vector<std::string>{"t 1", "t1 2"}));
  EXPECT_EQ(vocab->pre, "llama-bpe");
  EXPECT_EQ(vocab->bos_id, 11);
  EXPECT_TRUE(vocab->add_bos);  // llama3-style pre-tokenizers add BOS
  EXPECT_FALSE(vocab->add_space_prefix);
}

// tokenizer.ggml.normalizer (make-model writes it from tokenizer.json); without the key, Qwen's
// pre-tokenizer implies the NFC its tokenizer.json declares (llama.cpp's converter writes none).
TEST(VocabLoader, NormalizerFromTheKeyOrQwenPre) {
  auto normalizer = [](const char* pre, const char* key) {
    FileFixture f;
    f.writer.Set("tokenizer.ggml.model", GgufValue::String("gpt2"));
    f.writer.Set("tokenizer.ggml.pre", GgufValue::String(pre));
    f.writer.Set("tokenizer.ggml.tokens", GgufValue::StringArray({"a", "b", "ab"}));
    f.writer.Set("tokenizer.ggml.merges", GgufValue::StringArray({"a b"}));
    f.writer.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
    if (key != nullptr) f.writer.Set("tokenizer.ggml.normalizer", GgufValue::String(key));
    auto vocab = LoadVocab(f.Parse());
    EXPECT_TRUE(vocab.ok()) << vocab.status();
    return vocab.ok() ? vocab->normalizer : std::string("(error)");
  };
  EXPECT_EQ(normalizer("qwen2", nullptr), "nfc");
  EXPECT_EQ(normalizer("llama-bpe", nullptr), "");
  EXPECT_EQ(normalizer("gpt2", "nfc"), "nfc");
  EXPECT_EQ(normalizer("qwen2", ""), "");  // an explicit "none" wins
}

TEST(VocabLoader, ErrorsNameTheFileAndKey) {
  {
    FileFixture f;
    f.writer.Set("general.architecture", GgufValue::String("llama"));
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(vocab.status().message().find("test.gguf"), std::string::npos);
    EXPECT_NE(vocab.status().message().find("tokenizer.ggml.model"), std::string::npos);
  }
  {
    FileFixture f;
    SetSpm(f.writer, 4);
    f.writer.Set("tokenizer.ggml.model", GgufValue::String("bert"));
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(vocab.status().message());
    EXPECT_NE(message.find("'bert'"), std::string::npos) << message;
    EXPECT_NE(message.find("'llama'"), std::string::npos) << message;
    EXPECT_NE(message.find("'gpt2'"), std::string::npos) << message;
  }
  {
    FileFixture f;
    SetSpm(f.writer, 4);
    f.writer.Set("tokenizer.ggml.scores", GgufValue::F32Array({0, 0}));
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(vocab.status().message().find("tokenizer.ggml.scores"), std::string::npos);
  }
  {
    FileFixture f;
    SetSpm(f.writer, 4);
    f.writer.Set("tokenizer.ggml.add_bos_token", GgufValue::U32(1));  // wrong type
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(vocab.status().message().find("tokenizer.ggml.add_bos_token"), std::string::npos);
    EXPECT_NE(vocab.status().message().find("test.gguf"), std::string::npos);
  }
  {
    FileFixture f;
    f.writer.Set("tokenizer.ggml.model", GgufValue::String("llama"));
    f.writer.Set("tokenizer.ggml.tokens", GgufValue::StringArray({"a"}));  // no room for BOS 1
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(vocab.status().message().find("add_bos_token"), std::string::npos);
  }
  {
    FileFixture f;
    f.writer.Set("tokenizer.ggml.model", GgufValue::String("gpt2"));
    f.writer.Set("tokenizer.ggml.tokens", GgufValue::StringArray({"a", "b"}));
    auto vocab = LoadVocab(f.Parse());
    ASSERT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(vocab.status().message().find("tokenizer.ggml.merges"), std::string::npos);
  }
}

}  // namespace
}  // namespace prefixd
