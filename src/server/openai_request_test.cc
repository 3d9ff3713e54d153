#include "server/openai_request.h"

#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/json_body.h"

namespace prefixd {
namespace {

constexpr RequestLimits kLimits{/*context_length=*/512, /*vocab_size=*/32000};

StatusOr<OpenAiRequest> Parse(ApiKind kind, std::string_view body) {
  return kind == ApiKind::kChat ? ParseChatRequest(body, kLimits)
                                : ParseCompletionRequest(body, kLimits);
}

struct BadCase {
  ApiKind kind;
  std::string body;
  std::string param;  // expected `param`; "" for errors about the body as a whole
};

constexpr ApiKind C = ApiKind::kCompletion;
constexpr ApiKind H = ApiKind::kChat;

// A chat body with `extra` fields after valid messages.
std::string Chat(const std::string& extra) {
  return R"({"model":"m","messages":[{"role":"user","content":"hi"}])" +
         (extra.empty() ? "" : "," + extra) + "}";
}
// A completion body with `extra` fields after a valid prompt.
std::string Cmpl(const std::string& extra) {
  return R"({"model":"m","prompt":"hi")" + (extra.empty() ? "" : "," + extra) + "}";
}

std::vector<BadCase> BadCases() {
  std::vector<BadCase> v = {
      // Not JSON, or not an object.
      {C, "", ""},
      {C, "{", ""},
      {C, "}", ""},
      {C, "nul", ""},
      {C, "null", ""},
      {C, "[]", ""},
      {C, "42", ""},
      {C, "\"prompt\"", ""},
      {C, "{\"prompt\":\"hi\",}", ""},
      {C, "{'prompt':'hi'}", ""},
      {C, "{\"prompt\": \"hi\"} trailing", ""},
      {H, "{\"messages\": [", "messages[0]"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"", "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"user\" \"content\": \"a\"}]}", "messages[0].role"},
      {C, "{\"prompt\": \"unterminated}", "prompt"},
      {C, "{\"prompt\": \"bad escape \\q\"}", "prompt"},
      {C, "{\"prompt\": \"lone surrogate \\udc00\"}", "prompt"},
      {C, "{\"prompt\": \"high surrogate \\ud800x\"}", "prompt"},
      // Invalid UTF-8, named by field.
      {C, "{\"prompt\": \"bad \xff byte\"}", "prompt"},
      {C, "{\"prompt\": \"overlong \xc0\xaf\"}", "prompt"},
      {C, "{\"prompt\": \"truncated \xe2\x82\"}", "prompt"},
      {C, "{\"prompt\": [\"ok\", \"bad \xfe\"]}", "prompt[1]"},
      {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", "messages[0].content"},
      {H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\x80\"}]}]}",
       "messages[0].content[0].text"},
      {H, Chat("\"stop\": [\"a\", \"\xff\"]"), "stop[1]"},
      {H, Chat("\"cache_salt\": \"\xc3\""), "cache_salt"},
      {H, Chat("\"model\": \"\xf8\x88\x80\x80\x80\""), "model"},
      {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"na\xffme\":1}]}", "messages[0].na"},
      // prompt
      {C, "{}", "prompt"},
      {C, "{\"prompt\": null}", "prompt"},
      {C, "{\"prompt\": \"\"}", "prompt"},
      {C, "{\"prompt\": []}", "prompt"},
      {C, "{\"prompt\": [[]]}", "prompt[0]"},
      {C, "{\"prompt\": [\"\"]}", "prompt[0]"},
      {C, "{\"prompt\": 5}", "prompt"},
      {C, "{\"prompt\": true}", "prompt"},
      {C, "{\"prompt\": {\"text\": \"hi\"}}", "prompt"},
      {C, "{\"prompt\": [\"a\", \"b\"]}", "prompt"},
      {C, "{\"prompt\": [[1, 2], [3]]}", "prompt"},
      {C, "{\"prompt\": [1, \"a\"]}", "prompt[1]"},
      {C, "{\"prompt\": [1, 2.5]}", "prompt[1]"},
      {C, "{\"prompt\": [-1]}", "prompt[0]"},
      {C, "{\"prompt\": [32000]}", "prompt[0]"},
      {C, "{\"prompt\": [1, 99999999999]}", "prompt[1]"},
      {C, "{\"prompt\": [[1, -5]]}", "prompt[0][1]"},
      {C, "{\"prompt\": [[1, \"x\"]]}", "prompt[0][1]"},
      {C, "{\"prompt\": [null]}", "prompt[0]"},
      {C, "{\"prompt\": [true]}", "prompt[0]"},
      {C, "{\"prompt\": [{}]}", "prompt[0]"},
      // messages
      {H, "{}", "messages"},
      {H, "{\"messages\": null}", "messages"},
      {H, "{\"messages\": []}", "messages"},
      {H, "{\"messages\": \"hi\"}", "messages"},
      {H, "{\"messages\": {\"role\": \"user\"}}", "messages"},
      {H, "{\"messages\": [\"hi\"]}", "messages[0]"},
      {H, "{\"messages\": [null]}", "messages[0]"},
      {H, "{\"messages\": [{}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": 1, \"content\": \"hi\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": \"\", \"content\": \"hi\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"system\", \"content\": null}]}", "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": {\"text\": \"x\"}}]}", "messages[0].content"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}", "messages[0].content[0]"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{}]}]}", "messages[0].content[0].type"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}",
       "messages[0].content[0].type"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": 3}]}]}", "messages[0].content[0].type"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "messages[0].content[0].text"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": 1}]}]}",
       "messages[0].content[0].text"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": [1]}]}",
       "messages[1].content[0]"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\", \"name\": 5}]}", "messages[0].name"},
      {H, "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\", \"tool_calls\": {}}]}",
       "messages[0].tool_calls"},
      {H, "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\", \"tool_call_id\": 7}]}",
       "messages[0].tool_call_id"},
      {H, "{\"messages\": [{\"role\": \"tool\"}]}", "messages[0].content"},
      // max_tokens and friends
      {C, Cmpl("\"max_tokens\": -1"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": 513"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": 1e12"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": \"16\""), "max_tokens"},
      {C, Cmpl("\"max_tokens\": 2.5"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": true"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": [16]"), "max_tokens"},
      {C, Cmpl("\"max_tokens\": 18446744073709551615"), "max_tokens"},
      {H, Chat("\"max_completion_tokens\": -5"), "max_completion_tokens"},
      {H, Chat("\"max_completion_tokens\": 100000"), "max_completion_tokens"},
      {H, Chat("\"max_completion_tokens\": \"x\""), "max_completion_tokens"},
      {C, Cmpl("\"n_predict\": -2"), "n_predict"},
      {C, Cmpl("\"n_predict\": 9999"), "n_predict"},
      {C, Cmpl("\"n_predict\": \"all\""), "n_predict"},
      // sampling
      {C, Cmpl("\"temperature\": -0.1"), "temperature"},
      {C, Cmpl("\"temperature\": 2.5"), "temperature"},
      {C, Cmpl("\"temperature\": \"hot\""), "temperature"},
      {C, Cmpl("\"temperature\": [1]"), "temperature"},
      {H, Chat("\"temperature\": true"), "temperature"},
      {C, Cmpl("\"top_p\": 1.5"), "top_p"},
      {C, Cmpl("\"top_p\": -1"), "top_p"},
      {C, Cmpl("\"top_p\": \"0.9\""), "top_p"},
      {C, Cmpl("\"top_k\": -2"), "top_k"},
      {C, Cmpl("\"top_k\": 1.5"), "top_k"},
      {C, Cmpl("\"top_k\": \"40\""), "top_k"},
      {C, Cmpl("\"min_p\": 2"), "min_p"},
      {C, Cmpl("\"min_p\": -0.5"), "min_p"},
      {C, Cmpl("\"min_p\": {}"), "min_p"},
      {C, Cmpl("\"seed\": \"42\""), "seed"},
      {C, Cmpl("\"seed\": 1.5"), "seed"},
      {C, Cmpl("\"seed\": 1e300"), "seed"},
      {H, Chat("\"frequency_penalty\": 3"), "frequency_penalty"},
      {H, Chat("\"presence_penalty\": \"x\""), "presence_penalty"},
      // stop
      {C, Cmpl("\"stop\": 5"), "stop"},
      {C, Cmpl("\"stop\": {\"a\": 1}"), "stop"},
      {C, Cmpl("\"stop\": [1]"), "stop[0]"},
      {C, Cmpl("\"stop\": [\"a\", null]"), "stop[1]"},
      {C, Cmpl("\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]"), "stop"},
      {H, Chat("\"stop\": true"), "stop"},
      // tool_choice: a forced call needs tools, and a named one must be among them.
      {H, Chat("\"tool_choice\": \"required\""), "tool_choice"},
      {H, Chat("\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}"), "tool_choice"},
      {H, Chat("\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"g\"}}], "
               "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}"),
       "tool_choice.function.name"},
      {H, Chat("\"tool_choice\": {\"type\": \"tool\", \"function\": {\"name\": \"f\"}}"), "tool_choice.type"},
      {H, Chat("\"tool_choice\": {\"type\": \"function\"}"), "tool_choice.function"},
      {H, Chat("\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": 1}}"),
       "tool_choice.function.name"},
      {H, Chat("\"tool_choice\": \"maybe\""), "tool_choice"},
      {H, Chat("\"tool_choice\": 3"), "tool_choice"},
      {H, Chat("\"parallel_tool_calls\": \"no\""), "parallel_tool_calls"},
      {H, Chat("\"stop\": [[\"a\"]]"), "stop[0]"},
      // n, best_of, echo, suffix
      {C, Cmpl("\"n\": 2"), "n"},
      {C, Cmpl("\"n\": 0"), "n"},
      {C, Cmpl("\"n\": -1"), "n"},
      {C, Cmpl("\"n\": \"1\""), "n"},
      {H, Chat("\"n\": 3"), "n"},
      {C, Cmpl("\"best_of\": 2"), "best_of"},
      {C, Cmpl("\"echo\": true"), "echo"},
      {C, Cmpl("\"echo\": \"no\""), "echo"},
      {C, Cmpl("\"suffix\": \"tail\""), "suffix"},
      {C, Cmpl("\"suffix\": 1"), "suffix"},
      // streaming
      {C, Cmpl("\"stream\": \"true\""), "stream"},
      {C, Cmpl("\"stream\": 1"), "stream"},
      {H, Chat("\"stream\": [true]"), "stream"},
      {H, Chat("\"stream\": true, \"stream_options\": true"), "stream_options"},
      {H, Chat("\"stream\": true, \"stream_options\": {\"include_usage\": \"yes\"}"),
       "stream_options.include_usage"},
      // logprobs
      {C, Cmpl("\"logprobs\": 6"), "logprobs"},
      {C, Cmpl("\"logprobs\": -1"), "logprobs"},
      {C, Cmpl("\"logprobs\": true"), "logprobs"},
      {C, Cmpl("\"logprobs\": \"5\""), "logprobs"},
      {H, Chat("\"logprobs\": 5"), "logprobs"},
      {H, Chat("\"logprobs\": \"true\""), "logprobs"},
      {H, Chat("\"logprobs\": true, \"top_logprobs\": 21"), "top_logprobs"},
      {H, Chat("\"logprobs\": true, \"top_logprobs\": -1"), "top_logprobs"},
      {H, Chat("\"top_logprobs\": 3"), "top_logprobs"},
      {H, Chat("\"logprobs\": false, \"top_logprobs\": 2"), "top_logprobs"},
      // extensions
      {C, Cmpl("\"cache_salt\": 5"), "cache_salt"},
      {H, Chat("\"cache_salt\": [\"a\"]"), "cache_salt"},
      {C, Cmpl("\"prefix_cache\": \"full\""), "prefix_cache"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": 5}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"everything\"}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"auto:\"}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"auto:x\"}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"auto:0\"}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"-5\"}"), "prefix_cache.scope"},
      {C, Cmpl("\"prefix_cache\": {\"window\": 0}"), "prefix_cache.window"},
      {C, Cmpl("\"prefix_cache\": {\"window\": \"30\"}"), "prefix_cache.window"},
      {C, Cmpl("\"prefix_cache\": {\"window\": 257}"), "prefix_cache.window"},
      {C, Cmpl("\"prefix_cache\": {\"scope\": \"auto:1000\"}"), "prefix_cache.scope"},
      {H, Chat("\"chat_template_kwargs\": []"), "chat_template_kwargs"},
      {H, Chat("\"chat_template_kwargs\": \"x\""), "chat_template_kwargs"},
      {H, Chat("\"tools\": {}"), "tools"},
      {H, Chat("\"tools\": \"search\""), "tools"},
      {C, Cmpl("\"model\": 5"), "model"},
      {H, Chat("\"model\": [\"m\"]"), "model"},
      {C, Cmpl("\"ignore_eos\": \"yes\""), "ignore_eos"},
  };
  return v;
}

TEST(OpenAiRequest, MalformedBodiesAreRejectedNamingTheField) {
  const std::vector<BadCase> cases = BadCases();
  ASSERT_GE(cases.size(), 100u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const BadCase& c = cases[i];
    SCOPED_TRACE(absl::StrCat("case ", i, ": ", c.body));
    auto r = Parse(c.kind, c.body);
    ASSERT_FALSE(r.ok());
    const int http = HttpStatusFor(r.status());
    EXPECT_GE(http, 400);
    EXPECT_LT(http, 500);
    EXPECT_EQ(ParamOf(r.status()), c.param) << r.status().message();
    const std::string msg(r.status().message());
    EXPECT_FALSE(msg.empty());
    if (!c.param.empty()) {
      EXPECT_NE(msg.find(c.param), std::string::npos) << msg;
    }
    // The error body serializes whatever the message holds.
    EXPECT_NO_THROW(ApiErrorBody(ApiErrorFrom(r.status())));
  }
}

TEST(OpenAiRequest, CompletionPromptForms) {
  auto a = ParseCompletionRequest(R"({"prompt":"Once upon"})", kLimits);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, ApiKind::kCompletion);
  EXPECT_EQ(*a->prompt_text, "Once upon");
  EXPECT_FALSE(a->prompt_tokens.has_value());

  auto b = ParseCompletionRequest(R"({"prompt":["Once upon"]})", kLimits);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b->prompt_text, "Once upon");

  auto c = ParseCompletionRequest(R"({"prompt":[1, 2, 3]})", kLimits);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c->prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(c->prompt_text.has_value());

  auto d = ParseCompletionRequest(R"({"prompt":[[5, 6]]})", kLimits);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d->prompt_tokens, (std::vector<int32_t>{5, 6}));
}

TEST(OpenAiRequest, TokenPromptLongerThanTheContextIsRejected) {
  std::string ids = "[";
  for (int i = 0; i < 512; ++i) ids += (i ? ",1" : "1");
  ids += "]";
  auto r = ParseCompletionRequest("{\"prompt\":" + ids + "}", kLimits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ParamOf(r.status()), "prompt");
  EXPECT_NE(r.status().message().find("context"), std::string::npos);
}

TEST(OpenAiRequest, DefaultsAndAllFields) {
  auto r = ParseCompletionRequest(R"({"prompt":"x"})", kLimits);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->max_tokens.has_value());
  EXPECT_EQ(r->temperature, 1.0f);
  EXPECT_EQ(r->top_p, 1.0f);
  EXPECT_EQ(r->top_k, 0);
  EXPECT_FALSE(r->seed.has_value());
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->logprobs);

  auto f = ParseCompletionRequest(R"({
      "model": "stories260K.gguf", "prompt": "x", "max_tokens": 32, "temperature": 0.5,
      "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": -3, "stop": ["\n", "The"], "n": 1,
      "stream": true, "stream_options": {"include_usage": true}, "logprobs": 3,
      "cache_salt": "tenant-a", "prefix_cache": {"scope": "auto:30", "window": 8},
      "echo": false, "best_of": 1, "suffix": "", "ignore_eos": true, "user": "u",
      "cache_prompt": true, "frequency_penalty": 0, "presence_penalty": 0.5})",
                                  kLimits);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->model, "stories260K.gguf");
  EXPECT_EQ(*f->max_tokens, 32);
  EXPECT_FLOAT_EQ(f->temperature, 0.5f);
  EXPECT_FLOAT_EQ(f->top_p, 0.9f);
  EXPECT_EQ(f->top_k, 40);
  EXPECT_FLOAT_EQ(f->min_p, 0.05f);
  EXPECT_EQ(*f->seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(f->stop, (std::vector<std::string>{"\n", "The"}));
  EXPECT_TRUE(f->stream);
  EXPECT_TRUE(f->include_usage);
  EXPECT_TRUE(f->logprobs);
  EXPECT_EQ(f->top_logprobs, 3);
  EXPECT_EQ(f->cache_salt, "tenant-a");
  ASSERT_TRUE(f->prefix_cache.scope.has_value());
  EXPECT_EQ(f->prefix_cache.scope->mode, RequestScope::Mode::kAuto);
  EXPECT_EQ(f->prefix_cache.scope->window, 8);  // the window wins over auto:30
  EXPECT_EQ(*f->prefix_cache.window, 8);
  EXPECT_TRUE(f->ignore_eos);
}

TEST(OpenAiRequest, PrefixCacheScope) {
  auto none = ParseCompletionRequest(Cmpl(""), kLimits);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->prefix_cache.scope.has_value());
  auto full = ParseCompletionRequest(Cmpl(R"("prefix_cache": {"scope": "full"})"), kLimits);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->prefix_cache.scope->mode, RequestScope::Mode::kFull);
  auto n = ParseCompletionRequest(Cmpl(R"("prefix_cache": {"scope": "1024"})"), kLimits);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->prefix_cache.scope->mode, RequestScope::Mode::kTokens);
  EXPECT_EQ(n->prefix_cache.scope->tokens, 1024);
  auto w = ParseCompletionRequest(Cmpl(R"("prefix_cache": {"window": 5})"), kLimits);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->prefix_cache.scope->mode, RequestScope::Mode::kAuto);
  EXPECT_EQ(w->prefix_cache.scope->window, 5);
  auto off = ParseCompletionRequest(Cmpl(R"("prefix_cache": {"scope": "off", "window": 5})"), kLimits);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->prefix_cache.scope->mode, RequestScope::Mode::kOff);
}

TEST(OpenAiRequest, MaxTokensPrecedenceAndLlamaCppNames) {
  auto a = ParseChatRequest(Chat(R"("max_tokens": 10, "max_completion_tokens": 20)"), kLimits);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a->max_tokens, 20);
  auto b = ParseCompletionRequest(Cmpl(R"("n_predict": 7)"), kLimits);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b->max_tokens, 7);
  auto c = ParseCompletionRequest(Cmpl(R"("n_predict": -1)"), kLimits);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->max_tokens.has_value());
  auto d = ParseCompletionRequest(Cmpl(R"("n_predict": 5, "max_tokens": 9)"), kLimits);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d->max_tokens, 9);
  auto e = ParseCompletionRequest(Cmpl(R"("max_tokens": 16.0)"), kLimits);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e->max_tokens, 16);
  auto z = ParseCompletionRequest(Cmpl(R"("max_tokens": 0)"), kLimits);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(*z->max_tokens, 0);
  auto full = ParseCompletionRequest(Cmpl(R"("max_tokens": 512)"), kLimits);
  ASSERT_TRUE(full.ok());
}

TEST(OpenAiRequest, NullMeansNotGiven) {
  auto r = ParseChatRequest(Chat(R"("max_tokens": null, "temperature": null, "stop": null,
      "n": null, "stream_options": null, "logprobs": null, "tools": null, "seed": null)"),
                            kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->max_tokens.has_value());
  EXPECT_TRUE(r->stop.empty());
}

TEST(OpenAiRequest, StopForms) {
  auto a = ParseCompletionRequest(Cmpl(R"("stop": "END")"), kLimits);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->stop, (std::vector<std::string>{"END"}));
  auto b = ParseCompletionRequest(Cmpl(R"("stop": ["", "x", ""])"), kLimits);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->stop, (std::vector<std::string>{"x"}));
  auto c = ParseCompletionRequest(Cmpl(R"("stop": [])"), kLimits);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->stop.empty());
}

TEST(OpenAiRequest, ChatMessageForms) {
  auto r = ParseChatRequest(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}],
       "name": "bob"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
       "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "content": "42", "tool_call_id": "c1"},
      {"role": "assistant"}],
      "tools": [{"type": "function", "function": {"name": "f"}}],
      "chat_template_kwargs": {"enable_thinking": false},
      "logprobs": true, "top_logprobs": 2})",
                            kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 5u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "Hello, world");
  EXPECT_EQ(r->messages[1].name, "bob");
  EXPECT_EQ(r->messages[2].content, "");
  EXPECT_TRUE(r->messages[2].tool_calls.is_array());
  EXPECT_EQ(r->messages[3].tool_call_id, "c1");
  EXPECT_TRUE(r->tools.is_array());
  EXPECT_TRUE(r->chat_template_kwargs.is_object());
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->top_logprobs, 2);
}

TEST(OpenAiRequest, UnicodeIsKept) {
  auto r = ParseChatRequest(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \xf0\x9f\x98\x80\"}]}",
      kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->messages[0].content, "caf\xc3\xa9 \xc3\xa9 \xf0\x9f\x98\x80 \xf0\x9f\x98\x80");
}

TEST(OpenAiRequest, ProbeBodies) {
  auto a = ParseProbeRequest(R"({"messages":[{"role":"user","content":"hi"}],"cache_salt":"s",
                                 "model":"x","tools":[]})",
                             kLimits);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, ApiKind::kChat);
  EXPECT_EQ(a->cache_salt, "s");
  EXPECT_EQ(a->model, "x");
  EXPECT_FALSE(a->probe_tokens);
  auto b = ParseProbeRequest(R"({"prompt":"hello","tokens":true})", kLimits);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->kind, ApiKind::kCompletion);
  EXPECT_TRUE(b->probe_tokens);
  EXPECT_FALSE(b->probe_block_hashes);
  auto c = ParseProbeRequest(R"({"prompt":[5,6,7],"block_hashes":true})", kLimits);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->probe_block_hashes);
  EXPECT_FALSE(ParseProbeRequest(R"({"prompt":"a","block_hashes":1})", kLimits).ok());
  auto bad = ParseProbeRequest(R"({"prompt":"hello","tokens":"yes"})", kLimits);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokens"), std::string::npos) << bad.status();
  EXPECT_FALSE(ParseProbeRequest(R"({})", kLimits).ok());
  EXPECT_FALSE(ParseProbeRequest(R"({"prompt":"a","messages":[{"role":"user","content":"b"}]})", kLimits).ok());
  EXPECT_FALSE(ParseProbeRequest(R"({"prompt":""})", kLimits).ok());
}

}  // namespace
}  // namespace prefixd

namespace prefixd {
namespace {

// `n` arrays, one inside the other.
std::string Nested(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

// The remote crash of issue 16: a body nesting 60,000 arrays in any field that reaches the
// chat template overflowed the stack. Each is refused by the parser, naming the field.
TEST(OpenAiRequest, DeepNestingIsRefusedWhileParsingInEveryField) {
  const std::string deep = Nested(60000);
  const struct {
    std::string body;
    std::string field;
  } cases[] = {
      {Chat(R"("tools":)" + deep), "tools"},
      {Chat(R"("chat_template_kwargs":{"x":)" + deep + "}"), "chat_template_kwargs"},
      {R"({"messages":[{"role":"assistant","content":null,"tool_calls":)" + deep + "}]}",
       "messages[0].tool_calls"},
      {Chat(R"("stop":)" + deep), "stop"},
  };
  for (const auto& c : cases) {
    auto r = ParseChatRequest(c.body, kLimits);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(HttpStatusFor(r.status()), 400);
    EXPECT_EQ(ParamOf(r.status()).rfind(c.field, 0), 0u) << ParamOf(r.status());
    EXPECT_NE(r.status().message().find("the limit is 64"), std::string::npos) << r.status().message();
  }
  auto probe = ParseProbeRequest(R"({"messages":[{"role":"user","content":"x"}],"tools":)" + deep + "}",
                                 RequestLimits{0, 32000});
  ASSERT_FALSE(probe.ok());
  EXPECT_EQ(ParamOf(probe.status()).rfind("tools", 0), 0u);
  auto completion = ParseCompletionRequest(Cmpl(R"("prompt_x":)" + deep), kLimits);
  EXPECT_FALSE(completion.ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":" + deep + "}").ok());
  EXPECT_FALSE(ParseOrderedJsonObject("{\"a\":" + deep + "}").ok());
}

TEST(OpenAiRequest, ToolsKeepTheirKeyOrderAndStayWithinTheirBytes) {
  auto r = ParseChatRequest(Chat(R"("tools":[{"z":1,"a":{"y":2,"b":3}}],"chat_template_kwargs":{"q":1,"c":2})"),
                            kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tools.dump(), R"([{"z":1,"a":{"y":2,"b":3}}])");
  EXPECT_EQ(r->chat_template_kwargs.dump(), R"({"q":1,"c":2})");
  RequestLimits small = kLimits;
  small.max_tools_bytes = 100;
  const std::string big = R"([{"description":")" + std::string(200, 'x') + R"("}])";
  auto t = ParseChatRequest(Chat(R"("tools":)" + big), small);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(ParamOf(t.status()), "tools");
  EXPECT_NE(t.status().message().find("the limit is 100 bytes"), std::string::npos);
  auto c = ParseChatRequest(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":)" +
                                big + "}]}",
                            small);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(ParamOf(c.status()), "messages[1].tool_calls");
}

TEST(OpenAiRequest, MessageCountIsLimited) {
  RequestLimits small = kLimits;
  small.max_messages = 3;
  std::string body = R"({"messages":[)";
  for (int i = 0; i < 4; ++i) body += std::string(i ? "," : "") + R"({"role":"user","content":"x"})";
  body += "]}";
  auto r = ParseChatRequest(body, small);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ParamOf(r.status()), "messages");
  EXPECT_NE(r.status().message().find("the limit is 3"), std::string::npos);
  small.max_messages = 4;
  EXPECT_TRUE(ParseChatRequest(body, small).ok());
}

TEST(OpenAiRequest, ForcedToolChoiceRequiredAndNamed) {
  const std::string tools =
      R"("tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},)"
      R"( {"type": "function", "function": {"name": "g"}}], )";
  auto required = ParseChatRequest(Chat(tools + R"("tool_choice": "required")"), kLimits);
  ASSERT_TRUE(required.ok()) << required.status();
  EXPECT_EQ(required->tool_choice, ToolChoice::kRequired);
  EXPECT_EQ(required->tool_schema_field, "function.parameters");
  EXPECT_TRUE(required->parallel_tool_calls);  // OpenAI's default
  auto named = ParseChatRequest(
      Chat(tools + R"("tool_choice": {"type": "function", "function": {"name": "g"}}, "parallel_tool_calls": false)"),
      kLimits);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->tool_choice, ToolChoice::kNamed);
  EXPECT_EQ(named->tool_choice_name, "g");
  EXPECT_FALSE(named->parallel_tool_calls);
  auto unknown = ParseChatRequest(Chat(tools + R"("tool_choice": {"type": "function", "function": {"name": "h"}})"), kLimits);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(ParamOf(unknown.status()), "tool_choice.function.name");
  EXPECT_NE(unknown.status().message().find("'h', which is not among the request's tools (f, g)"), std::string::npos)
      << unknown.status();
}

}  // namespace
}  // namespace prefixd
