// BlockTable: the physical blocks that hold one sequence's KV, in token order.
//
//   tokens:  0 ........ bs-1 | bs ....... 2bs-1 | 2bs .. n-1
//   blocks:  blocks[0]       | blocks[1]        | blocks[2] (partial)
//
// The table holds one reference to each block it lists (taken from the BlockPool).
// Thread safety: none; owned by one sequence on the engine thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "kv/block_pool.h"

namespace prefixd {

// A block copy the backend must perform before a write (copy-on-write).
struct BlockCopy {
  BlockId src;
  BlockId dst;
};

class BlockTable {
 public:
  BlockTable() = default;
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;
  BlockTable(BlockTable&&) = default;
  BlockTable& operator=(BlockTable&&) = default;

  const std::vector<BlockId>& blocks() const { return blocks_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }

  // Appends blocks the caller already holds references for (adopted: the table now owns them).
  void Adopt(const std::vector<BlockId>& blocks);

  // Makes room to write tokens [begin, end): allocates missing blocks, and copies any shared
  // block that the write touches (copy-on-write). Returns the copies the backend must perform
  // before writing, or nullopt (with nothing changed) when the pool has too few free blocks.
  std::optional<std::vector<BlockCopy>> PrepareWrite(BlockPool& pool, int block_size,
                                                     int64_t begin, int64_t end);

  // Drops the table's references to blocks past the first `num_blocks`.
  void Truncate(BlockPool& pool, int num_blocks);
  // Drops every reference.
  void Release(BlockPool& pool) { Truncate(pool, 0); }

 private:
  std::vector<BlockId> blocks_;
};

}  // namespace prefixd
