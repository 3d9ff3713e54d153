#include "kv/block_key.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "absl/container/flat_hash_set.h"

namespace prefixd {
namespace {

constexpr BlockHashKind kKinds[] = {BlockHashKind::kXxh3, BlockHashKind::kSha256};

ModelFingerprint TestFingerprint() {
  ModelFingerprint fp;
  fp.architecture = "llama";
  fp.weights_digest_hi = 0x0123456789abcdefULL;
  fp.weights_digest_lo = 0xfedcba9876543210ULL;
  fp.kv_dtype = KvDtype::kF16;
  fp.block_size = 16;
  fp.rope_freq_base = 10000.0f;
  fp.rope_freq_scale = 1.0f;
  fp.head_dim = 64;
  fp.numerics = "cpu-2";
  return fp;
}

std::vector<int32_t> Iota(int n, int32_t first = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

class BlockKeyTest : public ::testing::TestWithParam<BlockHashKind> {};

TEST_P(BlockKeyTest, Deterministic) {
  const BlockHashKind kind = GetParam();
  const auto fp = TestFingerprint().Serialize();
  EXPECT_EQ(fp, TestFingerprint().Serialize());
  const BlockKey root = RootKey(kind, fp, "tenant");
  EXPECT_EQ(root, RootKey(kind, fp, "tenant"));
  const auto tokens = Iota(100);
  EXPECT_EQ(ComputeBlockKeys(kind, root, tokens, 16), ComputeBlockKeys(kind, root, tokens, 16));
  EXPECT_NE(root, BlockKey{});
}

TEST_P(BlockKeyTest, DifferentSaltOrFingerprintGivesDifferentRoots) {
  const BlockHashKind kind = GetParam();
  const auto fp = TestFingerprint().Serialize();
  absl::flat_hash_set<BlockKey> roots;
  roots.insert(RootKey(kind, fp, ""));
  roots.insert(RootKey(kind, fp, "a"));
  roots.insert(RootKey(kind, fp, "b"));
  roots.insert(RootKey(kind, fp, std::string_view("a\0", 2)));
  // Length prefixes: moving a byte between fingerprint and salt changes the key.
  std::vector<uint8_t> fp_plus = fp;
  fp_plus.push_back('a');
  roots.insert(RootKey(kind, fp_plus, ""));
  // Each fingerprint field matters.
  auto mutate = [&](auto&& f) {
    ModelFingerprint m = TestFingerprint();
    f(m);
    roots.insert(RootKey(kind, m.Serialize(), ""));
  };
  mutate([](ModelFingerprint& m) { m.architecture = "qwen2"; });
  mutate([](ModelFingerprint& m) { m.weights_digest_hi ^= 1; });
  mutate([](ModelFingerprint& m) { m.weights_digest_lo ^= 1; });
  mutate([](ModelFingerprint& m) { m.kv_dtype = KvDtype::kF32; });
  mutate([](ModelFingerprint& m) { m.block_size = 32; });
  mutate([](ModelFingerprint& m) { m.rope_freq_base = 500000.0f; });
  mutate([](ModelFingerprint& m) { m.rope_freq_scale = 0.5f; });
  mutate([](ModelFingerprint& m) { m.head_dim = 128; });
  mutate([](ModelFingerprint& m) { m.rope_dims = 32; });
  mutate([](ModelFingerprint& m) { m.rms_eps = 1e-6f; });
  mutate([](ModelFingerprint& m) { m.numerics = "cuda-1"; });
  EXPECT_EQ(roots.size(), 16u);  // 5 salt/fingerprint variants + 11 field mutations
}

TEST_P(BlockKeyTest, DifferentTokensGiveDifferentKeys) {
  const BlockHashKind kind = GetParam();
  const BlockKey root = RootKey(kind, TestFingerprint().Serialize(), "");
  auto a = Iota(64);
  auto b = a;
  b[40] = 9999;  // block 2 of 4 (block size 16)
  const auto ka = ComputeBlockKeys(kind, root, a, 16);
  const auto kb = ComputeBlockKeys(kind, root, b, 16);
  ASSERT_EQ(ka.size(), 4u);
  EXPECT_EQ(ka[0], kb[0]);
  EXPECT_EQ(ka[1], kb[1]);
  // The chain carries a difference into every later block.
  EXPECT_NE(ka[2], kb[2]);
  EXPECT_NE(ka[3], kb[3]);
  // Same tokens under a different parent: different key.
  EXPECT_NE(ChainKey(kind, ka[0], std::span(a).subspan(0, 16)), ka[0]);
  // A different salt changes every key.
  const auto kc = ComputeBlockKeys(kind, RootKey(kind, TestFingerprint().Serialize(), "x"), a, 16);
  for (size_t i = 0; i < ka.size(); ++i) EXPECT_NE(ka[i], kc[i]);
}

TEST_P(BlockKeyTest, PrefixProperty) {
  const BlockHashKind kind = GetParam();
  const BlockKey root = RootKey(kind, TestFingerprint().Serialize(), "s");
  const auto tokens = Iota(1000, 7);
  const auto all = ComputeBlockKeys(kind, root, tokens, 16);
  ASSERT_EQ(all.size(), 1000u / 16);
  for (int len : {0, 15, 16, 17, 160, 999}) {
    const auto part = ComputeBlockKeys(kind, root, std::span(tokens).subspan(0, len), 16);
    ASSERT_EQ(part.size(), static_cast<size_t>(len / 16));
    for (size_t i = 0; i < part.size(); ++i) EXPECT_EQ(part[i], all[i]) << len << " " << i;
  }
  // The chain is what ComputeBlockKeys computes.
  EXPECT_EQ(all[0], ChainKey(kind, root, std::span(tokens).subspan(0, 16)));
  EXPECT_EQ(all[1], ChainKey(kind, all[0], std::span(tokens).subspan(16, 16)));
}

TEST_P(BlockKeyTest, KeysAreDistinctAcrossManyBlocks) {
  const BlockHashKind kind = GetParam();
  const BlockKey root = RootKey(kind, TestFingerprint().Serialize(), "");
  const auto tokens = std::vector<int32_t>(4096, 5);  // identical blocks, distinct positions
  const auto keys = ComputeBlockKeys(kind, root, tokens, 4);
  absl::flat_hash_set<BlockKey> set(keys.begin(), keys.end());
  EXPECT_EQ(set.size(), keys.size());
}

INSTANTIATE_TEST_SUITE_P(Kinds, BlockKeyTest, ::testing::ValuesIn(kKinds), [](const auto& info) {
  return info.param == BlockHashKind::kXxh3 ? "Xxh3" : "Sha256";
});

TEST(BlockKey, KindsDiffer) {
  const auto fp = TestFingerprint().Serialize();
  EXPECT_NE(RootKey(BlockHashKind::kXxh3, fp, ""), RootKey(BlockHashKind::kSha256, fp, ""));
}

// Known values pin the byte encoding: lower tiers are addressed by these keys, so a change
// here silently orphans every stored block unless kBlockKeyFormatVersion is bumped. The
// expected values were computed independently of this code: the documented byte layout built
// in Python, hashed with hashlib.sha256 (first 16 bytes) and with one-shot XXH3_128bits.
TEST(BlockKey, EncodingIsPinned) {
  const auto fp = TestFingerprint().Serialize();
  EXPECT_EQ(fp.size(), 25u + 4 + 8 + 5 + 16 + 4 * 7 + 8 + 5);
  const BlockKey x = RootKey(BlockHashKind::kXxh3, fp, "salt");
  const BlockKey s = RootKey(BlockHashKind::kSha256, fp, "salt");
  const auto t = Iota(16);
  const BlockKey xc = ChainKey(BlockHashKind::kXxh3, x, t);
  const BlockKey sc = ChainKey(BlockHashKind::kSha256, s, t);
  EXPECT_EQ(ToHex(x), "329279ca93c2d34d21ea398eaffb6342");
  EXPECT_EQ(ToHex(s), "effb9fa5d056fc70604cb492b41d67db");
  EXPECT_EQ(ToHex(xc), "c756d9993c2d4e2fe50c16b800eabf28");
  EXPECT_EQ(ToHex(sc), "15e17d5b1262ba6ec3f5834214c90fab");
}

TEST(BlockKey, ToHex) {
  EXPECT_EQ(ToHex(BlockKey{0x0123456789abcdefULL, 0x00000000000000ffULL}),
            "0123456789abcdef00000000000000ff");
}

}  // namespace
}  // namespace prefixd
