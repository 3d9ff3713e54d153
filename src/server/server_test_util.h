// What several server_test files share: a fixture with stories260K's tokenizer (from
// ../shared/models; the test is skipped without it) and the e2e tests' chat templates.
#pragma once

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

// The Jinja source of tests/e2e/templates/NAME ("" when it cannot be read).
inline std::string ReadTestTemplate(const std::string& name) {
  std::ifstream in(std::string(PREFIXD_TEMPLATES_DIR) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace prefixd
