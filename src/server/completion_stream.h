// CompletionStream: turns one request's TokenEvents into the text and logprobs a client
// sees: tokens are decoded (whole UTF-8 characters only), end-of-generation tokens are
// dropped, stop strings cut the text, and logprob entries are released only with the text
// they belong to.
//
//   TokenEvent(token) -> StreamingDecoder -> StopMatcher -> Delta{text, logprobs}
//
// Streaming and non-streaming responses both run through it, so they say the same thing.
// When Consume reports stop_matched, the caller cancels the request in the engine and keeps
// feeding events until the final one (which carries the usage).
//
// Thread safety: none; one per request, used by the HTTP thread serving it.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "engine/engine_service.h"
#include "server/openai_response.h"
#include "server/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

class CompletionStream {
 public:
  // `top_logprobs`: -1 for no logprobs; else the chosen token's logprob is kept with this
  // many alternatives (0..20).
  CompletionStream(const Tokenizer& tokenizer, std::vector<std::string> stops, int top_logprobs);

  struct Delta {
    std::string text;                   // new text to send
    std::vector<LogprobEntry> logprobs;  // entries for tokens whose text is now sent
    bool stop_matched = false;  // set once, on the event that completed a stop string
    bool finished = false;      // the final event was consumed; nothing follows
  };
  Delta Consume(const TokenEvent& event);

  bool stop_matched() const { return matcher_.matched(); }
  // The stop string that ended the text ("" when none did).
  const std::string& matched_stop() const { return matcher_.matched_stop(); }
  bool finished() const { return finished_; }
  // Tokens that count as the completion: all generated ones, or those up to and including
  // the one that completed a stop string.
  int32_t num_tokens() const { return num_tokens_; }
  int32_t num_text_tokens() const { return num_text_tokens_; }  // tokens that gave text
  const std::string& text() const { return text_; }  // everything sent so far
  // The ids that gave text, in order (end-of-generation tokens left out), up to the one that
  // completed a stop string: their pieces spell text() and, after a stop string, more.
  const std::vector<int32_t>& generated_tokens() const { return generated_; }
  // The finish_reason string, once finished.
  const char* finish_reason() const { return FinishReasonString(finish_, matcher_.matched()); }
  FinishReason finish() const { return finish_; }
  const Status& error() const { return error_; }
  const RequestUsage& usage() const { return usage_; }

 private:
  void Release(Delta& delta, bool all);

  const Tokenizer& tokenizer_;
  StreamingDecoder decoder_;
  StopMatcher matcher_;
  const int top_logprobs_;
  std::string text_;
  std::vector<int32_t> generated_;  // see generated_tokens()
  int64_t decoded_bytes_ = 0;  // bytes the decoder produced, before stop matching
  std::deque<LogprobEntry> pending_logprobs_;  // waiting for their text to be sent
  int32_t num_tokens_ = 0;
  int32_t num_text_tokens_ = 0;
  bool finished_ = false;
  FinishReason finish_ = FinishReason::kNone;
  Status error_;
  RequestUsage usage_;
};

}  // namespace prefixd
