// Block keys: the 128-bit content address of a full KV block (ARCHITECTURE.md invariant 3).
//
//   h_0 = H("root", model fingerprint bytes, cache salt)
//   h_i = H("chain", h_{i-1}, tokens of block i)          one key per FULL block
//
//   tokens:  [ block 0 ][ block 1 ][ block 2 ][ tail (partial, no key) ]
//   keys:       h_1        h_2        h_3
//
// A key therefore names the whole prefix up to the end of its block, under one model (weights,
// KV dtype, block size, RoPE settings) and one tenant (salt): two requests share a block only
// when everything that determines the block's KV bytes is equal. Lower tiers (host RAM, disk,
// remote) are content-addressed by this key, so its byte encoding is part of the on-disk and
// on-wire format: every integer is hashed little-endian whatever the host, and inputs are
// length-prefixed and domain-separated so that no two different inputs hash the same bytes.
// Changing the encoding invalidates every stored block: bump kBlockKeyFormatVersion.
//
// Hash kinds: XXH3-128 (default, fast, not collision-resistant against an adversary who can
// choose prompts) and SHA-256 truncated to 128 bits (for deployments where tenants could
// engineer collisions to read each other's cache).
//
// Thread safety: pure functions of their arguments; safe from any thread.
#pragma once

#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kv/kv_layout.h"

namespace prefixd {

// Version of the byte encoding hashed into every key (bumped when the encoding changes).
inline constexpr uint32_t kBlockKeyFormatVersion = 3;

struct BlockKey {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const BlockKey&, const BlockKey&) = default;
  friend auto operator<=>(const BlockKey&, const BlockKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& key) {
    return H::combine(std::move(h), key.hi, key.lo);
  }
};

enum class BlockHashKind {
  kXxh3,    // XXH3-128 (libxxhash)
  kSha256,  // SHA-256 (OpenSSL libcrypto EVP), first 16 bytes of the digest
};

// What makes two models' KV blocks interchangeable. Serialize() gives the bytes hashed into
// RootKey; it is deterministic (fixed field order, little-endian, floats by their bit pattern).
struct ModelFingerprint {
  std::string architecture;        // e.g. "llama"
  uint64_t weights_digest_hi = 0;  // digest of the weights (quantised as served), 128 bits
  uint64_t weights_digest_lo = 0;
  KvDtype kv_dtype = KvDtype::kF16;
  int32_t block_size = 0;
  float rope_freq_base = 0.0f;
  float rope_freq_scale = 0.0f;
  int32_t head_dim = 0;
  // Metadata that changes K/V without changing any tensor. Everything else that does is a
  // tensor and so in the weights digest (Q/K/V biases, Q/K norms, Llama 3 RoPE frequency
  // factors), or follows from `architecture` (RoPE style, which optional pieces exist).
  int32_t rope_dims = 0;
  float rms_eps = 0.0f;
  // The arithmetic that computed the K/V (Backend::numerics(), e.g. "cpu-2"): the same model
  // on other kernels gives other bits.
  std::string numerics;

  std::vector<uint8_t> Serialize() const;
};

// h_0 for one model and one cache salt. `fingerprint` is usually ModelFingerprint::Serialize().
BlockKey RootKey(BlockHashKind kind, std::span<const uint8_t> fingerprint, std::string_view salt);

// h_i from h_{i-1} (`parent`) and block i's tokens (block_size of them for a full block).
BlockKey ChainKey(BlockHashKind kind, BlockKey parent, std::span<const int32_t> tokens);

// Keys of every FULL block of `tokens`: tokens.size() / block_size keys, key i covering
// tokens [i * block_size, (i + 1) * block_size). A trailing partial block gets no key.
// Precondition: block_size >= 1.
std::vector<BlockKey> ComputeBlockKeys(BlockHashKind kind, BlockKey root,
                                       std::span<const int32_t> tokens, int block_size);

// The keys of one token sequence's full blocks with the root they chain from: what the cache
// computes once per request, stores on the radix tree's nodes and addresses lower tiers by.
//   keys[i] covers tokens [i * block_size, (i + 1) * block_size); its parent is Parent(i).
struct BlockKeyChain {
  BlockKey root;               // h_0 of the sequence's model and salt
  std::vector<BlockKey> keys;  // h_1, h_2, ...: one per full block hashed so far

  BlockKey Parent(int64_t index) const { return index == 0 ? root : keys[index - 1]; }
  int64_t size() const { return static_cast<int64_t>(keys.size()); }
};

// 32 lowercase hex digits, `hi` first (the form used in file names and logs).
std::string ToHex(BlockKey key);

}  // namespace prefixd
