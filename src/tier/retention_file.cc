#include "tier/retention_file.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace prefixd {

namespace {

constexpr uint8_t kMagic[8] = {'P', 'F', 'X', 'D', 'R', 'E', 'T', 0x1a};
constexpr size_t kHeaderBytes = 24;
constexpr size_t kMarkBytes = 40;
constexpr size_t kChecksumBytes = 8;

void Put(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t Get(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Status Defect(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("retention marks file: ", what));
}

}  // namespace

std::vector<uint8_t> SerializeRetentionFile(std::span<const KeyMark> marks, int64_t now_ms, int64_t wall_ms) {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof(kMagic));
  Put(out, kRetentionFileVersion, 4);
  const size_t count_at = out.size();
  Put(out, 0, 4);
  Put(out, static_cast<uint64_t>(wall_ms), 8);
  uint32_t n = 0;
  for (const KeyMark& m : marks) {
    if (!m.mark.live(now_ms)) continue;
    Put(out, m.key.hi, 8);
    Put(out, m.key.lo, 8);
    Put(out, static_cast<uint32_t>(m.mark.priority), 4);
    Put(out, 0, 4);
    Put(out, static_cast<uint64_t>(m.mark.duration_ms), 8);
    Put(out, static_cast<uint64_t>(m.mark.until_ms - now_ms), 8);
    ++n;
  }
  for (int i = 0; i < 4; ++i) out[count_at + i] = static_cast<uint8_t>(n >> (8 * i));
  Put(out, XXH3_64bits(out.data(), out.size()), 8);
  return out;
}

StatusOr<std::vector<KeyMark>> ParseRetentionFile(std::span<const uint8_t> bytes, int64_t now_ms, int64_t wall_ms) {
  if (bytes.size() < kHeaderBytes + kChecksumBytes) return Defect(absl::StrCat("only ", bytes.size(), " bytes"));
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) return Defect("bad magic");
  const uint32_t version = static_cast<uint32_t>(Get(bytes.data() + 8, 4));
  if (version != kRetentionFileVersion) {
    return Defect(absl::StrCat("format version ", version, "; this server reads ", kRetentionFileVersion));
  }
  const uint64_t n = Get(bytes.data() + 12, 4);
  const uint64_t want = kHeaderBytes + n * kMarkBytes + kChecksumBytes;
  if (bytes.size() != want) return Defect(absl::StrCat(bytes.size(), " bytes where ", n, " marks take ", want));
  const size_t covered = bytes.size() - kChecksumBytes;
  if (Get(bytes.data() + covered, 8) != XXH3_64bits(bytes.data(), covered)) return Defect("checksum mismatch");
  // Wall time that passed while no server ran; none when the clock was set back.
  const int64_t written = static_cast<int64_t>(Get(bytes.data() + 16, 8));
  const int64_t passed = std::max<int64_t>(0, wall_ms - written);
  std::vector<KeyMark> out;
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t* p = bytes.data() + kHeaderBytes + i * kMarkBytes;
    KeyMark m;
    m.key = BlockKey{Get(p, 8), Get(p + 8, 8)};
    const int64_t priority = static_cast<int32_t>(Get(p + 16, 4));
    const int64_t duration = static_cast<int64_t>(Get(p + 24, 8));
    const int64_t left = static_cast<int64_t>(Get(p + 32, 8)) - passed;
    if (priority < 1 || priority > kMaxRetentionPriority || duration <= 0) {
      return Defect(absl::StrCat("mark ", i, " has priority ", priority, " and duration ", duration, " ms"));
    }
    if (left <= 0) continue;  // ran out while the server was down
    m.mark = RetentionMark{static_cast<int>(priority), duration, now_ms + std::min(left, duration)};
    out.push_back(m);
  }
  return out;
}

}  // namespace prefixd
