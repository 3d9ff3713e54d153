#include "server/completion_stream.h"

namespace prefixd {

CompletionStream::CompletionStream(const Tokenizer& tokenizer, std::vector<std::string> stops,
                                   int top_logprobs)
    : tokenizer_(tokenizer),
      matcher_(std::move(stops)),
      top_logprobs_(top_logprobs) {}

CompletionStream::Delta CompletionStream::Consume(const TokenEvent& event) {
  Delta delta;
  if (finished_) return delta;
  // After a stop string, only the final event matters (for the usage).
  if (event.token >= 0 && !matcher_.matched()) {
    ++num_tokens_;
    if (!tokenizer_.IsEndOfGeneration(event.token)) {
      ++num_text_tokens_;
      if (top_logprobs_ >= 0 && event.logprob.has_value()) {
        LogprobEntry e;
        e.piece = tokenizer_.Piece(event.token);
        e.logprob = event.logprob->logprob;
        e.text_offset = decoded_bytes_;
        for (int i = 0; i < top_logprobs_ && i < static_cast<int>(event.top_logprobs.size()); ++i) {
          e.top.emplace_back(tokenizer_.Piece(event.top_logprobs[i].token),
                             event.top_logprobs[i].logprob);
        }
        pending_logprobs_.push_back(std::move(e));
      }
      generated_.push_back(event.token);
      const std::string piece = decoder_.Push(tokenizer_.Piece(event.token));
      decoded_bytes_ += static_cast<int64_t>(piece.size());
      StopMatcher::Output out = matcher_.Push(piece);
      delta.text += out.text;
      if (out.matched) delta.stop_matched = true;
    }
  }
  if (event.finished) {
    finished_ = true;
    finish_ = event.finish;
    error_ = event.error;
    usage_ = event.usage;
    delta.finished = true;
    if (!matcher_.matched()) {
      const std::string rest = decoder_.Finish();
      decoded_bytes_ += static_cast<int64_t>(rest.size());
      StopMatcher::Output out = matcher_.Push(rest);
      delta.text += out.text;
      if (out.matched) {
        delta.stop_matched = true;
      } else {
        delta.text += matcher_.Finish();
      }
    }
  }
  text_ += delta.text;
  Release(delta, delta.finished);
  return delta;
}

void CompletionStream::Release(Delta& delta, bool all) {
  // An entry goes out once the text it starts at is out; at the end, every entry whose text
  // survived the stop string does.
  const int64_t sent = static_cast<int64_t>(text_.size());
  while (!pending_logprobs_.empty()) {
    const LogprobEntry& e = pending_logprobs_.front();
    const bool covered = e.text_offset < sent || (e.piece.empty() && e.text_offset <= sent);
    const bool at_end = all && !matcher_.matched();
    if (!covered && !at_end) break;
    if (covered || at_end) delta.logprobs.push_back(std::move(pending_logprobs_.front()));
    pending_logprobs_.pop_front();
  }
  if (all) pending_logprobs_.clear();
}

}  // namespace prefixd
