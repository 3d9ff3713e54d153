// FileSystem: the file operations the disk tier needs, behind an interface (LevelDB's Env) so
// tests can inject failures and crashes (fault_file_system.h) without a real disk going bad.
//
//   durable write of a block file (WriteFileAtomically):
//     NewWritableFile(tmp) -> Append ... -> Sync -> Close -> RenameFile(tmp, path) -> SyncDir
//   a crash at any step leaves either no file at `path` or the complete one (plus, at worst, a
//   stray temp file that the owner deletes at start-up).
//
// Every fallible call returns a Status whose message names the operation, the path and the
// errno text; the code follows errno (ENOENT -> NotFound, ENOSPC -> ResourceExhausted, ...).
//
// Thread safety: FileSystem implementations are safe to call from any thread. A WritableFile
// belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace prefixd {

// A file opened for writing from its start. Close() is explicit so its error is seen; the
// destructor closes a file the caller forgot (and drops that error).
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends all of `data` (retrying short writes).
  virtual Status Append(std::span<const uint8_t> data) = 0;
  // fsync: the bytes appended so far survive a crash once this returns OK.
  virtual Status Sync() = 0;
  // Releases the descriptor. Appending or syncing after Close is an error.
  virtual Status Close() = 0;
};

// Held while a lock file is locked (flock); the destructor unlocks. Dies with the process, so a
// killed process never leaves a stale lock.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

struct DirEntry {
  std::string name;  // no directory part; "." and ".." are never listed
  bool is_dir = false;
};

struct FileInfo {
  int64_t size = 0;
  int64_t mtime_ns = 0;  // last modification, nanoseconds since the Unix epoch
  bool is_dir = false;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The POSIX file system. Never null; lives for the whole process.
  static FileSystem* Default();

  // Creates (or truncates) `path` for writing. The parent directory must exist.
  virtual StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // The whole file.
  virtual StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) = 0;
  // The first min(max_bytes, size) bytes (a header), without reading the rest.
  virtual StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& path,
                                                        size_t max_bytes) = 0;
  virtual StatusOr<FileInfo> Stat(const std::string& path) = 0;
  // Atomically replaces `to` (if it exists) with `from`. Both in the same file system.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // Removes a file (not a directory). NotFound when it does not exist.
  virtual Status RemoveFile(const std::string& path) = 0;
  // mkdir -p: OK when the directory already exists.
  virtual Status CreateDirs(const std::string& path) = 0;
  // fsync of a directory: makes the creations, renames and removals inside it durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // Entries of a directory, in no particular order.
  virtual StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) = 0;
  // Takes an exclusive advisory lock on `path` (created if missing) without waiting:
  // FailedPrecondition when another process (or another FileLock here) holds it.
  virtual StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
};

// Writes `data` to `path` so that a crash leaves either no file there or the complete one:
// `temp_path` (same directory as `path`) is created, written, fsynced and closed, renamed to
// `path`, and the directory is fsynced when `sync_dir` (a caller renaming many files into one
// directory may sync it once at the end instead). On a failure before the rename,
// `temp_path` is removed (best effort) and `path` is untouched; when only the final SyncDir
// fails, the complete file is at `path` but may not survive a power loss.
Status WriteFileAtomically(FileSystem& fs, const std::string& path, const std::string& temp_path,
                           std::span<const uint8_t> data, bool sync_dir = true);

// "a/b/c.blk" -> "a/b"; "c.blk" -> ".". A trailing slash is not stripped.
std::string ParentDir(std::string_view path);
// "a/b" + "c" -> "a/b/c".
std::string JoinPath(std::string_view dir, std::string_view name);

}  // namespace prefixd
