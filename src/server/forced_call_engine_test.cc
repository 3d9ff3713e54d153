// A forced call through the real engine (stories260K): the constraint ends the generation with
// whole calls (in the Hermes syntax, one or several: the model takes its end token or another
// call after each), max_tokens still cuts it, and a cached prompt gives the same calls as a
// cold one (the constraint touches sampling only, never the cache).
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "engine/sampler.h"
#include "server/forced_call.h"
#include "server/stories_service_for_test.h"
#include "server/tool_call_parser.h"

namespace prefixd {
namespace {

using ojson = nlohmann::ordered_json;

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  int64_t cached_tokens = -1;
};

Outcome Generate(EngineService& service, const GenerateRequest& request) {
  struct State {
    std::mutex mu;
    Outcome out;
    std::promise<void> done;
  };
  auto state = std::make_shared<State>();
  auto done = state->done.get_future();
  ServiceRequest sr;
  sr.request = request;
  sr.on_event = [state](const TokenEvent& ev) {
    std::lock_guard<std::mutex> lock(state->mu);
    if (ev.token >= 0) state->out.tokens.push_back(ev.token);
    if (ev.finished) {
      state->out.finish = ev.finish;
      state->out.cached_tokens = ev.usage.cached_tokens;
      state->done.set_value();
    }
  };
  EXPECT_TRUE(service.Submit(std::move(sr)).ok());
  done.wait();
  std::lock_guard<std::mutex> lock(state->mu);
  return state->out;
}

TEST(ForcedCallEngine, CachedAndColdRunsWriteTheSameWholeCall) {
  auto stories = StartStoriesService(512);
  ASSERT_TRUE(stories.ok()) << stories.status();
  if (*stories == nullptr) GTEST_SKIP() << "stories260K.gguf is not in ../shared/models";
  StoriesService& s = **stories;
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters":
      {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"},
       "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "days"]}}}])");
  auto texts = std::make_shared<const TokenTexts>(*s.tokenizer);
  const int32_t end = s.tokenizer->eos_id();
  int max_calls_seen = 0;
  for (ToolCallSyntax syntax : {ToolCallSyntax::kHermes, ToolCallSyntax::kLlama3}) {
    // At most 3 calls (Llama 3: 1), so that they fit in the 512-token context with room to
    // spare: stories260K writes a call's JSON in about 60 tokens.
    const int max_calls = std::min(MaxForcedCalls(syntax, /*parallel=*/true, end), 3);
    auto grammar = BuildCallGrammar(syntax, tools, "", "function.parameters", max_calls);
    ASSERT_TRUE(grammar.ok()) << grammar.status();
    for (uint64_t seed : {0, 9, 10, 11, 12}) {
      const float temperature = seed == 0 ? 0.0f : 1.0f;
      GenerateRequest r;
      // A salt per case, so the first run of each is cold.
      r.cache_salt = absl::StrCat(ToolCallSyntaxName(syntax), "-", seed);
      r.prompt = s.tokenizer->Encode("Once upon a time there was a little girl who wanted to know the weather in "
                                     "the big city by the sea, so she asked",
                                     EncodeOptions{});
      r.max_tokens = 450;
      r.sampling.temperature = temperature;
      r.sampling.seed = seed;
      r.constraint = MakeCallConstraint(texts, *grammar, end);
      const Outcome cold = Generate(*s.service, r);
      r.constraint = MakeCallConstraint(texts, *grammar, end);  // each request owns its own
      const Outcome cached = Generate(*s.service, r);
      EXPECT_EQ(cold.cached_tokens, 0);
      EXPECT_GT(cached.cached_tokens, 0);
      EXPECT_EQ(cold.tokens, cached.tokens) << "the cache changed a constrained output";
      EXPECT_EQ(cold.finish, FinishReason::kEos);
      EXPECT_EQ(cached.finish, FinishReason::kEos);
      std::string text;
      for (int32_t t : cold.tokens) text += s.tokenizer->Piece(t);
      const ParsedToolCalls parsed = ParseToolCalls(syntax, text);
      ASSERT_GE(parsed.calls.size(), 1u) << text;
      ASSERT_LE(parsed.calls.size(), static_cast<size_t>(max_calls)) << text;
      EXPECT_EQ(parsed.text, "") << text;
      max_calls_seen = std::max(max_calls_seen, static_cast<int>(parsed.calls.size()));
      for (const ParsedToolCalls::Call& call : parsed.calls) {
        EXPECT_EQ(call.name, "get_weather");
        const ojson args = ojson::parse(call.arguments);
        EXPECT_TRUE(args["city"].is_string()) << text;
        EXPECT_TRUE(args["days"].is_number_integer()) << text;
      }

      // Cut short by max_tokens: the sequence ends with kLength, as unconstrained ones do.
      GenerateRequest shortened = r;
      shortened.max_tokens = 3;
      shortened.constraint = MakeCallConstraint(texts, *grammar, end);
      const Outcome cut = Generate(*s.service, shortened);
      EXPECT_EQ(cut.finish, FinishReason::kLength);
      EXPECT_EQ(cut.tokens.size(), 3u);
      EXPECT_FALSE(shortened.constraint->IsComplete());
    }
  }
  std::cout << "most calls in one forced answer: " << max_calls_seen << "\n";
}

}  // namespace
}  // namespace prefixd
