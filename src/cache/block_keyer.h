// BlockKeyer: the one place the cache hashes block keys (ARCHITECTURE.md invariant 3). The
// prefix cache computes a request's chain once, when it is first admitted, and extends it
// only by the blocks the request adds (generated tokens); the tree stores the keys on its
// nodes, and the tier controller reads them from there or from the request's chain. Nothing
// else in cache/ calls ComputeBlockKeys or ChainKey.
//
// Thread safety: immutable after construction; Root/Chain/Extend may run on any thread. The
// hash counter is a process-wide atomic (tests read it to prove keys are hashed once).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kv/block_key.h"

namespace prefixd {

class BlockKeyer {
 public:
  BlockKeyer(BlockHashKind kind, std::vector<uint8_t> fingerprint, int block_size);

  // h_0 for `salt`.
  BlockKey Root(std::string_view salt) const;
  // The keys of every full block of `tokens` under `salt`.
  BlockKeyChain Chain(std::string_view salt, std::span<const int32_t> tokens) const;
  // Hashes the full blocks of `tokens` that `chain` does not cover yet (chain.keys must be the
  // keys of a prefix of `tokens`). Blocks already in the chain are not hashed again.
  void Extend(BlockKeyChain& chain, std::span<const int32_t> tokens) const;

  BlockHashKind kind() const { return kind_; }
  const std::vector<uint8_t>& fingerprint() const { return fingerprint_; }
  int block_size() const { return block_size_; }

  // Full blocks hashed by every BlockKeyer of the process so far (for tests).
  static int64_t num_hashed_blocks();

 private:
  BlockHashKind kind_;
  std::vector<uint8_t> fingerprint_;
  int block_size_;
};

}  // namespace prefixd
