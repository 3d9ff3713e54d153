#include "server/recent_requests.h"

#include "base/check.h"

namespace prefixd {

RecentRequests::RecentRequests(int capacity) : capacity_(capacity) {
  PREFIXD_CHECK(capacity >= 1, "RecentRequests needs room for at least one record");
}

void RecentRequests::Add(RequestRecord r) {
  std::lock_guard<std::mutex> lock(mu_);
  r.seq = ++num_added_;
  records_.push_back(std::move(r));
  if (static_cast<int>(records_.size()) > capacity_) records_.pop_front();
}

std::vector<RequestRecord> RecentRequests::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {records_.rbegin(), records_.rend()};
}

int64_t RecentRequests::num_added() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_added_;
}

nlohmann::json RequestRecordJson(const RequestRecord& r) {
  using json = nlohmann::json;
  return json{{"seq", r.seq},
              {"id", r.id},
              {"kind", r.kind},
              {"stream", r.stream},
              {"received_unix_ms", r.received_unix_ms},
              {"ttft_ms", r.ttft_ms ? json(*r.ttft_ms) : json(nullptr)},
              {"duration_ms", r.duration_ms},
              {"outcome", r.outcome},
              {"usage", r.usage}};
}

}  // namespace prefixd
