#include "server/cache_breakpoints.h"

#include <gtest/gtest.h>

#include "server/anthropic_request.h"
#include "server/server_test_util.h"

namespace prefixd {
namespace {

constexpr RequestLimits kLimits{/*context_length=*/4096, /*vocab_size=*/32000};

Vocab TestVocab() {
  Vocab v;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.bos_id = 1;
  v.eos_id = 2;
  return v;
}

struct Located {
  RenderedChat chat;
  std::vector<size_t> ends;
  // The rendered text up to each end, and after it.
  std::string Before(size_t i) const { return chat.text.substr(0, ends[i]); }
  std::string After(size_t i) const { return chat.text.substr(ends[i]); }
};

// Parses an Anthropic body, renders it as BuildPrompt does and locates its breakpoints.
Located Locate(const ChatFormat& format, const std::string& body) {
  auto r = ParseMessagesRequest(body, kLimits, MessagesEndpoint::kCreate);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return {};
  auto chat = format.Render(r->messages, r->tools, r->chat_template_kwargs, BreakpointBlocks(format, *r));
  EXPECT_TRUE(chat.ok()) << chat.status();
  if (!chat.ok()) return {};
  Located out{*chat, BreakpointByteEnds(format, *r, *chat)};
  EXPECT_EQ(out.ends.size(), r->retention.breakpoints.size());
  return out;
}

const std::string kTools = R"("tools":[
  {"name":"get_weather","description":"Weather","input_schema":{"type":"object"},
   "cache_control":{"type":"ephemeral"}},
  {"name":"get_time","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],)";

// Qwen2.5 prints the system text, then the tools, inside one system message.
TEST(CacheBreakpoints, ToolsEndWhereTheirOwnDefinitionDoes) {
  ChatFormat f(ReadTestTemplate("qwen2.5-instruct.jinja"), TestVocab());
  ASSERT_STREQ(f.name(), "jinja");
  const Located l = Locate(f, R"({"max_tokens":8,)" + kTools + R"("system":"You help.",
    "messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_EQ(l.ends.size(), 2u);
  EXPECT_TRUE(l.Before(0).ends_with(R"("name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}})"))
      << l.Before(0);
  EXPECT_TRUE(l.After(0).starts_with("\n{\"type\": \"function\", \"function\": {\"name\": \"get_time\"")) << l.After(0);
  EXPECT_TRUE(l.After(1).starts_with("\n</tools>")) << l.After(1);
  EXPECT_LT(l.ends[1], l.chat.message_offsets[1]) << "not the end of the first message any more";
}

// A system breakpoint keeps what comes before it in Anthropic's order (the tools), wherever
// the template prints them; text blocks of one message end where their own text does.
TEST(CacheBreakpoints, TextBlocksEndAtTheirTextAndReachTheTools) {
  ChatFormat f(ReadTestTemplate("qwen2.5-instruct.jinja"), TestVocab());
  const Located with_tools = Locate(f, R"({"max_tokens":8,"tools":[{"name":"t","input_schema":{}}],
    "system":[{"type":"text","text":"You help.","cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_EQ(with_tools.ends.size(), 1u);
  EXPECT_TRUE(with_tools.After(0).starts_with("\n</tools>")) << with_tools.After(0);

  const Located l = Locate(f, R"({"max_tokens":8,
    "system":[{"type":"text","text":"You help. "},{"type":"text","text":"Briefly.","cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":[
      {"type":"text","text":"First part. ","cache_control":{"type":"ephemeral","ttl":"1h"}},
      {"type":"text","text":"Second part."}]},
      {"role":"assistant","content":"Sure."},
      {"role":"user","content":[{"type":"text","text":"More","cache_control":{"type":"ephemeral"}}]}]})");
  ASSERT_EQ(l.ends.size(), 3u);
  EXPECT_TRUE(l.Before(0).ends_with("You help. Briefly.")) << l.Before(0);
  EXPECT_TRUE(l.After(0).starts_with("<|im_end|>")) << l.After(0);
  EXPECT_TRUE(l.Before(1).ends_with("<|im_start|>user\nFirst part. ")) << l.Before(1);
  EXPECT_TRUE(l.After(1).starts_with("Second part.<|im_end|>")) << l.After(1);
  EXPECT_TRUE(l.Before(2).ends_with("<|im_start|>user\nMore")) << l.Before(2);
}

// Assistant blocks: a tool_use ends after its rendered call; text after a call keeps the call.
TEST(CacheBreakpoints, ToolUseEndsAfterItsCall) {
  ChatFormat f(ReadTestTemplate("qwen2.5-instruct.jinja"), TestVocab());
  const Located l = Locate(f, R"({"max_tokens":8,"messages":[{"role":"user","content":"Weather?"},
    {"role":"assistant","content":[{"type":"text","text":"Checking."},
      {"type":"tool_use","id":"a","name":"w","input":{"city":"Paris"},"cache_control":{"type":"ephemeral"}},
      {"type":"tool_use","id":"b","name":"w","input":{"city":"Rome"}},
      {"type":"text","text":" Done.","cache_control":{"type":"ephemeral"}}]},
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":"sunny",
      "cache_control":{"type":"ephemeral"}},{"type":"text","text":"Thanks"}]}]})");
  ASSERT_EQ(l.ends.size(), 3u);
  // Qwen2.5 prints arguments with tojson: they reach it as objects (chat_format.h).
  EXPECT_TRUE(l.Before(0).ends_with(R"({"name": "w", "arguments": {"city": "Paris"}}
</tool_call>)")) << l.Before(0);
  EXPECT_TRUE(l.After(0).starts_with(R"(
<tool_call>
{"name": "w", "arguments": {"city": "Rome"}})")) << l.After(0);
  EXPECT_TRUE(l.After(1).starts_with("<|im_end|>")) << "the text after the calls keeps both calls: " << l.After(1);
  EXPECT_TRUE(l.Before(2).ends_with("<tool_response>\nsunny")) << l.Before(2);
}

// The plain format prints no tools: a tool's breakpoint keeps nothing, others are unmoved.
TEST(CacheBreakpoints, ToolsATemplateDoesNotPrintKeepNothing) {
  ChatFormat f("", TestVocab());
  const Located l = Locate(f, R"({"max_tokens":8,"tools":[{"name":"t","input_schema":{},
    "cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":[{"type":"text","text":"Hi","cache_control":{"type":"ephemeral"}}]}]})");
  // Breakpoints are listed as the body is read: system, messages, then tools.
  ASSERT_EQ(l.ends.size(), 2u);
  EXPECT_EQ(l.Before(0), "User: Hi");
  EXPECT_EQ(l.ends[1], 0u);
}

// A template that prints the tools without a loop over them, and one that trims content so
// the sentinel cannot be placed: both fall back to the end of the message (the first one for
// tools).
TEST(CacheBreakpoints, WhatCannotBeLocatedFallsBackToTheMessageEnd) {
  ChatFormat f(
      "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}"
      "{% if loop.first and tools %}{{ tools | tojson }}{% endif %}</{{ m.role }}>{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}",
      TestVocab());
  const Located l = Locate(f, R"({"max_tokens":8,"tools":[{"name":"t","input_schema":{},
    "cache_control":{"type":"ephemeral"}}],
    "messages":[{"role":"user","content":[{"type":"text","text":"Hi ","cache_control":{"type":"ephemeral"}},
                                          {"type":"text","text":"there "}]},
                {"role":"assistant","content":"Yes"},
                {"role":"user","content":[{"type":"text","text":"a "},
                   {"type":"text","text":"b  ","cache_control":{"type":"ephemeral"}}]}]})");
  ASSERT_EQ(l.ends.size(), 3u);
  // "Hi " inside the content survives the trim, so it is located (and reaches the tools).
  EXPECT_EQ(l.ends[0], l.chat.message_offsets[1]);
  // "b  " ends the content: with the sentinel after it, trim keeps its spaces, so the check fails.
  EXPECT_EQ(l.ends[1], l.chat.generation_offset);
  EXPECT_EQ(l.After(1), "<assistant>");
  EXPECT_EQ(l.ends[2], l.chat.message_offsets[1]) << "tools printed without a loop: the first message's end";
}

TEST(CacheBreakpoints, LocatedTextInsideAMessageIsExact) {
  ChatFormat f(
      "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}",
      TestVocab());
  const Located l = Locate(f, R"({"max_tokens":8,"messages":[{"role":"user","content":[
    {"type":"text","text":"Hi ","cache_control":{"type":"ephemeral"}},{"type":"text","text":"there "}]}]})");
  ASSERT_EQ(l.ends.size(), 1u);
  EXPECT_EQ(l.Before(0), "<user>Hi ");
}

class CacheBreakpointTokens : public StoriesTokenizerTest {};

// Bytes to tokens: a token that crosses the block's end is inside it.
TEST_F(CacheBreakpointTokens, TokensCoverTheBytesUpToTheEnd) {
  const std::string text = "Once upon a time there was a cat.";
  EncodeOptions o;
  o.add_bos = false;
  o.add_eos = false;
  const std::vector<int32_t> tokens = tokenizer_->Encode(text, o);
  ASSERT_GT(tokens.size(), 4u);
  auto ends = TokenByteEnds(*tokenizer_, text, tokens);
  ASSERT_TRUE(ends.has_value());
  std::vector<size_t> offsets;
  for (size_t p = 0; p <= text.size(); ++p) offsets.push_back(p);
  const std::vector<int64_t> covering = TokensCoveringBytes(*tokenizer_, text, tokens, offsets);
  for (size_t p = 0; p <= text.size(); ++p) {
    // Reference: the fewest tokens whose bytes reach p.
    int64_t want = 0;
    while (p > 0 && (*ends)[static_cast<size_t>(want)] < p) ++want;
    if (p > 0) ++want;
    EXPECT_EQ(covering[p], want) << "offset " << p;
  }
  EXPECT_EQ(covering.back(), static_cast<int64_t>(tokens.size()));
}

}  // namespace
}  // namespace prefixd
