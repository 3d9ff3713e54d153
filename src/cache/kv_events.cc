#include "cache/kv_events.h"

#include <chrono>
#include <utility>

namespace prefixd {

std::string_view MediumName(KvMedium medium) {
  switch (medium) {
    case KvMedium::kPool: return "GPU";
    case KvMedium::kHost: return "CPU";
    case KvMedium::kDisk: return "DISK";
    case KvMedium::kRemote: return "REMOTE";
  }
  return "GPU";
}

KvEventLog::KvEventLog(KvEventSink* sink, int block_size) : sink_(sink), block_size_(block_size) {}

namespace {

KvEvent MakeEvent(KvEvent::Type type, KvMedium medium, std::span<const BlockKey> keys) {
  KvEvent e;
  e.type = type;
  e.medium = medium;
  e.hashes.reserve(keys.size());
  for (const BlockKey& k : keys) e.hashes.push_back(EventHash(k));
  return e;
}

}  // namespace

void KvEventLog::Stored(KvMedium medium, std::span<const BlockKey> keys, const BlockKey& parent,
                        std::span<const int32_t> tokens) {
  if (keys.empty()) return;
  KvEvent e = MakeEvent(KvEvent::Type::kStored, medium, keys);
  e.parent = EventHash(parent);
  e.token_ids.assign(tokens.begin(), tokens.end());
  e.block_size = block_size_;
  Append(std::move(e));
}

void KvEventLog::Removed(KvMedium medium, std::span<const BlockKey> keys) {
  if (!keys.empty()) Append(MakeEvent(KvEvent::Type::kRemoved, medium, keys));
}

void KvEventLog::Cleared(KvMedium medium) { Append(MakeEvent(KvEvent::Type::kCleared, medium, {})); }

void KvEventLog::Append(KvEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.push_back(std::move(event));
}

void KvEventLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_.empty()) return;
  KvEventBatch batch;
  batch.seq = next_seq_++;
  batch.ts = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                 .count();
  batch.events.swap(pending_);
  // Under the lock, so batches reach the sink in sequence order.
  if (sink_ != nullptr) sink_->Publish(std::move(batch));
}

int64_t KvEventLog::num_batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_;
}

void TierEventObserver::OnStored(std::span<const BlockRecord* const> records) {
  std::vector<BlockKey> keys;
  std::vector<int32_t> tokens;
  BlockKey parent;
  auto emit = [&] {
    log_->Stored(medium_, keys, parent, tokens);
    keys.clear();
    tokens.clear();
  };
  for (const BlockRecord* r : records) {
    if (!keys.empty() && r->parent != keys.back()) emit();
    if (keys.empty()) parent = r->parent;
    keys.push_back(r->key);
    tokens.insert(tokens.end(), r->tokens.begin(), r->tokens.end());
  }
  if (!keys.empty()) emit();
}

}  // namespace prefixd
