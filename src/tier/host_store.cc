#include "tier/host_store.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace prefixd {

HostStore::HostStore(int64_t budget_bytes, const Clock* clock, double retention_max_share)
    : budget_bytes_(std::max<int64_t>(budget_bytes, 0)),
      clock_(clock != nullptr ? clock : SteadyClock::Get()),
      max_retained_bytes_(static_cast<int64_t>(
          static_cast<double>(std::max<int64_t>(budget_bytes, 0)) *
          std::clamp(retention_max_share, 0.0, 1.0))) {
  counters_.budget_bytes.store(budget_bytes_, std::memory_order_relaxed);
}

int HostStore::CountPresentPrefix(std::span<const BlockKey> keys) const {
  MutexLock lock(&mu_);
  int n = 0;
  while (n < static_cast<int>(keys.size()) && index_.contains(keys[n])) ++n;
  return n;
}

bool HostStore::Contains(const BlockKey& key) const {
  MutexLock lock(&mu_);
  return index_.contains(key);
}

RetentionMark HostStore::MarkOf(const BlockKey& key) const {
  MutexLock lock(&mu_);
  auto it = index_.find(key);
  return it == index_.end() ? RetentionMark{} : it->second->mark;
}

void HostStore::PlaceLocked(List::iterator it, const RetentionMark& mark, bool most_recent) {
  Lists().Place(it, mark, most_recent);
}

void HostStore::CapLocked(std::vector<Entry>& spilled) {
  while (kept_bytes_ > max_retained_bytes_ && !kept_.empty()) {
    const auto oldest = std::prev(kept_.end());
    spilled.push_back(*oldest);  // shares the record; keeps the mark
    PlaceLocked(oldest, RetentionMark{}, /*most_recent=*/true);
    counters_.retention_capped.fetch_add(1, std::memory_order_relaxed);
  }
}

int HostStore::EvictLocked(std::vector<Entry>& evicted, std::vector<Entry>& spilled,
                           ResidencyChanges& changes) {
  int n = 0;
  while (bytes_ > budget_bytes_) {
    ++n;
    const bool retained = lru_.empty();
    List& from = retained ? kept_ : lru_;
    Entry& victim = from.back();
    bytes_ -= victim.bytes;
    if (retained) kept_bytes_ -= victim.bytes;
    index_.erase(victim.key);
    if (observed()) changes.Evicted(victim.key);
    (retained ? spilled : evicted).push_back(std::move(victim));
    from.pop_back();
  }
  return n;
}

void HostStore::PublishLocked() {
  counters_.entries.store(static_cast<int64_t>(index_.size()), std::memory_order_relaxed);
  counters_.bytes.store(bytes_, std::memory_order_relaxed);
  counters_.retained_entries.store(static_cast<int64_t>(kept_.size()), std::memory_order_relaxed);
  counters_.retained_bytes.store(kept_bytes_, std::memory_order_relaxed);
}

std::vector<StatusOr<BlockRecord>> HostStore::Read(std::span<const BlockKey> keys) {
  std::vector<std::shared_ptr<const BlockRecord>> found(keys.size());
  const int64_t now = clock_->NowMs();
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = index_.find(keys[i]);
      if (it == index_.end()) continue;
      // Most recent in its list; a hit refreshes a mark.
      const RetentionMark mark =
          it->second->mark.marked() ? it->second->mark.RefreshedAt(now) : RetentionMark{};
      PlaceLocked(it->second, mark, /*most_recent=*/true);
      found[i] = it->second->record;
    }
  }
  // Copy the bytes without the lock: a concurrent eviction only drops its reference.
  std::vector<StatusOr<BlockRecord>> out;
  out.reserve(keys.size());
  int64_t hits = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (found[i] == nullptr) {
      out.push_back(
          absl::NotFoundError(absl::StrCat("block ", ToHex(keys[i]), " not in host RAM")));
    } else {
      out.push_back(*found[i]);
      ++hits;
    }
  }
  counters_.hits.fetch_add(hits, std::memory_order_relaxed);
  counters_.misses.fetch_add(static_cast<int64_t>(keys.size()) - hits, std::memory_order_relaxed);
  return out;
}

std::vector<Status> HostStore::Write(std::vector<BlockRecord> records) {
  return WriteRetained(std::move(records), {}, nullptr);
}

std::vector<Status> HostStore::WriteRetained(std::vector<BlockRecord> records,
                                             std::span<const RetentionMark> marks,
                                             std::vector<Spilled>* spilled_out) {
  PREFIXD_CHECK(marks.empty() || marks.size() == records.size(),
                "HostStore::WriteRetained needs no marks or one per record");
  std::vector<Status> out(records.size());
  // Allocate the shared records before locking; free the evicted ones after unlocking.
  std::vector<std::shared_ptr<const BlockRecord>> fresh(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const int64_t bytes = static_cast<int64_t>(SerializedSize(records[i]));
    if (bytes > budget_bytes_) {
      out[i] = absl::ResourceExhaustedError(
          absl::StrCat("block of ", bytes, " bytes does not fit the host cache budget of ",
                       budget_bytes_, " bytes (--host-cache-bytes)"));
      continue;
    }
    fresh[i] = std::make_shared<const BlockRecord>(std::move(records[i]));
  }
  std::vector<Entry> evicted, spilled;
  // For the residency observer: what the batch did, and the records it names kept alive.
  ResidencyChanges changes;
  std::vector<std::shared_ptr<const BlockRecord>> stored;
  int64_t writes = 0, num_evicted = 0;
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (fresh[i] == nullptr) continue;
      const BlockKey key = fresh[i]->key;
      const RetentionMark mark = marks.empty() ? RetentionMark{} : marks[i];
      auto it = index_.find(key);
      if (it != index_.end()) {
        PlaceLocked(it->second, RetentionMark::Merge(it->second->mark, mark), true);
        CapLocked(spilled);
        continue;
      }
      const int64_t bytes = static_cast<int64_t>(SerializedSize(*fresh[i]));
      if (observed()) {
        stored.push_back(fresh[i]);
        changes.Stored(fresh[i].get());
      }
      lru_.push_front(Entry{key, bytes, std::move(fresh[i]), RetentionMark{}});
      index_.emplace(key, lru_.begin());
      bytes_ += bytes;
      ++writes;
      if (mark.marked()) PlaceLocked(lru_.begin(), mark, true);
      // Ordinary entries go first, the new one included when only retained ones are older:
      // retention ranks what goes, it never refuses a write.
      num_evicted += EvictLocked(evicted, spilled, changes);
      // Generated and unmarked: written, then ranked the first to go next.
      if (!mark.marked() && !lru_.empty() && lru_.front().key == key && lru_.front().record->generated) {
        lru_.splice(lru_.end(), lru_, lru_.begin());
      }
      CapLocked(spilled);
    }
    PublishLocked();
  }
  counters_.writes.fetch_add(writes, std::memory_order_relaxed);
  counters_.evictions.fetch_add(num_evicted, std::memory_order_relaxed);
  counters_.retention_spilled.fetch_add(static_cast<int64_t>(spilled.size()),
                                        std::memory_order_relaxed);
  if (spilled_out != nullptr) {
    for (Entry& e : spilled) spilled_out->push_back(Spilled{*e.record, e.mark});
  }
  NotifyResidency(changes);
  return out;
}

int HostStore::Retain(std::span<const BlockKey> keys, const RetentionMark& mark,
                      std::vector<Spilled>* spilled_out) {
  if (!mark.marked()) return 0;
  int n = 0;
  std::vector<Entry> spilled;
  {
    MutexLock lock(&mu_);
    for (const BlockKey& key : keys) {
      auto it = index_.find(key);
      if (it == index_.end()) continue;
      PlaceLocked(it->second, RetentionMark::Merge(it->second->mark, mark), true);
      ++n;
    }
    CapLocked(spilled);
    PublishLocked();
  }
  counters_.retention_spilled.fetch_add(static_cast<int64_t>(spilled.size()),
                                        std::memory_order_relaxed);
  if (spilled_out != nullptr) {
    for (Entry& e : spilled) spilled_out->push_back(Spilled{*e.record, e.mark});
  }
  return n;
}

int HostStore::ExpireRetention(int64_t now_ms) {
  MutexLock lock(&mu_);
  if (now_ms < next_expiry_ms_) return 0;
  const int n = Lists().Expire(now_ms);
  counters_.retention_expired.fetch_add(n, std::memory_order_relaxed);
  PublishLocked();
  return n;
}

int64_t HostStore::next_retention_expiry_ms() const {
  MutexLock lock(&mu_);
  return next_expiry_ms_;
}

int HostStore::Remove(std::span<const BlockKey> keys) {
  std::vector<Entry> removed;
  {
    MutexLock lock(&mu_);
    for (const BlockKey& key : keys) {
      auto it = index_.find(key);
      if (it == index_.end()) continue;
      bytes_ -= it->second->bytes;
      if (it->second->mark.marked()) kept_bytes_ -= it->second->bytes;
      removed.push_back(std::move(*it->second));
      (removed.back().mark.marked() ? kept_ : lru_).erase(it->second);
      index_.erase(it);
    }
    PublishLocked();
  }
  return static_cast<int>(removed.size());
}

Status HostStore::Clear() {
  List dropped, dropped_kept;
  {
    MutexLock lock(&mu_);
    dropped.swap(lru_);
    dropped_kept.swap(kept_);
    index_.clear();
    bytes_ = 0;
    kept_bytes_ = 0;
    next_expiry_ms_ = INT64_MAX;
    PublishLocked();
  }
  return absl::OkStatus();
}

std::vector<BlockKey> HostStore::KeysByRecency() const {
  MutexLock lock(&mu_);
  std::vector<BlockKey> keys;
  keys.reserve(index_.size());
  for (const Entry& e : kept_) keys.push_back(e.key);
  for (const Entry& e : lru_) keys.push_back(e.key);
  return keys;
}

void HostStore::CheckInvariants() const {
  MutexLock lock(&mu_);
  PREFIXD_CHECK(index_.size() == lru_.size() + kept_.size(),
                "host store index and its two lists differ in size");
  int64_t sum = 0, kept_sum = 0;
  for (const List* list : {&lru_, &kept_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      PREFIXD_CHECK(it->record != nullptr && it->record->key == it->key,
                    "host store entry holds a record for another key");
      PREFIXD_CHECK(it->bytes == static_cast<int64_t>(SerializedSize(*it->record)),
                    "host store entry charged the wrong size");
      PREFIXD_CHECK(it->mark.marked() == (list == &kept_),
                    "host store entry in the list its retention mark does not say");
      PREFIXD_CHECK(!it->mark.marked() || it->mark.until_ms >= next_expiry_ms_,
                    "host store expiry bound passed a mark");
      auto found = index_.find(it->key);
      PREFIXD_CHECK(found != index_.end() && found->second == it,
                    "host store index does not point at the list entry of its key");
      sum += it->bytes;
      if (list == &kept_) kept_sum += it->bytes;
    }
  }
  PREFIXD_CHECK(sum == bytes_, "host store byte count differs from the sum of its entries");
  PREFIXD_CHECK(kept_sum == kept_bytes_, "host store retained bytes differ from kept_'s entries");
  PREFIXD_CHECK(bytes_ <= budget_bytes_, "host store over its budget");
  const TierStats stats = counters_.Snapshot();
  PREFIXD_CHECK(stats.entries == static_cast<int64_t>(index_.size()) && stats.bytes == bytes_ &&
                    stats.retained_bytes == kept_bytes_,
                "host store stats differ from its contents");
}

}  // namespace prefixd
