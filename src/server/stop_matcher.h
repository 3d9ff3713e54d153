// StopMatcher: finds stop strings in generated text that arrives in chunks (one decoded token
// at a time), without emitting text that a later chunk could turn into a stop string.
//
//   emitted ........ | held back | <- new chunk
//                      "\nUs"       the held-back suffix is the longest one that is a proper
//                                   prefix of some stop string ("\nUser:")
//
// A match is the occurrence that completes first (the smallest end position; among those
// ending at the same byte, the one starting first), which is what a client reading the
// stream token by token would see. Text before the match is emitted, the stop string and
// everything after it are not. The result does not depend on how the text was chunked.
//
// Held-back text always starts at a UTF-8 character boundary when the input is whole
// characters, so the emitted text is valid UTF-8 when the input is.
//
// Thread safety: none; one matcher per request.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace prefixd {

class StopMatcher {
 public:
  // Empty strings in `stops` are ignored. With no stop strings Push returns its input.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      // safe to emit now
    bool matched = false;  // a stop string completed; `text` ends right before it
  };
  // Feeds the next chunk. After a match, further pushes return nothing.
  Output Push(std::string_view chunk);
  // The text still held back, released at the end of generation (no match then).
  std::string Finish();

  bool matched() const { return matched_; }
  // The stop string that matched ("" before a match).
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // a proper prefix of some stop string, not yet emitted
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace prefixd
