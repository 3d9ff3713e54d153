#include "server/chat_format.h"

#include <chrono>

#include <gtest/gtest.h>

#include "server/server_test_util.h"

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

// The generation prompt ends at "Assistant:" and a SentencePiece model's reply starts with a
// space: sent back, the reply renders as it was generated, not after a second space.
TEST(ChatFormat, PlainContentThatStartsWithASpaceFollowsTheColon) {
  ChatFormat f("", TestVocab());
  std::vector<ChatMessage> m = {{"user", "Hi", "", nullptr, ""}, {"assistant", " Once upon", "", nullptr, ""}};
  auto r = f.Render(m, NoJson(), NoJson());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "User: Hi\nAssistant: Once upon\nAssistant:");
}

// Arguments that are not a JSON object stay as sent; a template that prints a string of
// arguments as it is (Qwen3's `is string` branch) gets them as sent.
TEST(ChatFormat, ArgumentsBecomeObjectsOnlyForTemplatesThatEscapeThem) {
  const std::string prints_strings =
      "{% for m in messages %}{% for c in m.tool_calls or [] %}{% if c.function.arguments is string %}"
      "{{ c.function.arguments }}{% else %}{{ c.function.arguments | tojson }}{% endif %}{% endfor %}{% endfor %}";
  ChatFormat keeps(prints_strings, TestVocab());
  EXPECT_FALSE(keeps.object_arguments());
  std::vector<ChatMessage> m = {{"assistant", "", "", nullptr, ""}};
  m[0].tool_calls = nlohmann::ordered_json::parse(
      R"([{"id": "a", "function": {"name": "f", "arguments": "{\"b\":1,\"a\":2}"}},
          {"id": "b", "function": {"name": "f", "arguments": "not json"}}])");
  auto kept = keeps.Render(m, NoJson(), NoJson());
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->text, R"({"b":1,"a":2}not json)");
  ChatFormat escapes("{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.arguments | tojson }}"
                     "{% endfor %}{% endfor %}", TestVocab());
  EXPECT_TRUE(escapes.object_arguments());
  auto objects = escapes.Render(m, NoJson(), NoJson());
  ASSERT_TRUE(objects.ok()) << objects.status();
  EXPECT_EQ(objects->text, R"({"b": 1, "a": 2}"not json")") << "key order kept; a non-object string stays one";
  EXPECT_FALSE(ChatFormat("", TestVocab()).object_arguments()) << "the plain format prints no calls";
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
  // The template prints arguments with tojson: the string of JSON reaches it as the object.
  EXPECT_TRUE(f.object_arguments());
  EXPECT_EQ(r->text,
            "<s>[user]Hi[assistant][{\"id\": \"c1\", \"function\": {\"name\": \"f\", \"arguments\": {}}}]"
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

using ChatTokensTest = StoriesTokenizerTest;

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

// Counts what is encoded, to show that finding message starts encodes nothing more.
class CountingTokenizer : public Tokenizer {
 public:
  explicit CountingTokenizer(const Tokenizer& inner) : Tokenizer(inner.vocab()), inner_(inner) {}
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const override {
    bytes_encoded += text.size();
    return inner_.Encode(text, options);
  }
  std::string Piece(int32_t id) const override { return inner_.Piece(id); }
  mutable size_t bytes_encoded = 0;

 private:
  const Tokenizer& inner_;
};

// Chats with the texts that make tokenizers merge across boundaries: spaces, newlines, empty
// messages, non-ASCII, text that looks like the plain format's headers.
std::vector<std::vector<ChatMessage>> VariedChats() {
  std::vector<std::vector<ChatMessage>> chats = {Messages()};
  const char* texts[] = {"", " ", "  leading", "trailing  ", "a\nb\n", "\n", "héllo wörld ☃", "User: x",
                         "Assistant:", "Once upon a time, there was a little girl.", "12345", "x"};
  const char* roles[] = {"system", "user", "assistant", "tool"};
  uint32_t seed = 7;
  for (int c = 0; c < 30; ++c) {
    std::vector<ChatMessage> chat;
    const int n = 1 + c % 7;
    for (int i = 0; i < n; ++i) {
      seed = seed * 1103515245 + 12345;
      chat.push_back({roles[(seed >> 8) % 4], texts[(seed >> 12) % std::size(texts)], "", nullptr, ""});
    }
    chats.push_back(std::move(chat));
  }
  return chats;
}

// Issue 16: the starts come from one render and one encoding, and equal the old per-message
// re-encoding (MessageTokenStart) on normal chats, in the plain format and in ChatML.
TEST_F(ChatTokensTest, OneEncodingGivesTheStartsThatPrefixEncodingsGive) {
  const CountingTokenizer counting(*tokenizer_);
  const ChatTemplate chatml = ChatTemplate::ChatMl(tokenizer_->vocab());
  for (const auto& msgs : VariedChats()) {
    for (const bool plain : {true, false}) {
      StatusOr<RenderedChat> r = ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
      if (!plain) {
        ChatRenderInput in;
        for (const ChatMessage& m : msgs) in.messages.push_back(MessageJson(m));
        r = chatml.Render(in);
      }
      ASSERT_TRUE(r.ok()) << r.status();
      const std::vector<int32_t> tokens = tokenizer_->Encode(r->text, ChatEncodeOptions(*r));
      ASSERT_TRUE(TokenByteEnds(*tokenizer_, r->text, tokens).has_value()) << r->text;
      counting.bytes_encoded = 0;
      const ChatTokenStarts starts = FindChatTokenStarts(counting, *r, tokens);
      EXPECT_EQ(counting.bytes_encoded, 0u);
      EXPECT_EQ(starts.message_starts, MessageTokenStarts(*tokenizer_, *r, tokens)) << r->text;
      EXPECT_EQ(starts.generation_start, MessageTokenStart(*tokenizer_, *r, tokens, msgs.size())) << r->text;
      for (int64_t t = 0; t < static_cast<int64_t>(tokens.size()); ++t) {
        EXPECT_EQ(starts.MessageOf(t), MessageIndexOfToken(*tokenizer_, *r, tokens, t)) << t << " " << r->text;
      }
    }
  }
}

TEST_F(ChatTokensTest, TokensThatDoNotSpellTheTextFallBackToPrefixEncodings) {
  const std::vector<ChatMessage> msgs = Messages();
  const RenderedChat r = *ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
  std::vector<int32_t> tokens = tokenizer_->Encode(r.text, ChatEncodeOptions(r));
  tokens.push_back(tokens.back());  // one token too many: the pieces spell more than the text
  EXPECT_FALSE(TokenByteEnds(*tokenizer_, r.text, tokens).has_value());
  const ChatTokenStarts starts = FindChatTokenStarts(*tokenizer_, r, tokens);
  EXPECT_EQ(starts.message_starts, MessageTokenStarts(*tokenizer_, r, tokens));
}

TEST_F(ChatTokensTest, ALongChatWhosePiecesDoNotSpellItStaysLinear) {
  std::vector<ChatMessage> msgs;
  for (int i = 0; i < 11000; ++i) msgs.push_back({"user", "Once upon a time there was a dog " + std::to_string(i) + ".", "", nullptr, ""});
  const RenderedChat r = *ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
  std::vector<int32_t> tokens = tokenizer_->Encode(r.text, ChatEncodeOptions(r));
  tokens.push_back(tokens.back());  // the pieces no longer spell the text
  const CountingTokenizer counting(*tokenizer_);
  const ChatTokenStarts starts = FindChatTokenStarts(counting, r, tokens);
  EXPECT_EQ(counting.bytes_encoded, 0u);  // over the re-encoding budget: no prefix encoded
  ASSERT_EQ(starts.message_starts.size(), msgs.size());
  for (size_t i = 1; i < msgs.size(); ++i) EXPECT_GE(starts.message_starts[i], starts.message_starts[i - 1]);
  // The approximation is exact here but for the extra token at the end.
  EXPECT_EQ(starts.message_starts[5], MessageTokenStart(*tokenizer_, r, tokens, 5));
}

// Issue 16: 50,000 short messages cost 61 s when every message's start re-encoded the text
// before it. Now a 1 MB chat of 11,000 messages is rendered, encoded once and walked once.
TEST_F(ChatTokensTest, AMegabyteChatCostsTimeProportionalToItsSize) {
  std::vector<ChatMessage> msgs;
  for (int i = 0; i < 11000; ++i) {
    msgs.push_back({i % 2 ? "assistant" : "user",
                    "Once upon a time there was a little dog named " + std::to_string(i) +
                        ". He liked to play in the park with his ball.",
                    "", nullptr, ""});
  }
  const auto begin = std::chrono::steady_clock::now();
  const RenderedChat r = *ChatFormat("", tokenizer_->vocab()).Render(msgs, NoJson(), NoJson());
  ASSERT_GT(r.text.size(), size_t{1} << 20);
  const CountingTokenizer counting(*tokenizer_);
  const std::vector<int32_t> tokens = counting.Encode(r.text, ChatEncodeOptions(r));
  const ChatTokenStarts starts = FindChatTokenStarts(counting, r, tokens);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(counting.bytes_encoded, r.text.size());  // one encoding, nothing re-encoded
  ASSERT_EQ(starts.message_starts.size(), msgs.size());
  for (size_t i = 1; i < msgs.size(); ++i) EXPECT_GT(starts.message_starts[i], starts.message_starts[i - 1]);
  // Generous (sanitizer builds, a loaded machine); the quadratic way took minutes.
  EXPECT_LT(seconds, 60.0);
  // Spot checks against the old way, on messages near the start where it is cheap.
  for (size_t i : {1, 2, 3, 50}) EXPECT_EQ(starts.message_starts[i], MessageTokenStart(*tokenizer_, r, tokens, i)) << i;
}

}  // namespace
}  // namespace prefixd
