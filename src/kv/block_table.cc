#include "kv/block_table.h"

#include "base/check.h"

namespace prefixd {

void BlockTable::Adopt(const std::vector<BlockId>& blocks) {
  blocks_.insert(blocks_.end(), blocks.begin(), blocks.end());
}

std::optional<std::vector<BlockCopy>> BlockTable::PrepareWrite(BlockPool& pool, int block_size,
                                                               int64_t begin, int64_t end) {
  PREFIXD_CHECK(begin <= end, "PrepareWrite with a reversed range");
  if (begin == end) return std::vector<BlockCopy>{};
  const int first = static_cast<int>(begin / block_size);
  const int last = static_cast<int>((end - 1) / block_size);
  const int have = num_blocks();
  PREFIXD_CHECK(first <= have, "PrepareWrite leaves a gap after the table's last block");
  // Count what is needed first so that failure changes nothing.
  int num_shared = 0;
  for (int b = first; b <= last && b < have; ++b) num_shared += pool.IsShared(blocks_[b]) ? 1 : 0;
  const int num_new = std::max(0, last + 1 - have);
  auto fresh = pool.Allocate(num_shared + num_new);
  if (!fresh) return std::nullopt;
  std::vector<BlockCopy> copies;
  int next = 0;
  for (int b = first; b <= last && b < have; ++b) {
    if (!pool.IsShared(blocks_[b])) continue;
    const BlockId copy = (*fresh)[next++];
    copies.push_back({blocks_[b], copy});
    pool.Unref(blocks_[b]);
    blocks_[b] = copy;
  }
  for (int i = 0; i < num_new; ++i) blocks_.push_back((*fresh)[next++]);
  return copies;
}

void BlockTable::Truncate(BlockPool& pool, int num_blocks) {
  while (static_cast<int>(blocks_.size()) > num_blocks) {
    pool.Unref(blocks_.back());
    blocks_.pop_back();
  }
}

}  // namespace prefixd
