// BlockIo: moves one KV block's bytes (KvLayout::BlockBytes()) between the pool, wherever the
// backend keeps it (RAM, device memory), and host memory. The tier controller offloads and
// onboards blocks through it without knowing the backend.
//
// Thread safety: WriteBlock on the engine thread only (the pool's bytes change under its
// steps). ReadBlock also from one other thread (the tier controller's copier), concurrently
// with steps, for a block no step writes: a full block held in the pool (BlockPool::Hold),
// whose KV was computed by a step that ended before the block was handed over.
#pragma once

#include <cstdint>
#include <span>

#include "kv/block_pool.h"

namespace prefixd {

class BlockIo {
 public:
  virtual ~BlockIo() = default;
  // Copies block `block` into `out` (exactly block_bytes() bytes).
  virtual void ReadBlock(BlockId block, std::span<uint8_t> out) const = 0;
  // Overwrites block `block` with `in` (exactly block_bytes() bytes).
  virtual void WriteBlock(BlockId block, std::span<const uint8_t> in) = 0;
  virtual int64_t block_bytes() const = 0;
};

}  // namespace prefixd
