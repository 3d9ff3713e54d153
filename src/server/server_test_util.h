// What several server_test files share: a fixture with stories260K's tokenizer (from
// ../shared/models; the test is skipped without it), its byte tokens, and the e2e tests'
// chat templates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "engine/vocab_loader.h"
#include "model/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

class StoriesTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto file = GgufFile::Open(std::string(PREFIXD_SHARED_DIR) + "/models/stories260K.gguf");
    if (!file.ok()) GTEST_SKIP() << "stories260K.gguf is not in ../shared/models";
    auto vocab = LoadVocab(**file);
    ASSERT_TRUE(vocab.ok()) << vocab.status();
    auto tok = Tokenizer::Create(*std::move(vocab));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = *std::move(tok);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

// The id of a SentencePiece byte-fallback token ("<0xE2>" for 0xE2), or -1 when the vocabulary
// has none (stories260K has all 256): a model emits these one byte at a time, so a reply can
// stop inside a character.
inline int32_t ByteToken(const Tokenizer& t, uint8_t b) {
  char name[8];
  std::snprintf(name, sizeof(name), "<0x%02X>", b);
  const auto& tokens = t.vocab().tokens;
  const auto it = std::find(tokens.begin(), tokens.end(), name);
  return it == tokens.end() ? -1 : static_cast<int32_t>(it - tokens.begin());
}

// The Jinja source of tests/e2e/templates/NAME ("" when it cannot be read).
inline std::string ReadTestTemplate(const std::string& name) {
  std::ifstream in(std::string(PREFIXD_TEMPLATES_DIR) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace prefixd
