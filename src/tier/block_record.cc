#include "tier/block_record.h"

#include <bit>
#include <cstring>

#include "absl/strings/cord.h"
#include "base/check.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace prefixd {
namespace {

constexpr uint8_t kMagic[8] = {'P', 'F', 'X', 'D', 'B', 'L', 'K', 0x1a};
constexpr char kDefectPayloadUrl[] = "type.prefixd/tier.RecordDefect";

constexpr std::string_view kDefectNames[kNumRecordDefects] = {
    "none",          "truncated", "bad magic",    "other version", "other model",
    "size mismatch", "checksum",  "key mismatch", "chain mismatch"};

// Field offsets of the fixed header (block_record.h).
constexpr size_t kOffVersion = 8;
constexpr size_t kOffNumTokens = 12;
constexpr size_t kOffKvBytes = 16;
constexpr size_t kOffFingerprint = 24;
constexpr size_t kOffKey = 40;
constexpr size_t kOffParent = 56;
static_assert(kOffParent + 16 == kBlockRecordHeaderBytes);

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string Hex64(uint64_t v) { return absl::StrFormat("%016x", v); }

}  // namespace

FingerprintHash HashFingerprint(std::span<const uint8_t> fingerprint_bytes) {
  const XXH128_hash_t h = XXH3_128bits(fingerprint_bytes.data(), fingerprint_bytes.size());
  return FingerprintHash{h.high64, h.low64};
}

std::string ToHex(FingerprintHash hash) { return Hex64(hash.hi) + Hex64(hash.lo); }

std::string_view RecordDefectName(RecordDefect defect) {
  return kDefectNames[static_cast<int>(defect)];
}

RecordDefect RecordDefectOf(const Status& status) {
  if (status.ok()) return RecordDefect::kNone;
  const auto payload = status.GetPayload(kDefectPayloadUrl);  // absl::optional<absl::Cord>
  if (!payload.has_value()) return RecordDefect::kNone;
  const std::string name(*payload);
  for (int i = 0; i < kNumRecordDefects; ++i) {
    if (kDefectNames[i] == name) return static_cast<RecordDefect>(i);
  }
  return RecordDefect::kNone;
}

Status RecordDefectError(RecordDefect defect, std::string message) {
  const bool foreign = defect == RecordDefect::kOtherVersion || defect == RecordDefect::kOtherModel;
  Status status = foreign ? absl::FailedPreconditionError(message) : absl::DataLossError(message);
  status.SetPayload(kDefectPayloadUrl, absl::Cord(std::string(RecordDefectName(defect))));
  return status;
}

bool IsForeignRecord(const Status& status) {
  const RecordDefect d = RecordDefectOf(status);
  return d == RecordDefect::kOtherVersion || d == RecordDefect::kOtherModel;
}

uint64_t BlockRecordHeader::RecordBytes() const {
  // num_tokens < 2^32 and kv_bytes is checked against a real length before this is trusted,
  // but keep the sum from wrapping for any header: saturate.
  const uint64_t fixed =
      kBlockRecordHeaderBytes + kBlockRecordChecksumBytes + 4 * uint64_t{num_tokens};
  return kv_bytes > UINT64_MAX - fixed ? UINT64_MAX : fixed + kv_bytes;
}

uint64_t SerializedSize(size_t num_tokens, size_t kv_bytes) {
  return kBlockRecordHeaderBytes + 4 * uint64_t{num_tokens} + kv_bytes + kBlockRecordChecksumBytes;
}

std::vector<uint8_t> Serialize(const BlockRecord& record, FingerprintHash fingerprint) {
  PREFIXD_CHECK(record.tokens.size() <= UINT32_MAX, "a block record with 2^32 or more tokens");
  const size_t num_tokens = record.tokens.size();
  std::vector<uint8_t> out(SerializedSize(num_tokens, record.kv.size()));
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, sizeof(kMagic));
  PutU32(p + kOffVersion, kBlockRecordFormatVersion);
  PutU32(p + kOffNumTokens, static_cast<uint32_t>(num_tokens));
  PutU64(p + kOffKvBytes, record.kv.size());
  PutU64(p + kOffFingerprint, fingerprint.hi);
  PutU64(p + kOffFingerprint + 8, fingerprint.lo);
  PutU64(p + kOffKey, record.key.hi);
  PutU64(p + kOffKey + 8, record.key.lo);
  PutU64(p + kOffParent, record.parent.hi);
  PutU64(p + kOffParent + 8, record.parent.lo);
  p += kBlockRecordHeaderBytes;
  if constexpr (std::endian::native == std::endian::little) {
    if (num_tokens > 0) std::memcpy(p, record.tokens.data(), 4 * num_tokens);
  } else {
    for (size_t i = 0; i < num_tokens; ++i)
      PutU32(p + 4 * i, static_cast<uint32_t>(record.tokens[i]));
  }
  p += 4 * num_tokens;
  if (!record.kv.empty()) std::memcpy(p, record.kv.data(), record.kv.size());
  p += record.kv.size();
  const size_t covered = static_cast<size_t>(p - out.data());
  PutU64(p, XXH3_64bits(out.data(), covered));
  return out;
}

StatusOr<BlockRecordHeader> ParseHeader(std::span<const uint8_t> bytes,
                                        FingerprintHash expected_fingerprint) {
  if (bytes.size() < kBlockRecordHeaderBytes) {
    return RecordDefectError(
        RecordDefect::kTruncated,
        absl::StrCat("block record truncated: ", bytes.size(), " bytes, shorter than the ",
                     kBlockRecordHeaderBytes, "-byte header"));
  }
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return RecordDefectError(RecordDefect::kBadMagic, "not a prefixd block record (bad magic)");
  }
  BlockRecordHeader h;
  h.version = GetU32(p + kOffVersion);
  if (h.version != kBlockRecordFormatVersion) {
    return RecordDefectError(RecordDefect::kOtherVersion,
                             absl::StrCat("block record format version ", h.version,
                                          ", this build reads ", kBlockRecordFormatVersion));
  }
  h.num_tokens = GetU32(p + kOffNumTokens);
  h.kv_bytes = GetU64(p + kOffKvBytes);
  h.fingerprint = {GetU64(p + kOffFingerprint), GetU64(p + kOffFingerprint + 8)};
  h.key = {GetU64(p + kOffKey), GetU64(p + kOffKey + 8)};
  h.parent = {GetU64(p + kOffParent), GetU64(p + kOffParent + 8)};
  if (h.fingerprint != expected_fingerprint) {
    return RecordDefectError(
        RecordDefect::kOtherModel,
        absl::StrCat("block record of another model (fingerprint ", ToHex(h.fingerprint),
                     ", expected ", ToHex(expected_fingerprint), ")"));
  }
  return h;
}

StatusOr<BlockRecord> Deserialize(std::span<const uint8_t> bytes,
                                  FingerprintHash expected_fingerprint,
                                  const BlockKey& expected_key,
                                  std::optional<BlockHashKind> chain_kind) {
  // The fingerprint is compared after the checksum (a flipped fingerprint byte is corruption,
  // not a foreign file), so parse the header against the fingerprint it carries.
  const FingerprintHash stored_fingerprint =
      bytes.size() >= kBlockRecordHeaderBytes
          ? FingerprintHash{GetU64(bytes.data() + kOffFingerprint),
                            GetU64(bytes.data() + kOffFingerprint + 8)}
          : expected_fingerprint;
  ASSIGN_OR_RETURN(const BlockRecordHeader h, ParseHeader(bytes, stored_fingerprint));

  const uint64_t want = h.RecordBytes();
  if (want > bytes.size()) {
    return RecordDefectError(
        RecordDefect::kTruncated,
        absl::StrCat("block record truncated: ", bytes.size(), " bytes, header says ", want, " (",
                     h.num_tokens, " tokens, ", h.kv_bytes, " kv bytes)"));
  }
  if (want < bytes.size()) {
    return RecordDefectError(RecordDefect::kSizeMismatch,
                             absl::StrCat("block record has ", bytes.size() - want,
                                          " bytes past the end its header says (", want, ")"));
  }
  const size_t covered = bytes.size() - kBlockRecordChecksumBytes;
  const uint64_t stored_sum = GetU64(bytes.data() + covered);
  const uint64_t actual_sum = XXH3_64bits(bytes.data(), covered);
  if (stored_sum != actual_sum) {
    return RecordDefectError(RecordDefect::kChecksum,
                             absl::StrCat("block record checksum mismatch: stored ",
                                          Hex64(stored_sum), ", computed ", Hex64(actual_sum)));
  }
  if (h.fingerprint != expected_fingerprint) {
    return RecordDefectError(
        RecordDefect::kOtherModel,
        absl::StrCat("block record of another model (fingerprint ", ToHex(h.fingerprint),
                     ", expected ", ToHex(expected_fingerprint), ")"));
  }
  if (h.key != expected_key) {
    return RecordDefectError(
        RecordDefect::kKeyMismatch,
        absl::StrCat("block record holds key ", ToHex(h.key), ", expected ", ToHex(expected_key)));
  }

  BlockRecord record;
  record.key = h.key;
  record.parent = h.parent;
  record.tokens.resize(h.num_tokens);
  const uint8_t* p = bytes.data() + kBlockRecordHeaderBytes;
  if constexpr (std::endian::native == std::endian::little) {
    if (h.num_tokens > 0) std::memcpy(record.tokens.data(), p, 4 * size_t{h.num_tokens});
  } else {
    for (size_t i = 0; i < h.num_tokens; ++i)
      record.tokens[i] = static_cast<int32_t>(GetU32(p + 4 * i));
  }
  p += 4 * size_t{h.num_tokens};
  record.kv.assign(p, p + h.kv_bytes);

  if (chain_kind.has_value()) {
    const BlockKey computed = ChainKey(*chain_kind, record.parent, record.tokens);
    if (computed != record.key) {
      return RecordDefectError(
          RecordDefect::kChainMismatch,
          absl::StrCat("block record key ", ToHex(record.key),
                       " is not the chain hash of its parent and tokens (", ToHex(computed), ")"));
    }
  }
  return record;
}

}  // namespace prefixd
