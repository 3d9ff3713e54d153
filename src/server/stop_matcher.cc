#include "server/stop_matcher.h"

#include <algorithm>

namespace prefixd {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

StopMatcher::Output StopMatcher::Push(std::string_view chunk) {
  Output out;
  if (matched_) return out;
  if (stops_.empty()) {
    out.text = std::string(chunk);
    return out;
  }
  std::string buf = held_;
  buf.append(chunk);
  held_.clear();
  // Earliest-ending occurrence. No occurrence ends inside the held part (it would have been
  // found on an earlier push), and none starts in already-emitted text (the held part is the
  // longest suffix that could still begin one), so searching `buf` alone is enough.
  size_t best_end = std::string::npos;
  size_t best_start = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& s : stops_) {
    const size_t pos = buf.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < best_end || (end == best_end && pos < best_start)) {
      best_end = end;
      best_start = pos;
      best = &s;
    }
  }
  if (best != nullptr) {
    matched_ = true;
    matched_stop_ = *best;
    out.matched = true;
    out.text = buf.substr(0, best_start);
    return out;
  }
  // Hold back the longest suffix of buf that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_k = std::min(s.size() - 1, buf.size());
    for (size_t k = max_k; k > hold; --k) {
      if (buf.compare(buf.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  held_ = buf.substr(buf.size() - hold);
  buf.resize(buf.size() - hold);
  out.text = std::move(buf);
  return out;
}

std::string StopMatcher::Finish() {
  if (matched_) return "";
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace prefixd
