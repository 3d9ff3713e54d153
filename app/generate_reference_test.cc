// `prefixd generate --json` against an independent implementation's greedy output
// (../shared/reference/stories260K_greedy.json, from llama.cpp). A mismatch passes only when
// it is a genuine near-tie: the top two logits at the first differing token are within 1e-4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace prefixd {
namespace {

const std::string kShared = PREFIXD_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K.gguf";
const std::string kReference = kShared + "/reference/stories260K_greedy.json";

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> RunLines(const std::string& cmd) {
  std::vector<std::string> lines;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return lines;
  std::string cur;
  for (int c; (c = std::fgetc(p)) != EOF;) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(c);
    }
  }
  pclose(p);
  return lines;
}

// Logits of the step that produced generated token `index`, by replaying prompt + the
// expected tokens through the engine.
std::vector<float> LogitsAt(const std::vector<int32_t>& prompt, const std::vector<int32_t>& gen,
                            size_t index) {
  auto model = Model::Load(kModel);
  EngineOptions eo;
  auto engine = Engine::Create(**model, -1, eo);
  GenerateRequest req;
  req.prompt = prompt;
  req.prompt.insert(req.prompt.end(), gen.begin(), gen.begin() + index);
  req.max_tokens = 1;
  req.record_logits = true;
  auto id = (*engine)->Add(req);
  while ((*engine)->HasWork()) (void)(*engine)->Step();
  auto seq = (*engine)->TakeFinished(*id);
  const size_t vocab = (*model)->hparams().vocab_size;
  return std::vector<float>(seq->logits.end() - vocab, seq->logits.end());
}

TEST(GenerateReference, Stories260KGreedyMatchesIndependentImplementation) {
  if (!std::filesystem::exists(kModel) || !std::filesystem::exists(kReference)) {
    GTEST_SKIP() << "needs ../shared/models/stories260K.gguf and ../shared/reference/"
                    "stories260K_greedy.json beside the project";
  }
  nlohmann::json ref = nlohmann::json::parse(std::ifstream(kReference));
  std::string cmd = std::string(PREFIXD_BINARY) + " generate --json -n 64 -m " + Quote(kModel);
  for (const auto& r : ref["results"]) cmd += " -p " + Quote(r["prompt"].get<std::string>());
  const auto lines = RunLines(cmd);
  ASSERT_EQ(lines.size(), ref["results"].size()) << "command: " << cmd;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& r = ref["results"][i];
    const auto got = nlohmann::json::parse(lines[i]);
    const auto prompt = r["prompt_token_ids"].get<std::vector<int32_t>>();
    const auto want = r["generated_token_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(got["prompt_ids"].get<std::vector<int32_t>>(), prompt) << r["prompt"];
    const auto have = got["generated_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(have.size(), want.size()) << r["prompt"];
    auto diff = std::mismatch(have.begin(), have.end(), want.begin());
    if (diff.first == have.end()) {
      EXPECT_EQ(got["text"].get<std::string>(), r["generated_text"].get<std::string>());
      continue;
    }
    const size_t at = diff.first - have.begin();
    std::vector<float> logits = LogitsAt(prompt, want, at);
    const float ours = logits[*diff.first], theirs = logits[*diff.second];
    std::printf("prompt %zu differs at generated token %zu: ours %d (logit %.7f), reference %d "
                "(logit %.7f)\n", i, at, *diff.first, ours, *diff.second, theirs);
    EXPECT_LE(std::abs(ours - theirs), 1e-4f)
        << "not a near-tie: prompt " << r["prompt"] << " token " << at;
  }
}

}  // namespace
}  // namespace prefixd
