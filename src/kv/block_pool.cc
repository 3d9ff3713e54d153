#include "kv/block_pool.h"

#include "base/check.h"

namespace prefixd {

BlockPool::BlockPool(int num_blocks, int low_watermark)
    : refcounts_(num_blocks, 0), holds_(num_blocks, 0), low_watermark_(low_watermark) {
  for (int i = 0; i < num_blocks; ++i) free_.push_back(BlockId(i));
}

std::optional<std::vector<BlockId>> BlockPool::Allocate(int n) {
  if (n < 0 || n > num_free()) return std::nullopt;
  std::vector<BlockId> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    BlockId id = free_.front();
    free_.pop_front();
    refcounts_[id.value()] = 1;
    out.push_back(id);
  }
  return out;
}

void BlockPool::Ref(BlockId id) {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "Ref of a block id out of range");
  PREFIXD_CHECK(refcounts_[id.value()] >= 1, "Ref of a free block");
  ++refcounts_[id.value()];
}

void BlockPool::Unref(BlockId id) {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "Unref of a block id out of range");
  PREFIXD_CHECK(refcounts_[id.value()] >= 1, "Unref of a free block: refcount would go below 0");
  if (--refcounts_[id.value()] > 0) return;
  if (holds_[id.value()] > 0) {
    ++num_held_;  // its copy still reads it: free once the last hold ends
  } else {
    if (on_free_) on_free_(id);
    free_.push_back(id);
  }
}

void BlockPool::Hold(BlockId id) {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "Hold of a block id out of range");
  PREFIXD_CHECK(refcounts_[id.value()] >= 1, "Hold of a block nobody uses (free or only held)");
  ++holds_[id.value()];
}

void BlockPool::Unhold(BlockId id) {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "Unhold of a block id out of range");
  PREFIXD_CHECK(holds_[id.value()] >= 1, "Unhold of a block that is not held");
  if (--holds_[id.value()] > 0 || refcounts_[id.value()] > 0) return;
  --num_held_;
  if (on_free_) on_free_(id);
  free_.push_back(id);
}

int BlockPool::HoldCount(BlockId id) const {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "HoldCount of a block id out of range");
  return holds_[id.value()];
}

int BlockPool::RefCount(BlockId id) const {
  PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "RefCount of a block id out of range");
  return refcounts_[id.value()];
}

void BlockPool::CheckInvariants() const {
  std::vector<char> in_free(refcounts_.size(), 0);
  for (BlockId id : free_) {
    PREFIXD_CHECK(id.value() >= 0 && id.value() < num_blocks(), "free list holds a bad id");
    PREFIXD_CHECK(!in_free[id.value()], "a block is in the free list twice");
    in_free[id.value()] = 1;
  }
  int held = 0;
  for (size_t b = 0; b < refcounts_.size(); ++b) {
    PREFIXD_CHECK(refcounts_[b] >= 0 && holds_[b] >= 0, "negative refcount or hold count");
    PREFIXD_CHECK((refcounts_[b] == 0 && holds_[b] == 0) == (in_free[b] != 0),
                  "a block is free without being in the free list, or the reverse");
    if (refcounts_[b] == 0 && holds_[b] > 0) ++held;
  }
  PREFIXD_CHECK(held == num_held_, "the count of held blocks disagrees with the hold counts");
}

}  // namespace prefixd
