#include "prefix/partial_tail_store.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

namespace {
bool Applies(const PartialTail& tail, std::span<const int32_t> next) {
  return next.size() >= tail.tokens.size() &&
         std::equal(tail.tokens.begin(), tail.tokens.end(), next.begin());
}
}  // namespace

PartialTailStore::PartialTailStore(int max_entries) : max_entries_(std::max(0, max_entries)) {}

void PartialTailStore::Evict(std::list<PartialTail>::iterator it) {
  index_.erase(it->parent);
  lru_.erase(it);
  evictions_.fetch_add(1, std::memory_order_relaxed);
  entries_.store(static_cast<int64_t>(lru_.size()), std::memory_order_relaxed);
}

void PartialTailStore::Stash(PartialTail tail) {
  if (max_entries_ == 0 || tail.tokens.empty()) return;
  auto found = index_.find(tail.parent);
  if (found != index_.end()) {
    // Replacing an entry is not an eviction: the same conversation moved on.
    lru_.erase(found->second);
    index_.erase(found);
  }
  lru_.push_front(std::move(tail));
  index_[lru_.front().parent] = lru_.begin();
  stashes_.fetch_add(1, std::memory_order_relaxed);
  while (static_cast<int>(lru_.size()) > max_entries_) Evict(std::prev(lru_.end()));
  entries_.store(static_cast<int64_t>(lru_.size()), std::memory_order_relaxed);
}

std::optional<PartialTail> PartialTailStore::Take(const BlockKey& parent,
                                                  std::span<const int32_t> next_tokens) {
  auto found = index_.find(parent);
  if (found == index_.end()) return std::nullopt;
  auto it = found->second;
  if (!Applies(*it, next_tokens)) {
    Evict(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it);
  hits_.fetch_add(1, std::memory_order_relaxed);
  tokens_saved_.fetch_add(static_cast<int64_t>(it->tokens.size()), std::memory_order_relaxed);
  return *it;
}

const PartialTail* PartialTailStore::Peek(const BlockKey& parent,
                                          std::span<const int32_t> next_tokens) const {
  auto found = index_.find(parent);
  if (found == index_.end() || !Applies(*found->second, next_tokens)) return nullptr;
  return &*found->second;
}

void PartialTailStore::DropParents(std::span<const BlockKey> keys) {
  for (const BlockKey& k : keys) {
    auto found = index_.find(k);
    if (found != index_.end()) Evict(found->second);
  }
}

void PartialTailStore::Clear() {
  const int64_t n = static_cast<int64_t>(lru_.size());
  lru_.clear();
  index_.clear();
  evictions_.fetch_add(n, std::memory_order_relaxed);
  entries_.store(0, std::memory_order_relaxed);
}

PartialTailStats PartialTailStore::stats() const {
  PartialTailStats s;
  s.stashes = stashes_.load(std::memory_order_relaxed);
  s.hits = hits_.load(std::memory_order_relaxed);
  s.evictions = evictions_.load(std::memory_order_relaxed);
  s.tokens_saved = tokens_saved_.load(std::memory_order_relaxed);
  s.entries = entries_.load(std::memory_order_relaxed);
  s.max_entries = max_entries_;
  return s;
}

void PartialTailStore::CheckInvariants() const {
  PREFIXD_CHECK(static_cast<int>(lru_.size()) <= max_entries_, "partial tails over capacity");
  PREFIXD_CHECK(lru_.size() == index_.size(), "partial-tail index and LRU list disagree");
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    auto found = index_.find(it->parent);
    PREFIXD_CHECK(found != index_.end() && found->second == it,
                  "a partial tail is missing from the index or indexed twice");
    PREFIXD_CHECK(!it->tokens.empty(), "an empty partial tail is stored");
  }
}

}  // namespace prefixd
