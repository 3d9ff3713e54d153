// StateSnapshots: the recurrent state of a hybrid model (every DeltaNet layer's conv and
// recurrent state, Backend::recurrent_state_floats() floats) saved at one position, attached
// to the pool block that holds the token just before that position (ARCHITECTURE.md invariant
// 8). A cached prefix of a hybrid can be resumed only where such a snapshot exists: attention
// K/V comes from the blocks, the recurrent state from the snapshot.
//
//   tokens:  | block 0 (0..15) | block 1 (16..31) | block 2 (32..38, partial)
//   snapshots:       @16               @32               @38 (a prompt's end)
//
// A snapshot lives exactly as long as its block: the pool calls Drop when the block's last
// reference goes (BlockPool::SetFreeListener), so a reused block never carries a stale one.
// A snapshot is valid for a reader whose tokens match the block's up to `position`: blocks
// are written in position order and a shared block is copied before any write (COW), so the
// tokens before a snapshot's position never change while it exists.
//
// Memory: snapshots are allocated on Put and freed on Drop; bytes() is what they hold now.
//
// Thread safety: engine thread only, except count() and bytes() (atomics, for stats).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "kv/block_pool.h"

namespace prefixd {

class StateSnapshots {
 public:
  // `num_blocks`: the pool's blocks; `state_floats`: floats of one snapshot (> 0).
  StateSnapshots(int num_blocks, int64_t state_floats);

  // Saves `state` (state_floats() floats) as the state after positions [0, position), on
  // `block` (the block of token position - 1), replacing one it had for that position. A block
  // may hold several: its end (a checkpoint) and a prompt's end inside it.
  void Put(BlockId block, int64_t position, std::span<const float> state);
  // The state after [0, position) if `block` holds one for exactly that position; else empty.
  std::span<const float> Get(BlockId block, int64_t position) const;
  // The largest position at or below `limit` the block has a snapshot for, or -1.
  int64_t PositionAtMost(BlockId block, int64_t limit) const;
  void Drop(BlockId block);
  // A resume used the snapshot of `block` at `position`: it becomes the most recently used.
  void Touch(BlockId block, int64_t position);
  // Drops the least recently used (put or touched) snapshot of any block; false when there is
  // none. A dropped snapshot only moves resumes back to an earlier one: never a wrong state.
  bool DropLeastRecentlyUsed();

  // The byte form the lower tiers carry after a block's KV bytes (ARCHITECTURE.md, "The cache,
  // tier by tier"): exactly state_bytes() bytes, the floats in host order (the tiers' records
  // are checksummed and fingerprinted by model, so a state never meets another model).
  // Appends the snapshot of `block` at `position` to `bytes`; false (nothing appended) if none.
  bool AppendBytes(BlockId block, int64_t position, std::vector<uint8_t>* bytes) const;
  // Puts the snapshot `bytes` holds (state_bytes() of them) on `block` at `position`; false
  // (nothing put) when the size is wrong.
  bool PutBytes(BlockId block, int64_t position, std::span<const uint8_t> bytes);

  // Where a sequence whose first `num_tokens` tokens are in `blocks` (ceil(num_tokens /
  // block_size) of them, as a tree match gives) can resume: the largest snapshot position at
  // or below num_tokens on those blocks (a snapshot at q sits on the block of token q - 1),
  // else 0.
  int64_t ResumePoint(std::span<const BlockId> blocks, int64_t num_tokens, int block_size) const;

  int64_t state_floats() const { return state_floats_; }
  int64_t state_bytes() const { return state_floats_ * static_cast<int64_t>(sizeof(float)); }
  int64_t count() const { return count_.load(std::memory_order_relaxed); }  // snapshots
  int64_t bytes() const { return count() * state_bytes(); }

 private:
  struct Entry {
    int64_t position = 0;
    std::vector<float> state;
    uint64_t last_used = 0;  // tick_ when put or touched
  };
  uint64_t tick_ = 0;
  const int64_t state_floats_;
  std::vector<std::vector<Entry>> entries_;  // by block id; usually none, at most a few
  std::atomic<int64_t> count_{0};
};

}  // namespace prefixd
