// BlockRecord: what a lower tier (host RAM, disk, remote) holds for one FULL KV block, and the
// byte format it is stored in on disk and on the wire (ARCHITECTURE.md invariants 3 and 6).
//
// Serialized layout, all integers little-endian, no padding (N tokens, M kv bytes):
//
//   offset     size  field
//   0          8     magic "PFXDBLK\x1a"
//   8          4     format version (kBlockRecordFormatVersion)
//   12         4     N: token count
//   16         8     M: kv byte count
//   24         16    model fingerprint hash (hi, lo): XXH3-128 of ModelFingerprint::Serialize()
//   40         16    key (hi, lo)
//   56         16    parent key (hi, lo): the previous block's key, or the root key h_0
//   72         4*N   token ids (int32)
//   72+4N      M     kv bytes (KvLayout order: layer-major, K rows then V rows); for a hybrid
//                    model's checkpoint block, followed by its recurrent-state snapshot
//                    (StateSnapshots::AppendBytes): M counts both
//   72+4N+M    8     XXH3-64 of bytes [0, 72+4N+M)
//   total      80 + 4N + M
//
// The fixed 72-byte header holds every size, so a scan reads only the header to index a file
// and to check that its length is right. The checksum covers every byte before it, so any
// flipped byte or truncation is caught before anything is used.
//
// Verification failures carry a RecordDefect (RecordDefectOf); a record of another model or
// another format version is "foreign" (IsForeignRecord): a store sharing a directory with other
// models or newer servers ignores it rather than quarantining it.
//
// Thread safety: plain data and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kv/block_key.h"

namespace prefixd {

inline constexpr uint32_t kBlockRecordFormatVersion = 1;
inline constexpr size_t kBlockRecordHeaderBytes = 72;
inline constexpr size_t kBlockRecordChecksumBytes = 8;

// The 128-bit identity of a model's KV format, stored in every record (not the fingerprint
// bytes themselves: those vary in length and would make the header variable).
struct FingerprintHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const FingerprintHash&, const FingerprintHash&) = default;
};

// XXH3-128 of `fingerprint_bytes` (ModelFingerprint::Serialize()).
FingerprintHash HashFingerprint(std::span<const uint8_t> fingerprint_bytes);
// 32 lowercase hex digits, `hi` first.
std::string ToHex(FingerprintHash hash);

struct BlockRecord {
  BlockKey key;                 // ChainKey(kind, parent, tokens)
  BlockKey parent;              // key of the block before, or the root key for block 0
  std::vector<int32_t> tokens;  // the block's tokens (block_size of them)
  std::vector<uint8_t> kv;      // the block's KV bytes, KvLayout::BlockBytes() of them
  // Not stored (a ranking hint for the store it is written to): the block holds tokens a
  // sequence generated that no prompt has sent back, so a tier places it least recent.
  bool generated = false;

  friend bool operator==(const BlockRecord&, const BlockRecord&) = default;
};

// Why a serialized record was rejected.
enum class RecordDefect {
  kNone,           // not a record verification failure (OK, or another kind of error)
  kTruncated,      // shorter than its header says
  kBadMagic,       // not a block record at all
  kOtherVersion,   // foreign: written in another format version
  kOtherModel,     // foreign: written for another model fingerprint
  kSizeMismatch,   // longer than its header says, or a header size that cannot be
  kChecksum,       // bytes changed after writing
  kKeyMismatch,    // a valid record for another key (e.g. files swapped)
  kChainMismatch,  // key != ChainKey(parent, tokens)
};
inline constexpr int kNumRecordDefects = 9;

// "truncated", "bad magic", ... (stable; used in logs and quarantine file names).
std::string_view RecordDefectName(RecordDefect defect);
// The defect a Deserialize/ParseHeader status carries; kNone for OK or other statuses.
RecordDefect RecordDefectOf(const Status& status);
// True for kOtherVersion and kOtherModel: not ours to judge; skip, keep the file.
bool IsForeignRecord(const Status& status);
// The status Deserialize returns for `defect` (DataLoss, or FailedPrecondition for the foreign
// ones) with `message`, for callers that find a defect themselves (a file of the wrong size).
Status RecordDefectError(RecordDefect defect, std::string message);

// The fixed header, as parsed by ParseHeader.
struct BlockRecordHeader {
  uint32_t version = 0;
  uint32_t num_tokens = 0;
  uint64_t kv_bytes = 0;
  FingerprintHash fingerprint;
  BlockKey key;
  BlockKey parent;

  // Size of the whole serialized record this header announces.
  uint64_t RecordBytes() const;
};

// Bytes of a serialized record with `num_tokens` tokens and `kv_bytes` KV bytes.
uint64_t SerializedSize(size_t num_tokens, size_t kv_bytes);
inline uint64_t SerializedSize(const BlockRecord& record) {
  return SerializedSize(record.tokens.size(), record.kv.size());
}

// The format above. Precondition: fewer than 2^32 tokens.
std::vector<uint8_t> Serialize(const BlockRecord& record, FingerprintHash fingerprint);

// Parses the first kBlockRecordHeaderBytes of `bytes` (which may be just the header): magic,
// version, then the fingerprint. Errors, each with a RecordDefect: kTruncated (fewer than 72
// bytes), kBadMagic, kOtherVersion, kOtherModel (fingerprint != expected_fingerprint). Sizes,
// key and checksum are not checked here.
StatusOr<BlockRecordHeader> ParseHeader(std::span<const uint8_t> bytes,
                                        FingerprintHash expected_fingerprint);

// Verifies and decodes a whole record. Checks, in order: length >= header, magic, version,
// sizes (exact length), checksum, fingerprint, key == expected_key, and, when `chain_kind` is
// given, key == ChainKey(*chain_kind, parent, tokens). The first failure is returned as
// DataLoss (FailedPrecondition for the foreign defects) with a message naming the check and
// the values, and the RecordDefect attached. Never reads outside `bytes`; never crashes.
StatusOr<BlockRecord> Deserialize(std::span<const uint8_t> bytes,
                                  FingerprintHash expected_fingerprint,
                                  const BlockKey& expected_key,
                                  std::optional<BlockHashKind> chain_kind);

}  // namespace prefixd
