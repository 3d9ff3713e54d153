// DiskStore: the L3 tier, content-addressed block files on local disk under a byte budget
// (--disk-cache-dir, --disk-cache-bytes), least-recently-used first out, so hits survive a
// restart or a crash. Disk is untrusted (ARCHITECTURE.md invariant 6).
//
//   DIR/
//     <fp>/                       this model: fp = first 16 hex digits of its FingerprintHash
//       LOCK                      flock'ed while a DiskStore has the folder open
//       <kk>/<key hex>.blk        one BlockRecord (block_record.h); kk = first 2 hex of the key
//       <kk>/<key hex>.<n>.tmp    a write in progress (a crash leaves it; Open deletes it)
//     <other fp>/                 other models: never read, written or deleted
//     quarantine/<fp>-<key hex>.<defect>.<n>.blk   files that failed verification
//
// Write: serialize -> temp file -> fdatasync -> rename into place, so a file at a .blk name is
// complete or absent whatever the moment of a crash; then (once per batch and shard folder,
// unless sync_dirs is off) fsync of the folder, so a Write that returned OK survives a power
// loss too.
// Read: the whole file is verified (magic, version, fingerprint, size, XXH3 checksum, key,
// and key == ChainKey(parent, tokens)) before a byte is returned. A file that fails is moved
// to quarantine/, counted, logged once per cause per process, and read as NotFound: a miss,
// never served, never a crash. A foreign file (another model or format version) is left
// alone and read as NotFound.
//
// Recency lives in memory; Open rebuilds the index by scanning, reading only the 72-byte
// header of each file, and orders it by file mtime (oldest evicted first).
//
// A record written with `generated` set is ranked least recent once its write has made room
// (as HostStore's; after a restart, files rank by mtime only).
//
// Retention (ARCHITECTURE.md invariant 9), as HostStore's: entries with a RetentionMark live
// in kept_, which the budget empties only once lru_ is empty; marks end at their until_ms
// (ExpireRetention), or oldest first beyond retention_max_share of the budget; a read
// refreshes them. A mark for a block still being written (Retain with remember_absent) waits
// for its Write. The marks outlive a restart: the store writes them to DIR/<fp>/RETENTION when
// it closes (SaveRetention; retention_file.h) and Open gives them back to the blocks it finds,
// less the wall time the server was down, before the budget evicts anything. A crash keeps
// the marks of the last close (each still ending when it would have); a damaged file is
// logged and ignored (every block is then ordinary).
//
// One DiskStore per (DIR, model) across all processes: Open fails while another holds LOCK
// (it would delete the other's temp files and break its budget).
//
// Thread safety: all methods may be called from any thread. A mutex guards the in-memory index
// and is never held during file I/O except the rare quarantine rename, so the engine thread's
// CountPresentPrefix/Contains stay cheap while a background thread runs Write. Stats() reads
// atomics. Write is synchronous: the caller runs it off the engine thread.
#pragma once

#include <array>
#include <climits>
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "base/file_system.h"
#include "kv/retention_mark.h"
#include "tier/retention_lists.h"
#include "tier/tier_store.h"

namespace prefixd {

struct DiskStoreOptions {
  std::string dir;                   // --disk-cache-dir; created if missing
  int64_t budget_bytes = 0;          // --disk-cache-bytes; must be > 0
  std::vector<uint8_t> fingerprint;  // ModelFingerprint::Serialize(); must not be empty
  // Read checks key == ChainKey(*chain_kind, parent, tokens), catching a file whose header
  // was rewritten consistently for another key. nullopt skips that check.
  std::optional<BlockHashKind> chain_kind = BlockHashKind::kXxh3;
  FileSystem* fs = nullptr;  // nullptr: FileSystem::Default(); must outlive the store
  // fsync the shard folders after a Write's renames. Off, a power loss can lose blocks that
  // Write reported as stored (they read as misses, never as damaged blocks: each file's bytes
  // are synced before its rename either way); writes then ran ~1.6x faster on this machine's
  // ext4 (bench/tier_bench.cc).
  bool sync_dirs = true;
  // Called on the opening thread during the start-up scan: (0, total) first, then every few
  // files, then (total, total). May be empty.
  std::function<void(int64_t files_done, int64_t files_total)> progress;
  // Beyond this many files in quarantine/, a failed file is deleted instead of moved.
  int64_t max_quarantine_files = 1000;
  // Retention: the clock marks run on (nullptr: SteadyClock; must outlive the store) and the
  // share of the budget retained entries may hold.
  const Clock* clock = nullptr;
  double retention_max_share = 0.5;
  // Unix time for the retention file (nullptr: WallClock; must outlive the store).
  const Clock* wall_clock = nullptr;
};

// What Open found, for one log line at start-up.
struct DiskScanReport {
  int64_t files_found = 0;         // block files whose header, name and size check out
  int64_t bytes_found = 0;         // their total size
  int64_t evicted = 0;             // of those, the oldest, deleted to fit the budget
  int64_t foreign_files = 0;       // other model / format version inside our folder, kept
  int64_t other_model_dirs = 0;    // other models' folders next to ours, not scanned
  int64_t temp_files_removed = 0;  // writes a crash interrupted
  int64_t quarantined = 0;         // bad header, wrong size or name, or unreadable
  int64_t ignored_files = 0;       // names that are not ours (left alone)
  int64_t retained = 0;            // found files that took back a mark from RETENTION
  double seconds = 0;              // wall time of Open

  std::string ToString() const;
};

class DiskStore final : public TierStore {
 public:
  // Creates DIR/<fp>/ and DIR/quarantine/ if needed, locks DIR/<fp>/LOCK, deletes temp files,
  // quarantines files whose header, size or name is wrong, indexes the rest by mtime, and
  // evicts the oldest beyond the budget. Fails (with the path and cause) when the folder
  // cannot be created, locked or listed; a bad file never fails Open.
  static StatusOr<std::unique_ptr<DiskStore>> Open(DiskStoreOptions options);
  ~DiskStore() override;

  std::string_view name() const override { return "disk"; }
  int CountPresentPrefix(std::span<const BlockKey> keys) const override;
  bool Contains(const BlockKey& key) const override;
  std::vector<StatusOr<BlockRecord>> Read(std::span<const BlockKey> keys) override;
  std::vector<Status> Write(std::vector<BlockRecord> records) override;
  int Remove(std::span<const BlockKey> keys) override;
  // Deletes every file of this model's index. A Write in flight during Clear is dropped.
  Status Clear() override;
  TierStats Stats() const override { return counters_.Snapshot(); }

  const DiskScanReport& scan_report() const { return scan_report_; }
  // DIR/<fp>: this model's folder.
  const std::string& model_dir() const { return model_dir_; }
  // DIR/quarantine.
  const std::string& quarantine_dir() const { return quarantine_dir_; }
  // Where `key`'s file lives (whether or not it exists).
  std::string PathFor(const BlockKey& key) const;

  // Indexed keys, retained ones first, each list most recently used first (tests, debugging).
  std::vector<BlockKey> KeysByRecency() const;

  // Merges `mark` into the entries of `keys` the store holds; with `remember_absent`, a key
  // not held yet takes the mark when a Write indexes it (a bounded memory: the marks of
  // blocks queued for writing). Returns how many held entries took it.
  int Retain(std::span<const BlockKey> keys, const RetentionMark& mark, bool remember_absent);
  // Ends the marks whose until_ms <= now_ms. Returns how many.
  int ExpireRetention(int64_t now_ms);
  RetentionMark MarkOf(const BlockKey& key) const;
  // Writes the live marks to DIR/<fp>/RETENTION (removes it when there is none), atomically.
  // The destructor calls it; file I/O.
  Status SaveRetention();

  // Tells `observer` of every block the store holds now as stored, oldest first, with its
  // parent key and token ids read from its file's first bytes (no KV; the checksum is checked
  // only when the block is read for use, as after any scan). For an observer set after Open,
  // so that it learns what the start-up scan found (KV events: a router sees the disk's
  // blocks after a restart). A file that cannot be read or parsed any more is skipped (a
  // later Read quarantines it). Returns the number announced. File I/O: call at start-up.
  int64_t AnnounceResident(ResidencyObserver& observer) const;

  // Stops the process if the index, the LRU list, the byte count, the budget and the counters
  // disagree, or an indexed file is missing or has another size. Does file I/O; call only
  // while no other thread uses the store.
  void CheckInvariants() const;

 private:
  struct Entry {
    BlockKey key;
    int64_t bytes = 0;  // file size, charged against the budget
    uint64_t seq = 0;   // unique per insertion: tells a re-written entry from the one read
    RetentionMark mark;  // marked exactly when the entry is in kept_
  };
  using List = std::list<Entry>;

  // Under mu_: moves `it` to the front (or back) of the list `mark` says, with that mark.
  // The retention lists' shared mechanics over this store's members (retention_lists.h).
  RetentionLists<List> Lists() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return {lru_, kept_, kept_bytes_, next_expiry_ms_};
  }
  void PlaceLocked(List::iterator it, const RetentionMark& mark, bool most_recent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under mu_: a use of `it` (most recent in its list; a mark is refreshed).
  void TouchLocked(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under mu_: drops `it` from its list and the byte counts (not from index_).
  void EraseLocked(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  DiskStore(DiskStoreOptions options, FingerprintHash fingerprint, std::string model_dir,
            std::string quarantine_dir, std::unique_ptr<FileLock> lock);

  struct ScanCandidate {
    BlockKey key;  // from the file name
    std::string path;
  };
  struct ScannedFile {
    BlockKey key;
    int64_t bytes;
    int64_t mtime_ns;
  };
  // Open's index rebuild: ListBlockFiles, CheckBlockFile on each, insert by mtime, evict.
  Status Scan();
  // The marks DIR/<fp>/RETENTION holds, rebased on clock_ (empty when it is absent or refused).
  absl::flat_hash_map<BlockKey, RetentionMark> ReadRetentionFile();
  // Names under DIR/<fp>: block files to check; deletes temp files; counts the rest.
  StatusOr<std::vector<ScanCandidate>> ListBlockFiles();
  // Header and size of one file: the file to index, or nullopt (foreign, gone, or
  // quarantined here).
  std::optional<ScannedFile> CheckBlockFile(const ScanCandidate& candidate);
  // Under mu_: inserts an entry at the front of the LRU list and evicts from the back while
  // over budget, appending the victims' paths to `victims` (and their keys to `victim_keys`,
  // when given).
  void InsertLocked(const BlockKey& key, int64_t bytes, std::vector<std::string>& victims,
                    std::vector<BlockKey>* victim_keys = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads and verifies one key; a miss or a failure is NotFound (or the read error).
  StatusOr<BlockRecord> ReadOne(const BlockKey& key);
  // After a failed read of insertion `seq` of `key`: drops the entry if it is still that
  // insertion (a concurrent Remove + Write may have replaced it) and, when `quarantine`, moves
  // its file to quarantine/ under the lock, so a newer file for the key is never moved.
  void Discard(const BlockKey& key, uint64_t seq, const Status& cause, bool quarantine);
  // Moves `path` to quarantine/ (or deletes it past the cap), counts it, logs once per cause.
  void Quarantine(const std::string& path, const BlockKey& key, const Status& cause);
  Status EnsureShardDir(const BlockKey& key);
  void RemoveFiles(const std::vector<std::string>& paths);

  const DiskStoreOptions options_;
  FileSystem* const fs_;
  const FingerprintHash fingerprint_;
  const std::string model_dir_;
  const std::string quarantine_dir_;
  const std::unique_ptr<FileLock> lock_;  // held for the store's lifetime
  DiskScanReport scan_report_;            // set by Open, then constant

  mutable Mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);   // unmarked entries; front: most recently used
  List kept_ ABSL_GUARDED_BY(mu_);  // marked entries; front: most recently used or marked
  int64_t kept_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_expiry_ms_ ABSL_GUARDED_BY(mu_) = INT64_MAX;  // no mark ends before this
  // Marks for keys not indexed yet (Retain with remember_absent), at most kMaxPendingMarks.
  absl::flat_hash_map<BlockKey, RetentionMark> pending_marks_ ABSL_GUARDED_BY(mu_);
  const Clock* const clock_;
  const Clock* const wall_clock_;
  const int64_t max_retained_bytes_;
  absl::flat_hash_map<BlockKey, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // sum of Entry::bytes; <= budget after each call
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  // Bumped by Clear: a Write that started before drops its file instead of indexing it.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<int64_t> quarantine_files_{0};          // files in quarantine/ (approximate)
  std::atomic<uint64_t> temp_seq_{0};                 // unique temp file names within the process
  std::array<std::atomic<bool>, 256> shard_ready_{};  // DIR/<fp>/<kk> created
  TierCounters counters_;
};

}  // namespace prefixd
