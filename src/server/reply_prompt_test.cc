#include "server/reply_prompt.h"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "server/anthropic_request.h"
#include "server/anthropic_response.h"
#include "server/chat_format.h"
#include "server/completion_stream.h"
#include "server/openai_response.h"
#include "server/server_test_util.h"
#include "tokenizer/utf8_sanitizer.h"

namespace prefixd {
namespace {

EncodeOptions Continuation() {
  EncodeOptions o = PromptEncodeOptions();
  o.add_bos = false;
  o.continuation = true;
  return o;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool StartsWith(const std::vector<int32_t>& v, const std::vector<int32_t>& prefix) {
  return v.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), v.begin());
}

ChatMessage Msg(std::string role, std::string content) { return {std::move(role), std::move(content), "", nullptr, ""}; }

class ReplyPromptTest : public StoriesTokenizerTest {
 protected:
  // The ids a model could have generated for `text` (which starts with a space): one per
  // character, a spelling the encoder never picks for a whole word.
  std::vector<int32_t> CharByChar(const std::string& text) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size(); ++i) {
      const std::vector<int32_t> one = tokenizer_->Encode(text.substr(i, 1), Continuation());
      ids.insert(ids.end(), one.begin(), one.end());
    }
    return ids;
  }
};

TEST_F(ReplyPromptTest, AReplyKeepsTheIdsThatSpellItUpToAStopStringCut) {
  const std::vector<int32_t> ids = tokenizer_->Encode(" Once upon a time", Continuation());
  ASSERT_GE(ids.size(), 4u);
  GeneratedReply whole = MakeGeneratedReply(*tokenizer_, " Once upon a time", ids, "Assistant:");
  EXPECT_EQ(whole.tokens, ids);
  EXPECT_EQ(whole.covered_bytes(), whole.text.size());
  EXPECT_EQ(whole.prompt_tail, "Assistant:");
  // A stop string cut the text inside the last word: its token is left out.
  GeneratedReply cut = MakeGeneratedReply(*tokenizer_, " Once upon a ti", ids, "");
  EXPECT_EQ(cut.tokens, std::vector<int32_t>(ids.begin(), ids.end() - 1));
  EXPECT_EQ(cut.covered_bytes(), std::string(" Once upon a").size());
  // The prompt tail keeps its last 256 bytes.
  EXPECT_EQ(MakeGeneratedReply(*tokenizer_, " Once", ids, std::string(300, 'x') + "END").prompt_tail.size(), 256u);
}

TEST_F(ReplyPromptTest, FindsTheWholeReplyAfterItsGenerationPrompt) {
  GeneratedReply r = MakeGeneratedReply(*tokenizer_, " hi", tokenizer_->Encode(" hi", Continuation()), "Assistant:");
  // " hi" occurs first inside the user's line; the place after "Assistant:" wins.
  const std::string text = "User: say hi\nAssistant: hi\n";
  auto span = FindReplySpan(text, 0, text.size(), r);
  ASSERT_TRUE(span.has_value());
  EXPECT_EQ(span->text_begin, text.find("Assistant:") + 10);
  EXPECT_EQ(span->token_begin, 0u);
  EXPECT_EQ(span->token_end, r.tokens.size());
  // Without a tail, the first place.
  r.prompt_tail.clear();
  span = FindReplySpan(text, 0, text.size(), r);
  ASSERT_TRUE(span.has_value());
  EXPECT_EQ(span->text_begin, text.find(" hi"));
  // Only within [begin, end).
  EXPECT_FALSE(FindReplySpan(text, 0, 8, r).has_value());
}

TEST_F(ReplyPromptTest, ATemplateThatTrimsTheReplyKeepsItsWholeTokensInside) {
  const std::string reply = " Once upon a time ";
  GeneratedReply r = MakeGeneratedReply(*tokenizer_, reply, CharByChar(reply), "");
  ASSERT_EQ(r.tokens.size(), reply.size());
  const std::string text = "<header>\n\nOnce upon a time<end>";  // Llama 3's `| trim`
  auto span = FindReplySpan(text, 0, text.size(), r);
  ASSERT_TRUE(span.has_value());
  EXPECT_EQ(span->token_begin, 1u);              // the leading space's token is gone
  EXPECT_EQ(span->token_end, reply.size() - 1);  // and the trailing one
  EXPECT_EQ(text.substr(span->text_begin, span->text_end - span->text_begin), "Once upon a time");
  // Nothing of it in the text. One character near its end would do (these ids are one per
  // character); runs that end more than 4 tokens before the reply's end are not tried.
  EXPECT_FALSE(FindReplySpan("#1#2#", 0, 5, r).has_value());
  EXPECT_FALSE(FindReplySpan("#1#a#", 0, 5, r).has_value());
  auto near_end = FindReplySpan("#1#e#", 0, 5, r);
  ASSERT_TRUE(near_end.has_value());
  EXPECT_EQ(near_end->text_begin, 3u);
}

// The point of it all: the next turn's prompt starts with the previous prompt and then the
// reply's generated ids, whatever spelling the model chose.
TEST_F(ReplyPromptTest, TheNextPromptContinuesThePreviousPromptWithTheGeneratedIds) {
  ChatFormat plain("", tokenizer_->vocab());
  std::vector<ChatMessage> turn1 = {Msg("user", "Tell me a story.")};
  auto chat1 = plain.Render(turn1, nullptr, nullptr);
  ASSERT_TRUE(chat1.ok());
  const std::vector<int32_t> prompt1 = tokenizer_->Encode(chat1->text, ChatEncodeOptions(*chat1));

  const std::string reply = " Once upon a time";
  const std::vector<int32_t> generated = CharByChar(reply);
  ASSERT_NE(generated, tokenizer_->Encode(reply, Continuation()));
  ReplyRecord record({});
  record.Insert("salt", reply, MakeGeneratedReply(*tokenizer_, reply, generated,
                                           std::string_view(chat1->text).substr(chat1->generation_offset)));

  std::vector<ChatMessage> turn2 = {turn1[0], Msg("assistant", reply), Msg("user", "More.")};
  auto chat2 = plain.Render(turn2, nullptr, nullptr);
  ASSERT_TRUE(chat2.ok());
  ASSERT_NE(chat2->text.find("Assistant: Once upon a time\n"), std::string::npos) << chat2->text;
  ChatPromptTokens with = EncodeChatWithReplies(*tokenizer_, *chat2, turn2, record, "salt", true);
  EXPECT_TRUE(StartsWith(with.tokens, Concat(prompt1, generated)));
  EXPECT_EQ(with.replies.num_messages, 1);
  EXPECT_EQ(with.replies.num_tokens, static_cast<int64_t>(generated.size()));
  EXPECT_EQ(with.replies.matches_text_encoding, std::optional<bool>(false));
  // The rest is the template's tail and the next turn, encoded as continuing text.
  const size_t after = chat2->text.find(reply) + reply.size();
  EXPECT_EQ(with.tokens, Concat(Concat(prompt1, generated), tokenizer_->Encode(chat2->text.substr(after), Continuation())));
  // Message starts still come out of the pieces: the reply's message starts where the
  // previous prompt's generation prompt did, the next one after the reply.
  ChatTokenStarts starts = FindChatTokenStarts(*tokenizer_, *chat2, with.tokens);
  EXPECT_EQ(starts.message_starts[1], FindChatTokenStarts(*tokenizer_, *chat1, prompt1).generation_start);
  EXPECT_GT(starts.message_starts[2], static_cast<int64_t>(prompt1.size() + generated.size()) - 1);

  // Another salt, or the text changed by one byte: encoded as text.
  const std::vector<int32_t> as_text = tokenizer_->Encode(chat2->text, ChatEncodeOptions(*chat2));
  ChatPromptTokens other = EncodeChatWithReplies(*tokenizer_, *chat2, turn2, record, "other", true);
  EXPECT_EQ(other.tokens, as_text);
  EXPECT_EQ(other.replies.num_messages, 0);
  turn2[1].content += " ";
  auto chat3 = plain.Render(turn2, nullptr, nullptr);
  ASSERT_TRUE(chat3.ok());
  EXPECT_EQ(EncodeChatWithReplies(*tokenizer_, *chat3, turn2, record, "salt", true).replies.num_messages, 0);
}

// Where the generated ids are the ones the encoder picks, the prompt is exactly the encoding
// of its text: the feature changes nothing but what the cache can serve.
TEST_F(ReplyPromptTest, IdsTheEncoderWouldPickGiveTheTextEncoding) {
  ChatFormat plain("", tokenizer_->vocab());
  const std::string reply = " The cat sat.";
  std::vector<ChatMessage> chat = {Msg("user", "Hi"), Msg("assistant", reply), Msg("user", "And?"),
                                   Msg("assistant", reply), Msg("user", "Again?")};
  auto rendered = plain.Render(chat, nullptr, nullptr);
  ASSERT_TRUE(rendered.ok());
  ReplyRecord record({});
  record.Insert("", reply, MakeGeneratedReply(*tokenizer_, reply, tokenizer_->Encode(reply, Continuation()), "Assistant:"));
  ChatPromptTokens t = EncodeChatWithReplies(*tokenizer_, *rendered, chat, record, "", false);
  EXPECT_EQ(t.replies.num_messages, 2);  // the same reply, sent back twice
  EXPECT_EQ(t.replies.matches_text_encoding, std::optional<bool>(true));
  EXPECT_EQ(t.tokens, tokenizer_->Encode(rendered->text, ChatEncodeOptions(*rendered)));
}

// A reply that made a tool call comes back as a message with the call's id and its JSON; the
// template writes the call as the model did (here Qwen2.5's <tool_call> form), so the whole
// reply, call included, is taken as generated.
TEST_F(ReplyPromptTest, AToolCallReplyIsFoundByItsCallIds) {
  const std::string source = ReadTestTemplate("qwen2.5-instruct.jinja");
  ASSERT_FALSE(source.empty());
  ChatFormat qwen(source, tokenizer_->vocab());
  std::vector<ChatMessage> turn1 = {Msg("user", "Weather in Paris?")};
  auto chat1 = qwen.Render(turn1, nullptr, nullptr);
  ASSERT_TRUE(chat1.ok()) << chat1.status();
  const std::vector<int32_t> prompt1 = tokenizer_->Encode(chat1->text, ChatEncodeOptions(*chat1));

  const std::string raw = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  const std::vector<int32_t> generated = CharByChar(raw);
  const std::vector<std::string> ids = {"call_abc"};
  ReplyRecord record({});
  record.Insert("", ReplyKey("", ids),
                MakeGeneratedReply(*tokenizer_, raw, generated,
                                   std::string_view(chat1->text).substr(chat1->generation_offset)));

  ChatMessage call = Msg("assistant", "");
  call.tool_calls = nlohmann::ordered_json::parse(
      R"([{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])");
  ChatMessage result = Msg("tool", "21 C");
  result.tool_call_id = "call_abc";
  std::vector<ChatMessage> turn2 = {turn1[0], call, result};
  auto chat2 = qwen.Render(turn2, nullptr, nullptr);
  ASSERT_TRUE(chat2.ok()) << chat2.status();
  ChatPromptTokens t = EncodeChatWithReplies(*tokenizer_, *chat2, turn2, record, "", true);
  EXPECT_EQ(t.replies.num_messages, 1);
  EXPECT_EQ(t.replies.num_tokens, static_cast<int64_t>(generated.size()));
  EXPECT_TRUE(StartsWith(t.tokens, Concat(prompt1, generated))) << chat2->text;

  // Another id is another reply.
  turn2[1].tool_calls[0]["id"] = "call_xyz";
  auto chat3 = qwen.Render(turn2, nullptr, nullptr);
  ASSERT_TRUE(chat3.ok());
  EXPECT_EQ(EncodeChatWithReplies(*tokenizer_, *chat3, turn2, record, "", true).replies.num_messages, 0);
}

// A tool-call turn end to end through the server's own pieces, in both dialects. The test
// models cannot write a tool call, so the generated text and ids are given; everything else
// is the real path: the dialect's response writer parses the call and gives it its id, the
// reply is recorded under GeneratedReplyKey as GenerationJob records it, and the client's next
// request (the answer's call sent back as the official clients send it, with a tool result) is
// parsed, rendered with Qwen2.5's template and encoded as ServerContext::BuildPrompt does. The
// whole reply, call included, comes back as the generated ids, right after the first prompt.
TEST_F(ReplyPromptTest, AToolCallReplyIsReusedInBothDialects) {
  const std::string source = ReadTestTemplate("qwen2.5-instruct.jinja");
  ASSERT_FALSE(source.empty());
  const ChatFormat qwen(source, tokenizer_->vocab());
  ASSERT_TRUE(qwen.object_arguments()) << "Qwen2.5 prints arguments with tojson";
  constexpr RequestLimits kLimits{/*context_length=*/4096, /*vocab_size=*/32000};
  const std::string raw = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  const std::vector<int32_t> generated = CharByChar(raw);
  using json = nlohmann::json;
  const json schema = json::parse(R"({"type":"object","properties":{"city":{"type":"string"}}})");
  const json question = {{"role", "user"}, {"content", "Weather in Paris?"}};

  for (const bool anthropic : {false, true}) {
    SCOPED_TRACE(anthropic ? "Anthropic" : "OpenAI");
    json body = {{"messages", json::array({question})}};
    if (anthropic) {
      body["max_tokens"] = 16;
      body["tools"] = json::array({{{"name", "get_weather"}, {"input_schema", schema}}});
    } else {
      body["tools"] = json::array({{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", schema}}}}});
    }
    auto parse = [&](const json& b) {
      return anthropic ? ParseMessagesRequest(b.dump(), kLimits, MessagesEndpoint::kCreate) : ParseChatRequest(b.dump(), kLimits);
    };
    auto r1 = parse(body);
    ASSERT_TRUE(r1.ok()) << r1.status();
    auto chat1 = qwen.Render(r1->messages, r1->tools, r1->chat_template_kwargs);
    ASSERT_TRUE(chat1.ok()) << chat1.status();
    const std::vector<int32_t> prompt1 = tokenizer_->Encode(chat1->text, ChatEncodeOptions(*chat1));

    // The answer, as the writer makes it, and the reply recorded as GenerationJob does.
    std::unique_ptr<ResponseWriter> writer;
    if (anthropic) {
      writer = std::make_unique<AnthropicWriter>("msg_1", "m");
    } else {
      writer = std::make_unique<OpenAiWriter>(ResponseMeta{ApiKind::kChat, "chatcmpl-1", 0, "m"}, false);
    }
    writer->EnableToolCalls(ToolCallSyntax::kHermes);
    GenerationEnd end;
    end.finish = FinishReason::kEos;
    const json answer = json::parse(writer->Whole(raw, nullptr, end).body);
    ASSERT_EQ(writer->call_ids().size(), 1u);
    const std::optional<std::string> key = GeneratedReplyKey(ToolCallSyntax::kHermes, raw, writer->call_ids());
    ASSERT_TRUE(key.has_value());
    ReplyRecord record({});
    record.Insert("", *key, MakeGeneratedReply(*tokenizer_, raw, generated,
                                               std::string_view(chat1->text).substr(chat1->generation_offset)));

    // The next turn sends the answer back with the tool's result.
    json turn2 = body;
    if (anthropic) {
      turn2["messages"].push_back({{"role", "assistant"}, {"content", answer["content"]}});
      turn2["messages"].push_back({{"role", "user"}, {"content", json::array({{{"type", "tool_result"},
          {"tool_use_id", answer["content"][0]["id"]}, {"content", "21 C"}}})}});
    } else {
      const json& message = answer["choices"][0]["message"];
      turn2["messages"].push_back(message);
      turn2["messages"].push_back({{"role", "tool"}, {"tool_call_id", message["tool_calls"][0]["id"]}, {"content", "21 C"}});
    }
    auto r2 = parse(turn2);
    ASSERT_TRUE(r2.ok()) << r2.status();
    auto chat2 = qwen.Render(r2->messages, r2->tools, r2->chat_template_kwargs);
    ASSERT_TRUE(chat2.ok()) << chat2.status();
    ChatPromptTokens t = EncodeChatWithReplies(*tokenizer_, *chat2, r2->messages, record, "", true);
    EXPECT_EQ(t.replies.num_messages, 1);
    EXPECT_EQ(t.replies.num_tokens, static_cast<int64_t>(generated.size())) << chat2->text;
    EXPECT_TRUE(StartsWith(t.tokens, Concat(prompt1, generated))) << chat2->text;
  }
}

std::string PiecesOf(const Tokenizer& t, std::span<const int32_t> ids) {
  std::string bytes;
  for (const int32_t id : ids) bytes += t.Piece(id);
  return bytes;
}

// A random model's reply: a byte-fallback sequence cut short inside the reply and at its end
// (max_tokens). The client got U+FFFD for each and sends that text back; the record holds the
// reply under that text, and the next prompt takes the generated ids, cut bytes and all.
TEST_F(ReplyPromptTest, AReplyWithReplacedBytesIsFoundByTheTextTheClientGot) {
  const int32_t e2 = ByteToken(*tokenizer_, 0xE2), x82 = ByteToken(*tokenizer_, 0x82);
  ASSERT_GE(e2, 0);
  ASSERT_GE(x82, 0);
  std::vector<int32_t> generated = tokenizer_->Encode(" Once", Continuation());
  const size_t first_cut = generated.size();
  generated.insert(generated.end(), {e2, x82});
  const std::vector<int32_t> upon = tokenizer_->Encode(" upon", Continuation());
  generated.insert(generated.end(), upon.begin(), upon.end());
  generated.insert(generated.end(), {e2, x82});
  // What the client gets, as the server streams it.
  CompletionStream stream(*tokenizer_, {}, -1);
  for (const int32_t id : generated) {
    TokenEvent e;
    e.token = id;
    stream.Consume(e);
  }
  TokenEvent last;
  last.finished = true;
  last.finish = FinishReason::kLength;
  stream.Consume(last);
  const std::string reply = stream.text();
  ASSERT_EQ(reply, " Once\xEF\xBF\xBD upon\xEF\xBF\xBD");

  ChatFormat plain("", tokenizer_->vocab());
  std::vector<ChatMessage> turn1 = {Msg("user", "Tell me a story.")};
  auto chat1 = plain.Render(turn1, nullptr, nullptr);
  ASSERT_TRUE(chat1.ok());
  const std::vector<int32_t> prompt1 = tokenizer_->Encode(chat1->text, ChatEncodeOptions(*chat1));
  GeneratedReply g = MakeGeneratedReply(*tokenizer_, reply, stream.generated_tokens(),
                                        std::string_view(chat1->text).substr(chat1->generation_offset));
  EXPECT_EQ(g.tokens, generated);
  EXPECT_EQ(g.covered_bytes(), reply.size());
  // Each <0xE2> ends inside the U+FFFD its <0x82> ends.
  EXPECT_EQ(g.mid_char_ends, (std::vector<uint32_t>{static_cast<uint32_t>(first_cut), static_cast<uint32_t>(generated.size() - 2)}));
  ReplyRecord record({});
  ASSERT_TRUE(record.Insert("salt", reply, std::move(g)));

  std::vector<ChatMessage> turn2 = {turn1[0], Msg("assistant", reply), Msg("user", "More.")};
  auto chat2 = plain.Render(turn2, nullptr, nullptr);
  ASSERT_TRUE(chat2.ok());
  ChatPromptTokens with = EncodeChatWithReplies(*tokenizer_, *chat2, turn2, record, "salt", true);
  EXPECT_EQ(with.replies.num_messages, 1);
  EXPECT_EQ(with.replies.num_tokens, static_cast<int64_t>(generated.size()));
  EXPECT_TRUE(StartsWith(with.tokens, Concat(prompt1, generated)));
  EXPECT_EQ(with.replies.matches_text_encoding, std::optional<bool>(false));  // the text holds U+FFFD, not the bytes
}

// Random replies of word and byte tokens (valid characters split over byte tokens, stray
// continuation bytes, sequences cut short, overlong and surrogate leads), the text the client
// got (the bytes with ill-formed UTF-8 replaced), sometimes cut at a character by a stop
// string. The reference: splicing a run of ids into the text in place of the run's text
// gives, once replaced, the same text; MakeGeneratedReply allows exactly the runs for which
// that holds at their ends, and keeps the most ids whose bytes end where the text can end.
TEST_F(ReplyPromptTest, RandomizedRunsOfIdsStandForTheirTextAsTheClientGotIt) {
  std::vector<int32_t> pool;
  for (const char* word : {" a", " the", "x", "\n"}) {
    const std::vector<int32_t> ids = tokenizer_->Encode(word, Continuation());
    pool.insert(pool.end(), ids.begin(), ids.end());
  }
  for (const uint8_t b : {0x80, 0x82, 0x9F, 0xA0, 0xAC, 0xA9, 0xBF, 0x98, 0xC3, 0xC0, 0xE2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF}) {
    pool.push_back(ByteToken(*tokenizer_, b));
    ASSERT_GE(pool.back(), 0);
  }
  std::mt19937 rng(19);
  for (int run = 0; run < 2000; ++run) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (int32_t& id : ids) id = pool[rng() % pool.size()];
    const std::string bytes = PiecesOf(*tokenizer_, ids);
    const std::string shown = ReplaceInvalidUtf8(bytes);
    // A stop string cut: at a random character boundary of what the client would have got.
    std::string text = shown;
    if (rng() % 3 == 0) {
      size_t cut = rng() % (shown.size() + 1);
      while (cut < shown.size() && (static_cast<uint8_t>(shown[cut]) & 0xC0) == 0x80) ++cut;
      text.resize(cut);
    }
    const GeneratedReply r = MakeGeneratedReply(*tokenizer_, text, ids, "");
    ASSERT_TRUE(std::equal(r.tokens.begin(), r.tokens.end(), ids.begin())) << "run " << run;
    // Reference for the number kept: the most ids whose bytes end where replacing the two sides
    // apart changes nothing, and whose text the client's text starts with.
    size_t want = 0;
    for (size_t k = 1; k <= ids.size(); ++k) {
      const std::string head = PiecesOf(*tokenizer_, std::span(ids).first(k));
      const bool between = ReplaceInvalidUtf8(head) + ReplaceInvalidUtf8(bytes.substr(head.size())) == shown;
      if (between && text.starts_with(ReplaceInvalidUtf8(head))) want = k;
    }
    ASSERT_EQ(r.tokens.size(), want) << "run " << run;
    for (size_t tb = 0; tb < r.tokens.size(); ++tb) {
      for (size_t te = tb + 1; te <= r.tokens.size(); ++te) {
        const std::string spliced = text.substr(0, r.start_of(tb)) + PiecesOf(*tokenizer_, std::span(r.tokens).subspan(tb, te - tb)) +
                                    text.substr(r.ends[te - 1]);
        const bool allowed = (tb == 0 || r.ends_between_chars(tb - 1)) && r.ends_between_chars(te - 1);
        const bool holds = ReplaceInvalidUtf8(spliced) == text;
        // Allowed runs stand for their text; a run from the start that ends inside a replaced
        // character does not (so the marks are not overcautious).
        if (allowed) {
          ASSERT_TRUE(holds) << "run " << run << " tokens [" << tb << ", " << te << ")";
        }
        if (tb == 0 && !r.ends_between_chars(te - 1)) {
          ASSERT_FALSE(holds) << "run " << run << " te " << te;
        }
      }
    }
    // The whole reply is found where the client's text stands, and only as a whole when uncut.
    const std::string chat = "User: hi\nAssistant:" + text + "\n";
    auto span = FindReplySpan(chat, 0, chat.size(), r);
    if (r.covered_bytes() > 0) {
      ASSERT_TRUE(span.has_value()) << "run " << run;
      if (text == shown) {
        EXPECT_EQ(span->token_end - span->token_begin, r.tokens.size()) << "run " << run;
      }
      const std::string spliced = chat.substr(0, span->text_begin) +
                                  PiecesOf(*tokenizer_, std::span(r.tokens).subspan(span->token_begin, span->token_end - span->token_begin)) +
                                  chat.substr(span->text_end);
      ASSERT_EQ(ReplaceInvalidUtf8(spliced), chat) << "run " << run;
    }
  }
}

TEST(ReplyKey, ContentAloneOrWithCallIds) {
  EXPECT_EQ(ReplyKey("hi", {}), "hi");
  const std::vector<std::string> ids = {"a", "b"};
  EXPECT_EQ(ReplyKey("hi", ids), std::string("hi\0a\0b", 6));
  EXPECT_EQ(CallIdsOf(nlohmann::ordered_json::parse(R"([{"id": "a"}, {"type": "function"}, {"id": 3}, {"id": "b"}])")), ids);
  EXPECT_TRUE(CallIdsOf(nullptr).empty());
}

}  // namespace
}  // namespace prefixd
