#include "server/anthropic_response.h"

#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/server_context.h"
#include "server/json_body.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

// A tool call's arguments as the tool_use block's input: a JSON object, or {}.
json InputOf(const std::string& arguments) {
  auto parsed = ParseJsonObject(arguments);
  return parsed.ok() ? *std::move(parsed) : json::object();
}

}  // namespace

json AnthropicUsageJson(const RequestUsage& usage, int32_t output_tokens, bool cache_indexed,
                        const CacheWriteBounds& write) {
  const int64_t prompt = usage.prompt_tokens;
  const int64_t read = std::min<int64_t>(usage.cached_tokens, prompt);
  const int64_t end = std::min<int64_t>(write.end, prompt);
  const int64_t end_1h = std::min<int64_t>(write.end_1h, end);
  const int64_t created = cache_indexed ? std::max<int64_t>(0, end - read) : 0;
  const int64_t created_1h = cache_indexed ? std::max<int64_t>(0, end_1h - read) : 0;
  return json{{"input_tokens", prompt - read - created},
              {"output_tokens", output_tokens},
              {"cache_creation_input_tokens", created},
              {"cache_read_input_tokens", read},
              {"cache_creation", json{{"ephemeral_5m_input_tokens", created - created_1h},
                                      {"ephemeral_1h_input_tokens", created_1h}}}};
}

const char* AnthropicStopReason(FinishReason finish, bool stop_sequence, bool tool_use) {
  if (tool_use) return "tool_use";
  if (stop_sequence) return "stop_sequence";
  switch (finish) {
    case FinishReason::kLength:
    case FinishReason::kContext: return "max_tokens";
    case FinishReason::kCancelled: return "abort";
    case FinishReason::kEos:
    case FinishReason::kNone: break;
  }
  return "end_turn";
}

std::string SseEvent(const char* name, const json& data) {
  return absl::StrCat("event: ", name, "\ndata: ", Dump(data), "\n\n");
}

json AnthropicWriter::Usage(const GenerationEnd& end) const {
  const bool indexed = end.cache_enabled && (end.completion_tokens > 0 || end.finish != FinishReason::kCancelled);
  json u = AnthropicUsageJson(end.usage, end.completion_tokens, indexed, end.cache_write);
  if (end.usage_json.contains("prefix_cache")) u["prefix_cache"] = end.usage_json["prefix_cache"];
  return u;
}

json AnthropicWriter::Message(json content, const GenerationEnd* end) const {
  json m;
  m["id"] = id_;
  m["type"] = "message";
  m["role"] = "assistant";
  m["model"] = model_;
  m["content"] = std::move(content);
  if (end == nullptr) {
    m["stop_reason"] = nullptr;
    m["stop_sequence"] = nullptr;
  } else {
    m["stop_reason"] = AnthropicStopReason(end->finish, !end->stop_sequence.empty(), num_calls() > 0);
    m["stop_sequence"] = end->stop_sequence.empty() ? json(nullptr) : json(end->stop_sequence);
    m["usage"] = Usage(*end);
  }
  return m;
}

std::string AnthropicWriter::MessageStart(json usage) {
  started_ = true;
  json message = Message(json::array(), nullptr);
  usage["output_tokens"] = 0;
  usage.erase("prefix_cache");
  message["usage"] = std::move(usage);
  return SseEvent("message_start", json{{"type", "message_start"}, {"message", std::move(message)}}) +
         SseEvent("ping", json{{"type", "ping"}});
}

// message_start waits for the prompt's cache figures (StreamPrefilled).
std::string AnthropicWriter::StreamStart(int32_t /*prompt_tokens*/) { return ""; }

std::string AnthropicWriter::StreamPrefilled(const GenerationEnd& so_far) {
  return started_ ? "" : MessageStart(Usage(so_far));
}

std::string AnthropicWriter::CloseBlock() {
  if (open_ == Block::kNone) return "";
  open_ = Block::kNone;
  return SseEvent("content_block_stop", json{{"type", "content_block_stop"}, {"index", num_blocks_ - 1}});
}

std::string AnthropicWriter::Blocks(const std::vector<ToolCallEvent>& events) {
  std::string out;
  auto start = [&](Block kind, json block) {
    out += CloseBlock();
    open_ = kind;
    out += SseEvent("content_block_start",
                    json{{"type", "content_block_start"}, {"index", num_blocks_++}, {"content_block", std::move(block)}});
  };
  auto delta = [&](json d) {
    out += SseEvent("content_block_delta",
                    json{{"type", "content_block_delta"}, {"index", num_blocks_ - 1}, {"delta", std::move(d)}});
  };
  for (const ToolCallEvent& e : events) {
    switch (e.kind) {
      case ToolCallEvent::Kind::kText:
        if (open_ != Block::kText) start(Block::kText, json{{"type", "text"}, {"text", ""}});
        delta(json{{"type", "text_delta"}, {"text", e.text}});
        break;
      case ToolCallEvent::Kind::kCallStart:
        start(Block::kToolUse, json{{"type", "tool_use"},
                                    {"id", NoteCallId(RandomId("toolu_"))},
                                    {"name", e.text},
                                    {"input", json::object()}});
        break;
      case ToolCallEvent::Kind::kArguments:
        delta(json{{"type", "input_json_delta"}, {"partial_json", e.text}});
        break;
      case ToolCallEvent::Kind::kCallEnd: out += CloseBlock(); break;
    }
  }
  return out;
}

std::string AnthropicWriter::StreamText(const std::string& text, json /*logprobs*/) {
  return Blocks(Events(text, false));
}

std::string AnthropicWriter::StreamEnd(const GenerationEnd& end) {
  std::string out = started_ ? "" : MessageStart(Usage(end));
  out += Blocks(Events("", true));
  out += CloseBlock();
  json message = Message(json::array(), &end);
  out += SseEvent("message_delta", json{{"type", "message_delta"},
                                        {"delta", {{"stop_reason", message["stop_reason"]},
                                                   {"stop_sequence", message["stop_sequence"]}}},
                                        {"usage", message["usage"]}});
  out += SseEvent("message_stop", json{{"type", "message_stop"}});
  return out;
}

std::string AnthropicWriter::StreamError(const ApiError& error) {
  return SseEvent("error", ApiErrorJson(error, ApiDialect::kAnthropic));
}

HttpResponse AnthropicWriter::Whole(const std::string& text, json /*logprobs*/, const GenerationEnd& end) {
  // Text before, between and after calls are separate blocks in Anthropic's shape; Parse
  // joins them, so walk the events instead.
  std::vector<ToolCallEvent> events = Events(text, true);
  json content = json::array();
  std::vector<std::string> arguments;
  for (const ToolCallEvent& e : events) {
    switch (e.kind) {
      case ToolCallEvent::Kind::kText:
        if (!content.empty() && content.back()["type"] == "text") {
          content.back()["text"] = content.back()["text"].get<std::string>() + e.text;
        } else {
          content.push_back(json{{"type", "text"}, {"text", e.text}});
        }
        break;
      case ToolCallEvent::Kind::kCallStart:
        content.push_back(json{{"type", "tool_use"}, {"id", NoteCallId(RandomId("toolu_"))}, {"name", e.text}});
        arguments.emplace_back();
        break;
      case ToolCallEvent::Kind::kArguments: arguments.back() += e.text; break;
      case ToolCallEvent::Kind::kCallEnd: content.back()["input"] = InputOf(arguments.back()); break;
    }
  }
  return JsonResponse(200, Message(std::move(content), &end));
}

}  // namespace prefixd
