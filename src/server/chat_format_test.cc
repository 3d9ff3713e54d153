#include "server/chat_format.h"

#include <gtest/gtest.h>

#include "engine/vocab_loader.h"
#include "model/gguf_file.h"

namespace prefixd {
namespace {

std::vector<ChatMessage> Messages() {
  return {{"system", "Be brief.", "", nullptr, ""},
          {"user", "Hi", "", nullptr, ""},
          {"assistant", "Hello!", "", nullptr, ""},
          {"user", "Tell me a story.", "", nullptr, ""}};
}

Vocab TestVocab() {
  Vocab v;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.scores = {0, 0, 0};
  v.token_types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.bos_id = 1;
  v.eos_id = 2;
  return v;
}

nlohmann::ordered_json NoJson() { return nullptr; }

TEST(ChatFormat, NoTemplateIsPlain) {
  ChatFormat f("", TestVocab());
  EXPECT_STREQ(f.name(), "plain");
  auto r = f.Render(Messages(), NoJson(), NoJson());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text,
            "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Tell me a story.\nAssistant:");
  EXPECT_EQ(r->message_offsets, (std::vector<size_t>{0, 18, 27, 45}));
  EXPECT_EQ(r->generation_offset, r->text.size() - std::string("Assistant:").size());
}

TEST(ChatFormat, RunsTheModelsTemplateWithToolsAndKwargs) {
  ChatFormat f(
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}"
      "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}{% endfor %}"
      "{% if tools %}<tools>{{ tools | tojson }}{% endif %}{% if flag %}<flag>{% endif %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}",
      TestVocab());
  EXPECT_STREQ(f.name(), "jinja");
  std::vector<ChatMessage> m = {{"user", "Hi", "", nullptr, ""}, {"assistant", "", "", nullptr, ""}};
  m[1].tool_calls = nlohmann::ordered_json::parse(R"([{"id": "c1", "function": {"name": "f", "arguments": "{}"}}])");
  auto tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  auto r = f.Render(m, tools, {{"flag", true}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text,
            "<s>[user]Hi[assistant][{\"id\": \"c1\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}}]"
            "<tools>[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]<flag>[assistant]");
  EXPECT_TRUE(r->starts_with_bos);
  EXPECT_EQ(r->message_offsets, (std::vector<size_t>{0, 11}));
  EXPECT_FALSE(ChatEncodeOptions(*r).add_bos.value_or(true));
}

TEST(ChatFormat, TemplateRefusalIsAnError) {
  ChatFormat f("{{ raise_exception('no system messages') }}", TestVocab());
  auto r = f.Render(Messages(), NoJson(), NoJson());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("no system messages"), std::string::npos);
}

TEST(ChatFormat, UnsupportedTemplateFallsBackToChatMl) {
  ChatFormat f("{{ messages | frobnicate }}", TestVocab());
  EXPECT_STREQ(f.name(), "chatml");
  EXPECT_NE(f.chat_template().fallback_reason().find("unknown filter 'frobnicate'"), std::string::npos);
  auto r = f.Render(Messages(), NoJson(), NoJson());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(r->text.substr(r->message_offsets[1], 16), "<|im_start|>user");
  EXPECT_EQ(r->text.substr(r->generation_offset), "<|im_start|>assistant\n");
}

TEST(ChatFormat, TemplateFailingAtRenderTimeFallsBackToChatMl) {
  // Parses, but calls a method this subset lacks.
  ChatFormat f("{% for m in messages %}{{ m.content.zfill(3) }}{% endfor %}", TestVocab());
  EXPECT_STREQ(f.name(), "jinja");
  auto r = f.Render(Messages(), NoJson(), NoJson());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->used_fallback);
  EXPECT_TRUE(r->text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
}

TEST(ChatFormat, MessageJson) {
  ChatMessage m{"tool", "42", "calc", nullptr, "call_1"};
  EXPECT_EQ(MessageJson(m).dump(), R"({"role":"tool","content":"42","name":"calc","tool_call_id":"call_1"})");
}

class ChatTokensTest : public ::testing::Test {
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

TEST_F(ChatTokensTest, MessageStartsAreMonotoneAndMatchPrefixes) {
  const std::vector<ChatMessage> msgs = Messages();
  RenderedChat r = *ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
  const std::vector<int32_t> tokens = tokenizer_->Encode(r.text, PromptEncodeOptions());
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens[0], tokenizer_->bos_id());
  int64_t prev = 0;
  for (size_t i = 0; i <= msgs.size(); ++i) {
    const int64_t start = MessageTokenStart(*tokenizer_, r, tokens, i);
    EXPECT_GE(start, prev) << i;
    EXPECT_LE(start, static_cast<int64_t>(tokens.size()));
    if (i > 0) {
      // The tokens before the start encode a prefix of the text before the message.
      const size_t off = i < msgs.size() ? r.message_offsets[i] : r.generation_offset;
      const auto head = tokenizer_->Encode(r.text.substr(0, off), PromptEncodeOptions());
      ASSERT_GE(head.size(), static_cast<size_t>(start));
      EXPECT_TRUE(std::equal(tokens.begin(), tokens.begin() + start, head.begin()));
    }
    prev = start;
  }
  EXPECT_EQ(MessageTokenStart(*tokenizer_, r, tokens, 0), 0);
}

TEST_F(ChatTokensTest, MessageIndexOfToken) {
  const std::vector<ChatMessage> msgs = Messages();
  RenderedChat r = *ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
  const std::vector<int32_t> tokens = tokenizer_->Encode(r.text, PromptEncodeOptions());
  std::vector<int64_t> starts;
  for (size_t i = 0; i <= msgs.size(); ++i) starts.push_back(MessageTokenStart(*tokenizer_, r, tokens, i));
  for (int64_t t = 0; t < static_cast<int64_t>(tokens.size()); ++t) {
    int64_t expected = 0;
    for (size_t i = 0; i < starts.size(); ++i) {
      if (starts[i] <= t) expected = static_cast<int64_t>(i);
    }
    EXPECT_EQ(MessageIndexOfToken(*tokenizer_, r, tokens, t), expected) << t;
  }
  // Tokens of the first message are in message 0, the last token in the generation prompt.
  EXPECT_EQ(MessageIndexOfToken(*tokenizer_, r, tokens, 0), 0);
  EXPECT_EQ(MessageIndexOfToken(*tokenizer_, r, tokens, static_cast<int64_t>(tokens.size()) - 1),
            static_cast<int64_t>(msgs.size()));
}

TEST_F(ChatTokensTest, SharedHistoryGivesSharedTokens) {
  // A conversation that grows by a turn re-renders to the same leading tokens.
  std::vector<ChatMessage> a = Messages();
  std::vector<ChatMessage> b = a;
  b.push_back({"assistant", "Once upon a time.", "", nullptr, ""});
  b.push_back({"user", "More.", "", nullptr, ""});
  ChatFormat f("", tokenizer_->vocab());
  const RenderedChat ra = *f.Render(a, NoJson(), NoJson()), rb = *f.Render(b, NoJson(), NoJson());
  const auto ta = tokenizer_->Encode(ra.text, PromptEncodeOptions());
  const auto tb = tokenizer_->Encode(rb.text, PromptEncodeOptions());
  const int64_t start = std::min(MessageTokenStart(*tokenizer_, rb, tb, a.size()),
                                 MessageTokenStart(*tokenizer_, ra, ta, a.size()));
  ASSERT_GT(start, 0);
  EXPECT_TRUE(std::equal(tb.begin(), tb.begin() + start, ta.begin()));
}

}  // namespace
}  // namespace prefixd
