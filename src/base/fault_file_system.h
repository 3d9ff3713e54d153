// FaultFileSystem: a FileSystem for tests that wraps another one (usually the real disk under a
// temp directory) and injects what real disks and real crashes do:
//   - FailNth / FailAlways: an operation returns an I/O error (EIO, ENOSPC, ...) and does
//     nothing;
//   - TearNthAppend: an append keeps only a prefix of its bytes yet reports success (a device
//     that acknowledged a write it tore), so only a checksum can tell;
//   - CrashAfter + SimulateCrash: the process "dies" after N more mutating calls (every later
//     call fails and changes nothing), then a power loss drops everything not made durable:
//
//       not durable at the crash                     after SimulateCrash()
//       bytes appended after the file's last Sync     cut off (file truncated to the synced size)
//       a file created, no SyncDir of its directory   removed
//       a rename, no SyncDir of the target directory  undone (the file is back at its old name)
//
// This is the strictest outcome POSIX allows for each item (a real crash may keep more), which
// is what a crash-safety test wants. Removals and CreateDirs are treated as durable at once.
// Limitation: undoing a rename does not bring back a file the rename replaced.
//
// Only calls made through this object are tracked; files already on the base file system when
// it was created count as durable.
//
// Thread safety: all methods may be called from any thread (one mutex).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"
#include "base/file_system.h"

namespace prefixd {

class FaultFileSystem final : public FileSystem {
 public:
  enum class Op {
    kCreate,      // NewWritableFile
    kAppend,      // WritableFile::Append
    kSync,        // WritableFile::Sync
    kClose,       // WritableFile::Close
    kRename,      // RenameFile
    kRemove,      // RemoveFile
    kCreateDirs,  // CreateDirs
    kSyncDir,     // SyncDir
    kRead,        // ReadFile, ReadFilePrefix
    kStat,        // Stat
    kList,        // ListDir
    kLock,        // LockFile
  };
  static constexpr int kNumOps = 12;

  // `base` must outlive this object.
  explicit FaultFileSystem(FileSystem* base);

  // The n-th call of `op` from now (n = 1: the next one) fails with errno `err` and does
  // nothing. One pending FailNth per op; a new one replaces it.
  void FailNth(Op op, int n, int err = EIO);
  // Every call of `op` fails with errno `err` until ClearFaults.
  void FailAlways(Op op, int err = EIO);
  // The n-th Append from now writes only its first `keep_bytes` bytes and returns OK.
  void TearNthAppend(int n, size_t keep_bytes);
  // After `n` more mutating calls (create, append, sync, close, rename, remove, create dirs,
  // sync dir), the process is dead: every call, reads included, fails with Unavailable
  // ("simulated crash") and changes nothing, until SimulateCrash. n = 0: dead now.
  void CrashAfter(int n);
  // Drops all injected faults (not the tracked durability state).
  void ClearFaults();

  // The power loss and reboot (table above), then ClearFaults and alive again. Returns the
  // first error of the base file system while rolling back.
  Status SimulateCrash();

  bool dead() const;
  // Calls of `op` so far (failed ones included).
  int64_t num_calls(Op op) const;

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) override;
  StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& path, size_t max_bytes) override;
  StatusOr<FileInfo> Stat(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status CreateDirs(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) override;
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;

 private:
  class FaultWritableFile;

  // What a crash would lose of one file written through this object.
  struct FileState {
    int64_t size = 0;            // bytes on the base file system now
    int64_t synced_size = 0;     // bytes that survive a crash (<= size)
    bool entry_durable = false;  // its directory entry survives a crash (SyncDir after create)
  };
  struct Rename {
    std::string from;
    std::string to;
  };

  // Counts the call and decides whether it fails: OK to proceed, or the injected error.
  Status Admit(Op op, const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status AppendTo(const std::string& path, WritableFile& file, std::span<const uint8_t> data);
  Status SyncOf(const std::string& path, WritableFile& file);
  Status CloseOf(const std::string& path, WritableFile& file);

  FileSystem* const base_;
  mutable Mutex mu_;
  std::array<int64_t, kNumOps> calls_ ABSL_GUARDED_BY(mu_) = {};
  // fail_at_[op]: the call count of `op` that fails (0: none).
  std::array<int64_t, kNumOps> fail_at_ ABSL_GUARDED_BY(mu_) = {};
  std::array<int, kNumOps> fail_errno_ ABSL_GUARDED_BY(mu_) = {};
  std::array<bool, kNumOps> fail_always_ ABSL_GUARDED_BY(mu_) = {};
  int64_t tear_at_ ABSL_GUARDED_BY(mu_) = 0;  // Append call count that tears (0: none)
  size_t tear_keep_ ABSL_GUARDED_BY(mu_) = 0;
  // Mutating calls left before death; -1: no crash scheduled.
  int64_t crash_countdown_ ABSL_GUARDED_BY(mu_) = -1;
  bool dead_ ABSL_GUARDED_BY(mu_) = false;
  // Files created through this object since the last SimulateCrash, by current path.
  std::map<std::string, FileState> files_ ABSL_GUARDED_BY(mu_);
  // Renames not yet made durable by a SyncDir of the target's directory, oldest first.
  std::vector<Rename> renames_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prefixd
