#include "kv/block_key.h"

#include <openssl/evp.h>

#include <array>
#include <bit>
#include <cstring>

#include "base/check.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per key
#include <xxhash.h>

namespace prefixd {
namespace {

// Domain tags: the first bytes hashed, so a root input can never equal a chain input.
constexpr char kRootTag[] = "prefixd-block-key-root";
constexpr char kChainTag[] = "prefixd-block-key-chain";

// One incremental hash of either kind. Every multi-byte integer goes through PutU32/PutU64,
// which write little-endian whatever the host, so keys are the same on every machine.
class Hasher {
 public:
  explicit Hasher(BlockHashKind kind) : kind_(kind) {
    if (kind_ == BlockHashKind::kXxh3) {
      XXH3_INITSTATE(&xxh_);
      PREFIXD_CHECK(XXH3_128bits_reset(&xxh_) == XXH_OK, "XXH3_128bits_reset failed");
    } else {
      sha_ = EVP_MD_CTX_new();
      PREFIXD_CHECK(sha_ != nullptr, "EVP_MD_CTX_new failed (out of memory)");
      PREFIXD_CHECK(EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) == 1,
                    "EVP_DigestInit_ex(sha256) failed");
    }
  }
  ~Hasher() {
    if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
  }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void Put(const void* data, size_t size) {
    if (size == 0) return;
    if (kind_ == BlockHashKind::kXxh3) {
      PREFIXD_CHECK(XXH3_128bits_update(&xxh_, data, size) == XXH_OK, "XXH3 update failed");
    } else {
      PREFIXD_CHECK(EVP_DigestUpdate(sha_, data, size) == 1, "EVP_DigestUpdate failed");
    }
  }
  void PutU32(uint32_t v) {
    const uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    Put(b, sizeof(b));
  }
  void PutU64(uint64_t v) {
    PutU32(static_cast<uint32_t>(v));
    PutU32(static_cast<uint32_t>(v >> 32));
  }
  void PutTokens(std::span<const int32_t> tokens) {
    if constexpr (std::endian::native == std::endian::little) {
      Put(tokens.data(), tokens.size_bytes());
    } else {
      for (int32_t t : tokens) PutU32(static_cast<uint32_t>(t));
    }
  }

  BlockKey Finish() {
    if (kind_ == BlockHashKind::kXxh3) {
      const XXH128_hash_t h = XXH3_128bits_digest(&xxh_);
      return BlockKey{h.high64, h.low64};
    }
    std::array<uint8_t, EVP_MAX_MD_SIZE> digest{};
    unsigned int len = 0;
    PREFIXD_CHECK(EVP_DigestFinal_ex(sha_, digest.data(), &len) == 1 && len == 32,
                  "EVP_DigestFinal_ex(sha256) failed");
    // Truncate to the first 16 bytes, read big-endian (the order the digest is printed in).
    BlockKey key;
    for (int i = 0; i < 8; ++i) key.hi = (key.hi << 8) | digest[i];
    for (int i = 8; i < 16; ++i) key.lo = (key.lo << 8) | digest[i];
    return key;
  }

 private:
  BlockHashKind kind_;
  XXH3_state_t xxh_;
  EVP_MD_CTX* sha_ = nullptr;
};

// resize + memcpy rather than vector::insert of a char range, which trips a false
// -Wstringop-overflow in GCC 12.
void AppendBytes(std::vector<uint8_t>& out, const void* data, size_t size) {
  const size_t old = out.size();
  out.resize(old + size);
  if (size > 0) std::memcpy(out.data() + old, data, size);
}
void AppendU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void AppendU64(std::vector<uint8_t>& out, uint64_t v) {
  AppendU32(out, static_cast<uint32_t>(v));
  AppendU32(out, static_cast<uint32_t>(v >> 32));
}

// A stable code per dtype: the enum's numeric values may be reordered, the format may not.
uint32_t DtypeCode(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF16:
      return 1;
    case KvDtype::kF32:
      return 2;
  }
  PREFIXD_CHECK(false, "unknown KvDtype in ModelFingerprint");
  return 0;
}

}  // namespace

std::vector<uint8_t> ModelFingerprint::Serialize() const {
  std::vector<uint8_t> out;
  out.reserve(64 + architecture.size());
  static constexpr char kMagic[] = "prefixd-model-fingerprint";
  AppendBytes(out, kMagic, sizeof(kMagic) - 1);
  AppendU32(out, kBlockKeyFormatVersion);
  AppendU64(out, architecture.size());
  AppendBytes(out, architecture.data(), architecture.size());
  AppendU64(out, weights_digest_hi);
  AppendU64(out, weights_digest_lo);
  AppendU32(out, DtypeCode(kv_dtype));
  AppendU32(out, static_cast<uint32_t>(block_size));
  AppendU32(out, std::bit_cast<uint32_t>(rope_freq_base));
  AppendU32(out, std::bit_cast<uint32_t>(rope_freq_scale));
  AppendU32(out, static_cast<uint32_t>(head_dim));
  AppendU32(out, static_cast<uint32_t>(rope_dims));
  AppendU32(out, std::bit_cast<uint32_t>(rms_eps));
  AppendU64(out, numerics.size());
  AppendBytes(out, numerics.data(), numerics.size());
  return out;
}

BlockKey RootKey(BlockHashKind kind, std::span<const uint8_t> fingerprint, std::string_view salt) {
  Hasher h(kind);
  h.Put(kRootTag, sizeof(kRootTag) - 1);
  h.PutU32(kBlockKeyFormatVersion);
  // Length prefixes keep (fingerprint, salt) pairs apart: ("ab", "c") != ("a", "bc").
  h.PutU64(fingerprint.size());
  h.Put(fingerprint.data(), fingerprint.size());
  h.PutU64(salt.size());
  h.Put(salt.data(), salt.size());
  return h.Finish();
}

BlockKey ChainKey(BlockHashKind kind, BlockKey parent, std::span<const int32_t> tokens) {
  Hasher h(kind);
  h.Put(kChainTag, sizeof(kChainTag) - 1);
  h.PutU64(parent.hi);
  h.PutU64(parent.lo);
  h.PutU64(tokens.size());
  h.PutTokens(tokens);
  return h.Finish();
}

std::vector<BlockKey> ComputeBlockKeys(BlockHashKind kind, BlockKey root,
                                       std::span<const int32_t> tokens, int block_size) {
  PREFIXD_CHECK(block_size >= 1, "ComputeBlockKeys with a block size below 1");
  const size_t num_full = tokens.size() / static_cast<size_t>(block_size);
  std::vector<BlockKey> keys;
  keys.reserve(num_full);
  BlockKey parent = root;
  for (size_t i = 0; i < num_full; ++i) {
    parent = ChainKey(kind, parent, tokens.subspan(i * block_size, block_size));
    keys.push_back(parent);
  }
  return keys;
}

std::string ToHex(BlockKey key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(key.hi >> (4 * i)) & 0xf];
    out[31 - i] = kDigits[(key.lo >> (4 * i)) & 0xf];
  }
  return out;
}

}  // namespace prefixd
