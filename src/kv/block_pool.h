// BlockPool: the bookkeeping of the paged KV pool's physical blocks: which are free, and how
// many references each used block has. Mechanism only: it never decides what to evict (the
// prefix tree and its policy do) and it holds no KV bytes (the compute backend does, in
// `num_blocks` slots laid out by KvLayout).
//
//   block states:  free (refcount 0, no hold, in the free list)  <->  used (refcount >= 1)
//                  held (refcount 0, holds >= 1): nobody uses it, but it is not handed out
//
// A block is shared when its refcount is above one (several sequences, or sequences and the
// prefix tree). A writer must copy a shared block first (copy-on-write, see block_table.h).
//
// A hold is a pending-copy mark: a thread other than the engine's is still copying the block's
// KV to a lower tier (cache/tier_controller.h). A held block can still be used and dropped as
// usual, but once its last reference is gone it waits, held, until its last hold ends, so the
// pool never hands out a block a copy is still reading. Holds are not references: the prefix
// tree's plans (which count refcounts) are unchanged by them.
//
// Thread safety: none. The engine thread owns the pool.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "base/typed_id.h"

namespace prefixd {

using BlockId = TypedId<struct BlockIdTag>;

class BlockPool {
 public:
  // `low_watermark`: WantsEviction() is true when fewer blocks than this are free.
  explicit BlockPool(int num_blocks, int low_watermark = 0);

  // Takes `n` free blocks, each with refcount 1, or returns nullopt (and takes nothing) when
  // fewer than `n` are free. Running out is a normal outcome: the caller evicts or waits.
  std::optional<std::vector<BlockId>> Allocate(int n);

  // Adds a reference to a used block. Precondition: refcount >= 1.
  void Ref(BlockId id);
  // Drops a reference; at zero the block returns to the end of the free list.
  // Precondition: refcount >= 1 (dropping below zero stops the process).
  void Unref(BlockId id);

  int RefCount(BlockId id) const;
  bool IsShared(BlockId id) const { return RefCount(id) > 1; }

  // Marks a used block as being copied (holds nest: one per copy). Precondition: refcount >= 1.
  void Hold(BlockId id);
  // Ends one hold. A block with no reference and no hold left returns to the free list.
  // Precondition: holds >= 1.
  void Unhold(BlockId id);
  int HoldCount(BlockId id) const;
  // Blocks with no reference that wait for their copies (neither used nor free).
  int num_held() const { return num_held_; }

  int num_blocks() const { return static_cast<int>(refcounts_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  int low_watermark() const { return low_watermark_; }
  bool WantsEviction() const { return num_free() < low_watermark_; }

  // Called with each block whose last reference (and last hold) goes, before it is free
  // again: what lives beside a block and must not outlive it (StateSnapshots) is dropped there.
  void SetFreeListener(std::function<void(BlockId)> listener) { on_free_ = std::move(listener); }

  // Stops the process if the free list and the refcounts disagree.
  void CheckInvariants() const;

 private:
  // refcounts_[b] is the number of holders of block b; b is in free_ exactly when it and
  // holds_[b] are 0.
  std::vector<int32_t> refcounts_;
  std::vector<int32_t> holds_;
  int num_held_ = 0;  // blocks with refcount 0 and holds >= 1
  // Free blocks, oldest-freed first. Allocation takes from the front, so a freed block is
  // reused as late as possible.
  std::deque<BlockId> free_;
  int low_watermark_;
  std::function<void(BlockId)> on_free_;
};

}  // namespace prefixd
