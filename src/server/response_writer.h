// ResponseWriter: how one generation request's answer is written in its API's dialect
// (OpenAI chat/completions: openai_response.h; Anthropic messages: anthropic_response.h).
// GenerationRoutes drives the request and hands the writer the text as the CompletionStream
// releases it; the writer returns the bytes to send: SSE events while streaming, one
// HttpResponse otherwise. With tool calls enabled, the text first goes through a
// ToolCallParser (tool_call_parser.h) and the writer renders its calls.
//
//   stream:     StreamStart  [StreamPrefilled]  StreamText*  (StreamEnd | StreamError)
//   non-stream: Whole | Error
//
// Thread safety: none; used under the request's job lock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "server/api_error.h"
#include "server/http_message.h"
#include "server/tool_call_parser.h"

namespace prefixd {

// Where a request's cache_control breakpoints end in its prompt (0: none): Anthropic's usage
// counts cache_creation up to `end`, of which up to `end_1h` at the 1-hour ttl.
struct CacheWriteBounds {
  int64_t end = 0;
  int64_t end_1h = 0;
};

// How a generation ended, for the last event or the whole answer.
struct GenerationEnd {
  FinishReason finish = FinishReason::kNone;
  std::string stop_sequence;  // the stop string that ended it; "" when none did
  RequestUsage usage;         // prompt_tokens set
  int32_t completion_tokens = 0;
  // OpenAI's usage object with prefixd's prefix_cache (openai_response.h UsageJson).
  nlohmann::json usage_json;
  // The prefix cache was on, so the prompt past its cached prefix was indexed for later requests.
  bool cache_enabled = true;
  CacheWriteBounds cache_write;
};

class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  // Parses tool calls of `syntax` out of the text (kNone: the text passes through). Call
  // before any text is written.
  void EnableToolCalls(ToolCallSyntax syntax) {
    syntax_ = syntax;
    if (syntax != ToolCallSyntax::kNone) parser_.emplace(syntax);
  }

  // The request forces calls (forced_call.h): the text is held back until the end and parsed
  // only if the calls came out whole (SetForcedCallComplete(true) before the end); cut short
  // (max_tokens) it goes out as text. Call after EnableToolCalls.
  void HoldForForcedCall() { forced_ = true; }
  void SetForcedCallComplete(bool complete) { forced_complete_ = complete; }

  // The bytes sent with the headers of a streamed answer.
  virtual std::string StreamStart(int32_t prompt_tokens) = 0;
  // The bytes for when the prompt is done and what the cache gave it is known (the first
  // token came): `so_far` holds the prompt's usage (cached tokens, breakpoints), no output yet.
  virtual std::string StreamPrefilled(const GenerationEnd& /*so_far*/) { return ""; }
  // The bytes for newly released text and its logprobs (null when not requested); may be "".
  virtual std::string StreamText(const std::string& text, nlohmann::json logprobs) = 0;
  // The last bytes of a stream that ended without error.
  virtual std::string StreamEnd(const GenerationEnd& end) = 0;
  // The last bytes of a stream that failed.
  virtual std::string StreamError(const ApiError& error) = 0;
  // The whole answer: all the text, its logprobs (null when not requested).
  virtual HttpResponse Whole(const std::string& text, nlohmann::json logprobs, const GenerationEnd& end) = 0;
  virtual ApiDialect dialect() const = 0;
  // The response's id ("chatcmpl-...", "msg_...").
  virtual const std::string& id() const = 0;
  // The route as metrics count it, and the kind recent requests show.
  virtual const char* route() const = 0;
  virtual const char* kind() const = 0;

 protected:
  // Streaming: the events `text` completes (at_end: and everything held back).
  std::vector<ToolCallEvent> Events(const std::string& text, bool at_end) {
    std::vector<ToolCallEvent> events;
    if (forced_) {
      held_ += text;
      if (!at_end) return events;
      if (!parser_ || !forced_complete_) {
        if (!held_.empty()) events.push_back(ToolCallEvent{ToolCallEvent::Kind::kText, -1, std::move(held_)});
        return events;
      }
      events = parser_->Push(held_);
      for (ToolCallEvent& e : parser_->Finish()) events.push_back(std::move(e));
      return events;
    }
    if (!parser_) {
      if (!text.empty()) events.push_back(ToolCallEvent{ToolCallEvent::Kind::kText, -1, text});
      return events;
    }
    events = parser_->Push(text);
    if (at_end) {
      for (ToolCallEvent& e : parser_->Finish()) events.push_back(std::move(e));
    }
    return events;
  }
  // Non-streaming: the whole text split into text and calls.
  ParsedToolCalls Parse(const std::string& text) const {
    if (!parser_ || (forced_ && !forced_complete_)) return ParsedToolCalls{text, {}};
    ToolCallParser parser(*parser_);
    std::vector<ToolCallEvent> events = parser.Push(text);
    for (ToolCallEvent& e : parser.Finish()) events.push_back(std::move(e));
    return CollectToolCalls(events);
  }
  int num_calls() const { return parser_ ? parser_->num_calls() : 0; }
  // Every call id a writer gives out goes through here (the record of replies keys on them).
  const std::string& NoteCallId(std::string id) {
    given_call_ids_.push_back(std::move(id));
    return given_call_ids_.back();
  }

 public:
  // The ids given to the answer's tool calls, in order (empty without calls).
  const std::vector<std::string>& call_ids() const { return given_call_ids_; }
  // The syntax calls are parsed in (kNone: not parsed).
  ToolCallSyntax tool_call_syntax() const { return syntax_; }

 private:
  ToolCallSyntax syntax_ = ToolCallSyntax::kNone;
  std::optional<ToolCallParser> parser_;
  std::vector<std::string> given_call_ids_;
  bool forced_ = false;           // HoldForForcedCall
  bool forced_complete_ = false;  // the forced call came out whole
  std::string held_;              // forced: the text so far
};

}  // namespace prefixd
