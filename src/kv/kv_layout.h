// The geometry of one KV block: every layer's K and V rows for `block_size` tokens, stored
// contiguously so a block moves between tiers as one byte range.
//
//   block b:  [layer 0: K rows 0..bs-1 | V rows 0..bs-1] [layer 1: K | V] ... [layer L-1: K | V]
//   one row:  kv_dim = n_kv_heads * head_dim elements of `dtype`
#pragma once

#include <cstdint>

namespace prefixd {

enum class KvDtype { kF16, kF32 };

struct KvLayout {
  int num_layers = 0;
  int kv_dim = 0;  // n_kv_heads * head_dim
  int block_size = 16;
  KvDtype dtype = KvDtype::kF16;

  int64_t ElementBytes() const { return dtype == KvDtype::kF16 ? 2 : 4; }
  int64_t RowBytes() const { return kv_dim * ElementBytes(); }
  // Bytes of one block across all layers.
  int64_t BlockBytes() const { return int64_t{num_layers} * 2 * block_size * RowBytes(); }
  // Byte offset, within a block, of layer `layer`'s K (v = 0) or V (v = 1) row `slot`.
  int64_t RowOffset(int layer, int v, int slot) const {
    return ((int64_t{layer} * 2 + v) * block_size + slot) * RowBytes();
  }
  int BlocksFor(int64_t num_tokens) const {
    return static_cast<int>((num_tokens + block_size - 1) / block_size);
  }
};

}  // namespace prefixd
