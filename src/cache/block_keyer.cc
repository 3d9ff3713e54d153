#include "cache/block_keyer.h"

#include <atomic>

#include "base/check.h"

namespace prefixd {

namespace {
std::atomic<int64_t> g_hashed_blocks{0};
}  // namespace

BlockKeyer::BlockKeyer(BlockHashKind kind, std::vector<uint8_t> fingerprint, int block_size)
    : kind_(kind), fingerprint_(std::move(fingerprint)), block_size_(block_size) {
  PREFIXD_CHECK(block_size_ >= 1, "BlockKeyer with a block size below 1");
}

BlockKey BlockKeyer::Root(std::string_view salt) const {
  return RootKey(kind_, fingerprint_, salt);
}

BlockKeyChain BlockKeyer::Chain(std::string_view salt, std::span<const int32_t> tokens) const {
  BlockKeyChain chain;
  chain.root = Root(salt);
  Extend(chain, tokens);
  return chain;
}

void BlockKeyer::Extend(BlockKeyChain& chain, std::span<const int32_t> tokens) const {
  const int64_t num_full = static_cast<int64_t>(tokens.size()) / block_size_;
  if (num_full <= chain.size()) return;
  const int64_t first = chain.size();
  chain.keys.reserve(num_full);
  for (int64_t i = first; i < num_full; ++i) {
    chain.keys.push_back(
        ChainKey(kind_, chain.Parent(i), tokens.subspan(i * block_size_, block_size_)));
  }
  g_hashed_blocks.fetch_add(num_full - first, std::memory_order_relaxed);
}

int64_t BlockKeyer::num_hashed_blocks() { return g_hashed_blocks.load(std::memory_order_relaxed); }

}  // namespace prefixd
