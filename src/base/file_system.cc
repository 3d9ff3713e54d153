#include "base/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace prefixd {
namespace {

// "<op> '<path>': <errno text>", with the code absl maps the errno to (ENOENT -> NotFound,
// ENOSPC -> ResourceExhausted, EACCES -> PermissionDenied, ...).
Status ErrnoError(int err, const std::string& op, const std::string& path) {
  return absl::ErrnoToStatus(err, absl::StrCat(op, " '", path, "'"));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(std::span<const uint8_t> data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("append to closed ", path_));
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "write", path_);
      }
      data = data.subspan(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  Status Sync() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("sync of closed ", path_));
    // fdatasync is enough: the size is data for this purpose, and mtime may lag.
    if (::fdatasync(fd_) != 0) return ErrnoError(errno, "fdatasync", path_);
    return absl::OkStatus();
  }

  Status Close() override {
    if (fd_ < 0) return absl::OkStatus();
    const int fd = fd_;
    fd_ = -1;
    // No retry on EINTR: on Linux the descriptor is released even then.
    if (::close(fd) != 0) return ErrnoError(errno, "close", path_);
    return absl::OkStatus();
  }

 private:
  std::string path_;
  int fd_;  // -1 once closed
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }

 private:
  int fd_;
};

// Reads up to `max_bytes` from the start of `path`.
StatusOr<std::vector<uint8_t>> ReadUpTo(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, "fstat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  const size_t want = std::min(max_bytes, static_cast<size_t>(st.st_size));
  std::vector<uint8_t> out(want);
  size_t done = 0;
  while (done < want) {
    const ssize_t n = ::pread(fd, out.data() + done, want - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoError(err, "read", path);
    }
    if (n == 0) break;  // the file shrank since fstat: return what is there
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

class PosixFileSystem final : public FileSystem {
 public:
  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError(errno, "create", path);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) override {
    return ReadUpTo(path, SIZE_MAX);
  }

  StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& path,
                                                size_t max_bytes) override {
    return ReadUpTo(path, max_bytes);
  }

  StatusOr<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat", path);
    FileInfo info;
    info.size = static_cast<int64_t>(st.st_size);
    info.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    info.is_dir = S_ISDIR(st.st_mode);
    return info;
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("rename to '", to, "' of"), from);
    }
    return absl::OkStatus();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoError(errno, "remove", path);
    return absl::OkStatus();
  }

  Status CreateDirs(const std::string& path) override {
    if (path.empty()) return absl::InvalidArgumentError("CreateDirs of an empty path");
    // Create each prefix ending at a '/', then the whole path; EEXIST is fine for all of them
    // (a racing creator, or the directory was there).
    for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
      const std::string prefix = pos == std::string::npos ? path : path.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoError(errno, "mkdir", prefix);
      }
      if (pos == std::string::npos) break;
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, "stat", path);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("'", path, "' exists and is not a directory"));
    }
    return absl::OkStatus();
  }

  Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, "open directory", path);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoError(err, "fsync directory", path);
    return absl::OkStatus();
  }

  StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return ErrnoError(errno, "open directory", path);
    std::vector<DirEntry> out;
    errno = 0;
    while (const dirent* e = ::readdir(dir)) {
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      DirEntry entry{std::string(name), e->d_type == DT_DIR};
      if (e->d_type == DT_UNKNOWN) {  // some file systems do not fill d_type
        struct stat st;
        entry.is_dir = ::stat(JoinPath(path, entry.name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
      }
      out.push_back(std::move(entry));
      errno = 0;
    }
    const int err = errno;
    ::closedir(dir);
    if (err != 0) return ErrnoError(err, "read directory", path);
    return out;
  }

  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError(errno, "open lock file", path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return absl::FailedPreconditionError(
            absl::StrCat("'", path, "' is locked by another process (or another user here)"));
      }
      return ErrnoError(err, "flock", path);
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }
};

}  // namespace

FileSystem* FileSystem::Default() {
  static FileSystem* const fs = new PosixFileSystem();
  return fs;
}

Status WriteFileAtomically(FileSystem& fs, const std::string& path, const std::string& temp_path,
                           std::span<const uint8_t> data, bool sync_dir) {
  Status status = [&]() -> Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs.NewWritableFile(temp_path));
    Status s = file->Append(data);
    if (s.ok()) s = file->Sync();
    // Close even after a failure, so the descriptor is not held until the destructor.
    const Status close_status = file->Close();
    if (s.ok()) s = close_status;
    return s;
  }();
  if (status.ok()) status = fs.RenameFile(temp_path, path);
  if (!status.ok()) {
    fs.RemoveFile(temp_path).IgnoreError();  // may not exist; nothing else to do about it
    return status;
  }
  if (sync_dir) return fs.SyncDir(ParentDir(path));
  return absl::OkStatus();
}

std::string ParentDir(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  if (out.back() != '/') out += '/';
  out += name;
  return out;
}

}  // namespace prefixd
