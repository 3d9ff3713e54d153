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

TEST(ChatFormat, DetectsTemplates) {
  EXPECT_EQ(ChatFormat::FromTemplate("").kind(), ChatTemplateKind::kPlain);
  EXPECT_EQ(ChatFormat::FromTemplate("{% for m in messages %}<|im_start|>{{ m.role }}").kind(),
            ChatTemplateKind::kChatMl);
  EXPECT_EQ(ChatFormat::FromTemplate("{{ bos_token }}<|start_header_id|>").kind(),
            ChatTemplateKind::kLlama3);
  EXPECT_EQ(ChatFormat::FromTemplate("{{ bos_token + '[INST] ' }}").kind(), ChatTemplateKind::kLlama2);
  EXPECT_EQ(ChatFormat::FromTemplate("{{ something else }}").kind(), ChatTemplateKind::kPlain);
}

TEST(ChatFormat, PlainFallback) {
  RenderedChat r = ChatFormat(ChatTemplateKind::kPlain).Render(Messages());
  EXPECT_EQ(r.text,
            "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Tell me a story.\nAssistant:");
  EXPECT_EQ(r.message_offsets, (std::vector<size_t>{0, 18, 27, 45}));
  EXPECT_EQ(r.generation_offset, r.text.size() - std::string("Assistant:").size());
}

TEST(ChatFormat, ChatMl) {
  RenderedChat r = ChatFormat(ChatTemplateKind::kChatMl).Render(Messages());
  EXPECT_EQ(r.text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n"
            "<|im_start|>assistant\n");
  ASSERT_EQ(r.message_offsets.size(), 4u);
  EXPECT_EQ(r.text.substr(r.message_offsets[1], 16), "<|im_start|>user");
  EXPECT_EQ(r.text.substr(r.generation_offset), "<|im_start|>assistant\n");
}

TEST(ChatFormat, Llama3TrimsContent) {
  std::vector<ChatMessage> m = {{"user", "  Hi \n", "", nullptr, ""}};
  RenderedChat r = ChatFormat(ChatTemplateKind::kLlama3).Render(m);
  EXPECT_EQ(r.text,
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatFormat, Llama2) {
  RenderedChat r = ChatFormat(ChatTemplateKind::kLlama2).Render(Messages());
  EXPECT_EQ(r.text,
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Tell me a story. [/INST]");
  EXPECT_EQ(r.text.substr(r.message_offsets[3], 7), "[INST] ");
  EXPECT_EQ(r.generation_offset, r.text.size());
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
  RenderedChat r = ChatFormat(ChatTemplateKind::kPlain).Render(msgs);
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
  RenderedChat r = ChatFormat(ChatTemplateKind::kPlain).Render(msgs);
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
  ChatFormat f(ChatTemplateKind::kPlain);
  const RenderedChat ra = f.Render(a), rb = f.Render(b);
  const auto ta = tokenizer_->Encode(ra.text, PromptEncodeOptions());
  const auto tb = tokenizer_->Encode(rb.text, PromptEncodeOptions());
  const int64_t start = std::min(MessageTokenStart(*tokenizer_, rb, tb, a.size()),
                                 MessageTokenStart(*tokenizer_, ra, ta, a.size()));
  ASSERT_GT(start, 0);
  EXPECT_TRUE(std::equal(tb.begin(), tb.begin() + start, ta.begin()));
}

}  // namespace
}  // namespace prefixd
