// A forced call through the real engine (stories260K): the constraint ends the generation with
// a whole call, max_tokens still cuts it, and a cached prompt gives the same call as a cold one
// (the constraint touches sampling only, never the cache).
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>

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
  for (ToolCallSyntax syntax : {ToolCallSyntax::kHermes, ToolCallSyntax::kLlama3}) {
    auto grammar = BuildCallGrammar(syntax, tools, "", "function.parameters");
    ASSERT_TRUE(grammar.ok()) << grammar.status();
    for (float temperature : {0.0f, 1.0f}) {
      GenerateRequest r;
      // A salt per case, so the first run of each is cold.
      r.cache_salt = std::string(ToolCallSyntaxName(syntax)) + (temperature > 0 ? "-sampled" : "-greedy");
      r.prompt = s.tokenizer->Encode("Once upon a time there was a little girl who wanted to know the weather in "
                                     "the big city by the sea, so she asked",
                                     EncodeOptions{});
      r.max_tokens = 300;
      r.sampling.temperature = temperature;
      r.sampling.seed = 9;
      r.constraint = MakeCallConstraint(texts, *grammar);
      const Outcome cold = Generate(*s.service, r);
      r.constraint = MakeCallConstraint(texts, *grammar);  // each request owns its own
      const Outcome cached = Generate(*s.service, r);
      EXPECT_EQ(cold.cached_tokens, 0);
      EXPECT_GT(cached.cached_tokens, 0);
      EXPECT_EQ(cold.tokens, cached.tokens) << "the cache changed a constrained output";
      EXPECT_EQ(cold.finish, FinishReason::kEos);
      EXPECT_EQ(cached.finish, FinishReason::kEos);
      std::string text;
      for (int32_t t : cold.tokens) text += s.tokenizer->Piece(t);
      const ParsedToolCalls parsed = ParseToolCalls(syntax, text);
      ASSERT_EQ(parsed.calls.size(), 1u) << text;
      EXPECT_EQ(parsed.calls[0].name, "get_weather");
      const ojson args = ojson::parse(parsed.calls[0].arguments);
      EXPECT_TRUE(args["city"].is_string()) << text;
      EXPECT_TRUE(args["days"].is_number_integer()) << text;

      // Cut short by max_tokens: the sequence ends with kLength, as unconstrained ones do.
      GenerateRequest shortened = r;
      shortened.max_tokens = 3;
      shortened.constraint = MakeCallConstraint(texts, *grammar);
      const Outcome cut = Generate(*s.service, shortened);
      EXPECT_EQ(cut.finish, FinishReason::kLength);
      EXPECT_EQ(cut.tokens.size(), 3u);
      EXPECT_FALSE(shortened.constraint->IsComplete());
    }
  }
}

}  // namespace
}  // namespace prefixd
