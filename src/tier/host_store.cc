#include "tier/host_store.h"

#include <utility>

#include "base/check.h"

namespace prefixd {

HostStore::HostStore(int64_t budget_bytes) : budget_bytes_(std::max<int64_t>(budget_bytes, 0)) {
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

std::vector<StatusOr<BlockRecord>> HostStore::Read(std::span<const BlockKey> keys) {
  std::vector<std::shared_ptr<const BlockRecord>> found(keys.size());
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = index_.find(keys[i]);
      if (it == index_.end()) continue;
      lru_.splice(lru_.begin(), lru_, it->second);  // most recent; iterators stay valid
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
  std::vector<Entry> evicted;
  // For the residency observer: what the batch did, and the records it names kept alive.
  ResidencyChanges changes;
  std::vector<std::shared_ptr<const BlockRecord>> stored;
  int64_t writes = 0;
  {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (fresh[i] == nullptr) continue;
      const BlockKey key = fresh[i]->key;
      auto it = index_.find(key);
      if (it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        continue;
      }
      const int64_t bytes = static_cast<int64_t>(SerializedSize(*fresh[i]));
      if (observed()) {
        stored.push_back(fresh[i]);
        changes.Stored(fresh[i].get());
      }
      lru_.push_front(Entry{key, bytes, std::move(fresh[i])});
      index_.emplace(key, lru_.begin());
      bytes_ += bytes;
      ++writes;
      // The new entry fits the budget alone, so this stops before reaching it.
      while (bytes_ > budget_bytes_) {
        Entry& victim = lru_.back();
        bytes_ -= victim.bytes;
        index_.erase(victim.key);
        if (observed()) changes.Evicted(victim.key);
        evicted.push_back(std::move(victim));
        lru_.pop_back();
      }
    }
    counters_.entries.store(static_cast<int64_t>(index_.size()), std::memory_order_relaxed);
    counters_.bytes.store(bytes_, std::memory_order_relaxed);
  }
  counters_.writes.fetch_add(writes, std::memory_order_relaxed);
  counters_.evictions.fetch_add(static_cast<int64_t>(evicted.size()), std::memory_order_relaxed);
  NotifyResidency(changes);
  return out;
}

int HostStore::Remove(std::span<const BlockKey> keys) {
  std::vector<Entry> removed;
  {
    MutexLock lock(&mu_);
    for (const BlockKey& key : keys) {
      auto it = index_.find(key);
      if (it == index_.end()) continue;
      bytes_ -= it->second->bytes;
      removed.push_back(std::move(*it->second));
      lru_.erase(it->second);
      index_.erase(it);
    }
    counters_.entries.store(static_cast<int64_t>(index_.size()), std::memory_order_relaxed);
    counters_.bytes.store(bytes_, std::memory_order_relaxed);
  }
  return static_cast<int>(removed.size());
}

Status HostStore::Clear() {
  List dropped;
  {
    MutexLock lock(&mu_);
    dropped.swap(lru_);
    index_.clear();
    bytes_ = 0;
    counters_.entries.store(0, std::memory_order_relaxed);
    counters_.bytes.store(0, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

std::vector<BlockKey> HostStore::KeysByRecency() const {
  MutexLock lock(&mu_);
  std::vector<BlockKey> keys;
  keys.reserve(lru_.size());
  for (const Entry& e : lru_) keys.push_back(e.key);
  return keys;
}

void HostStore::CheckInvariants() const {
  MutexLock lock(&mu_);
  PREFIXD_CHECK(index_.size() == lru_.size(), "host store index and LRU list differ in size");
  int64_t sum = 0;
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    PREFIXD_CHECK(it->record != nullptr && it->record->key == it->key,
                  "host store entry holds a record for another key");
    PREFIXD_CHECK(it->bytes == static_cast<int64_t>(SerializedSize(*it->record)),
                  "host store entry charged the wrong size");
    auto found = index_.find(it->key);
    PREFIXD_CHECK(found != index_.end() && found->second == it,
                  "host store index does not point at the LRU entry of its key");
    sum += it->bytes;
  }
  PREFIXD_CHECK(sum == bytes_, "host store byte count differs from the sum of its entries");
  PREFIXD_CHECK(bytes_ <= budget_bytes_, "host store over its budget");
  const TierStats stats = counters_.Snapshot();
  PREFIXD_CHECK(stats.entries == static_cast<int64_t>(lru_.size()) && stats.bytes == bytes_,
                "host store stats differ from its contents");
}

}  // namespace prefixd
