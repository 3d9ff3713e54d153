// The disk tier's retention marks across a restart (ARCHITECTURE.md invariant 9): DiskStore
// writes its marks to one side file, DIR/<fp>/RETENTION, when it closes, and reads them back
// when it opens, so that retained block files still rank last after a restart and their marks
// end when they would have. The block files' own format is untouched.
//
// A mark's end is on the cache's Clock, whose epoch is the process's (SteadyClock): the file
// holds what was LEFT of each mark when it was written, and the wall-clock time (Unix ms) of
// the writing; reading takes the wall time that passed since off what was left (a clock set
// backwards takes nothing off). Marks whose time ran out while the server was down come back
// as none.
//
// Layout, little-endian, no padding (N marks):
//   0        8   magic "PFXDRET\x1a"
//   8        4   format version (kRetentionFileVersion)
//   12       4   N
//   16       8   wall-clock time of writing, Unix milliseconds
//   24       40N per mark: key (hi, lo), priority (int32), pad (4 zero bytes), duration_ms, left_ms
//   24+40N   8   XXH3-64 of every byte before
// A file that is short, long, of another version or whose checksum fails is refused whole
// (ParseRetentionFile says why): every block is then ordinary, never misread.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "kv/block_key.h"
#include "kv/retention_mark.h"

namespace prefixd {

inline constexpr uint32_t kRetentionFileVersion = 1;
inline constexpr char kRetentionFileName[] = "RETENTION";

struct KeyMark {
  BlockKey key;
  RetentionMark mark;
};

// The file's bytes for `marks` (until_ms on a clock reading `now_ms`), written at wall time
// `wall_ms`. Marks that have ended by now_ms are left out.
std::vector<uint8_t> SerializeRetentionFile(std::span<const KeyMark> marks, int64_t now_ms, int64_t wall_ms);

// The marks of a file read at wall time `wall_ms`, on a clock reading `now_ms` (until_ms =
// now_ms + what is left of each). InvalidArgument naming the defect for a damaged or foreign
// file.
StatusOr<std::vector<KeyMark>> ParseRetentionFile(std::span<const uint8_t> bytes, int64_t now_ms, int64_t wall_ms);

}  // namespace prefixd
