// PartialTailStore: a bounded LRU store of the partial last block of recent prompts.
//
// The block-aligned tiers cannot hold a prompt's last, partial block, so a resubmitted prompt
// would recompute up to block_size - 1 tokens. This store keeps that tail, taken at the
// prompt boundary:
//
//   prompt:  | full block | full block | t0 t1 t2 |      (block size 4)
//                          ^ parent key   ^ tail: tokens {t0, t1, t2} and their KV bytes
//
// keyed by the key of the block before it (the root key for a prompt shorter than a block).
// A tail applies to a new prompt only when the prompt's tokens after that block start with
// all of the tail's tokens; a lookup that finds a tail that does not apply evicts that entry
// alone (it is stale for this conversation), keeping its siblings.
//
// Thread safety: none; the engine thread owns it. Counters are atomics for stats().
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kv/block_key.h"

namespace prefixd {

struct PartialTail {
  BlockKey parent;
  std::vector<int32_t> tokens;  // 1 .. block_size - 1 tokens
  // A whole block's bytes (slots past tokens.size() unused), then, for a hybrid model, the
  // recurrent-state snapshot before the tail's last token (StateSnapshots::AppendBytes).
  std::vector<uint8_t> kv;
};

struct PartialTailStats {
  int64_t stashes = 0;
  int64_t hits = 0;
  int64_t evictions = 0;  // capacity, mismatch and explicit drops
  int64_t tokens_saved = 0;
  int64_t entries = 0;
  int64_t max_entries = 0;
  bool supported = true;  // false: the model's cache cannot be sliced per token
};

class PartialTailStore {
 public:
  // max_entries == 0 disables the store: Stash keeps nothing, Take finds nothing.
  explicit PartialTailStore(int max_entries);

  // Keeps `tail` as the most recent entry for its parent key (replacing an older one), evicting
  // the least recently used entry beyond capacity.
  void Stash(PartialTail tail);

  // The tail stored under `parent` if `next_tokens` starts with all of its tokens; counts a
  // hit and its tokens as saved, and makes it most recent. A tail that does not apply is
  // evicted (and nothing returned); no entry: nothing returned, nothing changed.
  std::optional<PartialTail> Take(const BlockKey& parent, std::span<const int32_t> next_tokens);
  // Read-only version for the probe: no recency, no counters, no eviction.
  const PartialTail* Peek(const BlockKey& parent, std::span<const int32_t> next_tokens) const;

  // Drops every entry whose parent key is in `keys` (the blocks a cleared tier held).
  void DropParents(std::span<const BlockKey> keys);
  void Clear();

  int size() const { return static_cast<int>(lru_.size()); }
  int max_entries() const { return max_entries_; }
  PartialTailStats stats() const;
  // Stops the process if the index and the LRU list disagree or capacity is exceeded.
  void CheckInvariants() const;

 private:
  void Evict(std::list<PartialTail>::iterator it);

  int max_entries_;
  std::list<PartialTail> lru_;  // most recent first
  absl::flat_hash_map<BlockKey, std::list<PartialTail>::iterator> index_;
  std::atomic<int64_t> stashes_{0}, hits_{0}, evictions_{0}, tokens_saved_{0}, entries_{0};
};

}  // namespace prefixd
