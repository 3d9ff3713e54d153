#include "tier/block_record.h"

#include <gtest/gtest.h>

#include <random>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace prefixd {
namespace {

constexpr BlockHashKind kKind = BlockHashKind::kXxh3;

FingerprintHash Fp(uint64_t seed) {
  const std::vector<uint8_t> bytes = {uint8_t(seed), 1, 2, 3};
  return HashFingerprint(bytes);
}

BlockRecord MakeRecord(std::mt19937_64& rng, int num_tokens, size_t kv_bytes,
                       BlockKey parent = {0x1234, 0x5678}) {
  BlockRecord r;
  r.parent = parent;
  for (int i = 0; i < num_tokens; ++i) r.tokens.push_back(static_cast<int32_t>(rng() % 32000));
  r.kv.resize(kv_bytes);
  for (uint8_t& b : r.kv) b = static_cast<uint8_t>(rng());
  r.key = ChainKey(kKind, r.parent, r.tokens);
  return r;
}

uint64_t LoadU64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}
uint32_t LoadU32(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint32_t>(LoadU64(b, off) & 0xffffffff);
}

TEST(BlockRecordTest, RoundTrip) {
  std::mt19937_64 rng(1);
  const BlockRecord r = MakeRecord(rng, 16, 4096);
  const std::vector<uint8_t> bytes = Serialize(r, Fp(1));
  EXPECT_EQ(bytes.size(), 80u + 4 * 16 + 4096);
  EXPECT_EQ(bytes.size(), SerializedSize(r));
  StatusOr<BlockRecord> back = Deserialize(bytes, Fp(1), r.key, kKind);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(BlockRecordTest, EmptyRecordRoundTrips) {
  BlockRecord r;
  r.key = ChainKey(kKind, r.parent, r.tokens);
  const std::vector<uint8_t> bytes = Serialize(r, Fp(1));
  EXPECT_EQ(bytes.size(), 80u);
  StatusOr<BlockRecord> back = Deserialize(bytes, Fp(1), r.key, kKind);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(BlockRecordTest, ByteLayoutIsTheDocumentedOne) {
  std::mt19937_64 rng(2);
  const BlockRecord r = MakeRecord(rng, 3, 5);
  const FingerprintHash fp = Fp(7);
  const std::vector<uint8_t> b = Serialize(r, fp);
  ASSERT_EQ(b.size(), 72u + 12 + 5 + 8);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), std::string("PFXDBLK\x1a", 8));
  EXPECT_EQ(LoadU32(b, 8), kBlockRecordFormatVersion);
  EXPECT_EQ(LoadU32(b, 12), 3u);
  EXPECT_EQ(LoadU64(b, 16), 5u);
  EXPECT_EQ(LoadU64(b, 24), fp.hi);
  EXPECT_EQ(LoadU64(b, 32), fp.lo);
  EXPECT_EQ(LoadU64(b, 40), r.key.hi);
  EXPECT_EQ(LoadU64(b, 48), r.key.lo);
  EXPECT_EQ(LoadU64(b, 56), r.parent.hi);
  EXPECT_EQ(LoadU64(b, 64), r.parent.lo);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(static_cast<int32_t>(LoadU32(b, 72 + 4 * i)), r.tokens[i]);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b[84 + i], r.kv[i]);
  EXPECT_EQ(LoadU64(b, 89), XXH3_64bits(b.data(), 89));

  StatusOr<BlockRecordHeader> h = ParseHeader(std::span(b).first(72), fp);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->num_tokens, 3u);
  EXPECT_EQ(h->kv_bytes, 5u);
  EXPECT_EQ(h->key, r.key);
  EXPECT_EQ(h->parent, r.parent);
  EXPECT_EQ(h->RecordBytes(), b.size());
}

// Each check, with the defect it reports and a message naming it.
TEST(BlockRecordTest, EachDefectIsNamed) {
  std::mt19937_64 rng(3);
  const BlockRecord r = MakeRecord(rng, 16, 256);
  const FingerprintHash fp = Fp(1);
  const std::vector<uint8_t> good = Serialize(r, fp);
  auto check = [&](std::vector<uint8_t> bytes, RecordDefect want, const std::string& text,
                   const BlockKey& key, FingerprintHash expected_fp) {
    const Status s = Deserialize(bytes, expected_fp, key, kKind).status();
    EXPECT_EQ(RecordDefectOf(s), want) << s;
    EXPECT_NE(std::string(s.message()).find(text), std::string::npos) << s;
    return s;
  };

  auto bad_magic = good;
  bad_magic[0] = 'X';
  EXPECT_TRUE(absl::IsDataLoss(check(bad_magic, RecordDefect::kBadMagic, "magic", r.key, fp)));

  auto other_version = good;
  other_version[8] = 2;
  const Status v = check(other_version, RecordDefect::kOtherVersion, "version 2", r.key, fp);
  EXPECT_TRUE(absl::IsFailedPrecondition(v));
  EXPECT_TRUE(IsForeignRecord(v));

  const Status m = check(good, RecordDefect::kOtherModel, "another model", r.key, Fp(2));
  EXPECT_TRUE(absl::IsFailedPrecondition(m));
  EXPECT_TRUE(IsForeignRecord(m));

  (void)check({good.begin(), good.begin() + 40}, RecordDefect::kTruncated, "truncated", r.key, fp);
  (void)check({good.begin(), good.end() - 1}, RecordDefect::kTruncated, "truncated", r.key, fp);
  auto longer = good;
  longer.push_back(0);
  (void)check(longer, RecordDefect::kSizeMismatch, "past the end", r.key, fp);

  auto flipped = good;
  flipped[200] ^= 0x10;
  EXPECT_TRUE(absl::IsDataLoss(check(flipped, RecordDefect::kChecksum, "checksum", r.key, fp)));

  // A flipped fingerprint byte is corruption (checksum first), not a foreign file.
  auto flipped_fp = good;
  flipped_fp[30] ^= 0x01;
  EXPECT_FALSE(IsForeignRecord(check(flipped_fp, RecordDefect::kChecksum, "checksum", r.key, fp)));

  const BlockKey other_key{r.key.hi, r.key.lo ^ 1};
  (void)check(good, RecordDefect::kKeyMismatch, ToHex(other_key), other_key, fp);

  // A record whose key is self-consistent in the file but is not its chain hash.
  BlockRecord forged = r;
  forged.tokens[0] ^= 1;
  (void)check(Serialize(forged, fp), RecordDefect::kChainMismatch, "chain hash", r.key, fp);
  EXPECT_TRUE(Deserialize(Serialize(forged, fp), fp, r.key, std::nullopt).ok())
      << "without a hash kind the chain is not checked";
  EXPECT_FALSE(Deserialize(good, fp, r.key, BlockHashKind::kSha256).ok())
      << "a key of one hash kind does not verify under the other";

  EXPECT_EQ(RecordDefectOf(absl::OkStatus()), RecordDefect::kNone);
  EXPECT_EQ(RecordDefectOf(absl::NotFoundError("x")), RecordDefect::kNone);
}

TEST(BlockRecordTest, HeaderWithAHugeSizeIsRejectedWithoutAllocating) {
  std::mt19937_64 rng(4);
  const BlockRecord r = MakeRecord(rng, 2, 8);
  std::vector<uint8_t> b = Serialize(r, Fp(1));
  for (int i = 16; i < 24; ++i) b[i] = 0xff;  // kv byte count 2^64 - 1
  EXPECT_EQ(RecordDefectOf(Deserialize(b, Fp(1), r.key, kKind).status()), RecordDefect::kTruncated);
  for (int i = 12; i < 16; ++i) b[i] = 0xff;  // and 2^32 - 1 tokens
  EXPECT_EQ(RecordDefectOf(Deserialize(b, Fp(1), r.key, kKind).status()), RecordDefect::kTruncated);
}

// Every single-bit flip anywhere in a record is rejected: the checksum covers every byte
// before it, and a flip in the checksum itself mismatches.
TEST(BlockRecordTest, EverySingleBitFlipIsRejected) {
  std::mt19937_64 rng(5);
  const BlockRecord r = MakeRecord(rng, 4, 64);
  const std::vector<uint8_t> good = Serialize(r, Fp(1));
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> b = good;
      b[i] ^= static_cast<uint8_t>(1u << bit);
      const Status s = Deserialize(b, Fp(1), r.key, kKind).status();
      ASSERT_FALSE(s.ok()) << "flip of bit " << bit << " of byte " << i << " was accepted";
      ASSERT_NE(RecordDefectOf(s), RecordDefect::kNone) << s;
    }
  }
}

// Randomized: flips, truncations, extensions, splices and garbage are always rejected, with a
// defect, and never crash (run under ASan/UBSan too).
TEST(BlockRecordTest, RandomDamageIsAlwaysRejected) {
  std::mt19937_64 rng(6);
  for (int iter = 0; iter < 20000; ++iter) {
    const BlockRecord r = MakeRecord(rng, static_cast<int>(rng() % 20), rng() % 300);
    const std::vector<uint8_t> good = Serialize(r, Fp(1));
    std::vector<uint8_t> b = good;
    switch (rng() % 5) {
      case 0: {  // 1 to 4 byte flips
        const int n = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < n; ++k) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
        break;
      }
      case 1:  // truncation
        b.resize(rng() % b.size());
        break;
      case 2: {  // extension
        const int n = 1 + static_cast<int>(rng() % 16);
        for (int k = 0; k < n; ++k) b.push_back(static_cast<uint8_t>(rng()));
        break;
      }
      case 3: {  // a run overwritten with random bytes
        const size_t at = rng() % b.size();
        const size_t len = std::min<size_t>(1 + rng() % 32, b.size() - at);
        for (size_t k = 0; k < len; ++k) b[at + k] = static_cast<uint8_t>(rng());
        break;
      }
      case 4:  // garbage of random length, magic kept half the time
        b.resize(rng() % 400);
        for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
        if (rng() % 2 && b.size() >= 12) std::copy(good.begin(), good.begin() + 12, b.begin());
        break;
    }
    if (b == good) continue;  // a flip that XORed the same byte back, or a run rewritten equal
    const Status s = Deserialize(b, Fp(1), r.key, kKind).status();
    ASSERT_FALSE(s.ok()) << "iteration " << iter << " accepted damaged bytes";
    ASSERT_NE(RecordDefectOf(s), RecordDefect::kNone) << s;
    ASSERT_FALSE(s.message().empty());
  }
}

}  // namespace
}  // namespace prefixd
