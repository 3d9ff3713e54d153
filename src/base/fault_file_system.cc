#include "base/fault_file_system.h"

#include <cerrno>
#include <utility>

namespace prefixd {
namespace {

using Op = FaultFileSystem::Op;

constexpr const char* kOpNames[FaultFileSystem::kNumOps] = {
    "create",      "append",   "sync", "close", "rename", "remove",
    "create dirs", "sync dir", "read", "stat",  "list",   "lock"};

bool IsMutating(Op op) {
  switch (op) {
    case Op::kRead:
    case Op::kStat:
    case Op::kList:
    case Op::kLock:
      return false;
    default:
      return true;
  }
}

int Index(Op op) { return static_cast<int>(op); }

}  // namespace

// Forwards to the base file while the owner tracks sizes and injects faults.
class FaultFileSystem::FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultFileSystem* fs, std::string path, std::unique_ptr<WritableFile> base)
      : fs_(fs), path_(std::move(path)), base_(std::move(base)) {}

  Status Append(std::span<const uint8_t> data) override {
    return fs_->AppendTo(path_, *base_, data);
  }
  Status Sync() override { return fs_->SyncOf(path_, *base_); }
  Status Close() override { return fs_->CloseOf(path_, *base_); }

 private:
  FaultFileSystem* fs_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

FaultFileSystem::FaultFileSystem(FileSystem* base) : base_(base) {}

void FaultFileSystem::FailNth(Op op, int n, int err) {
  MutexLock lock(&mu_);
  fail_at_[Index(op)] = calls_[Index(op)] + n;
  fail_errno_[Index(op)] = err;
}

void FaultFileSystem::FailAlways(Op op, int err) {
  MutexLock lock(&mu_);
  fail_always_[Index(op)] = true;
  fail_errno_[Index(op)] = err;
}

void FaultFileSystem::TearNthAppend(int n, size_t keep_bytes) {
  MutexLock lock(&mu_);
  tear_at_ = calls_[Index(Op::kAppend)] + n;
  tear_keep_ = keep_bytes;
}

void FaultFileSystem::CrashAfter(int n) {
  MutexLock lock(&mu_);
  if (n <= 0) {
    dead_ = true;
  } else {
    crash_countdown_ = n;
  }
}

void FaultFileSystem::ClearFaults() {
  MutexLock lock(&mu_);
  fail_at_ = {};
  fail_always_ = {};
  tear_at_ = 0;
  crash_countdown_ = -1;
  dead_ = false;
}

bool FaultFileSystem::dead() const {
  MutexLock lock(&mu_);
  return dead_;
}

int64_t FaultFileSystem::num_calls(Op op) const {
  MutexLock lock(&mu_);
  return calls_[Index(op)];
}

Status FaultFileSystem::Admit(Op op, const std::string& path) {
  const int i = Index(op);
  ++calls_[i];
  if (!dead_ && IsMutating(op) && crash_countdown_ >= 0) {
    if (crash_countdown_ == 0) {
      dead_ = true;
      crash_countdown_ = -1;
    } else {
      --crash_countdown_;
    }
  }
  if (dead_) {
    return absl::UnavailableError(absl::StrCat("simulated crash: ", kOpNames[i], " '", path, "'"));
  }
  if (fail_always_[i] || calls_[i] == fail_at_[i]) {
    return absl::ErrnoToStatus(fail_errno_[i],
                               absl::StrCat("injected fault: ", kOpNames[i], " '", path, "'"));
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<WritableFile>> FaultFileSystem::NewWritableFile(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kCreate, path));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->NewWritableFile(path));
  // A truncated pre-existing file is tracked as new: its old bytes are gone either way.
  files_[path] = FileState{};
  return std::unique_ptr<WritableFile>(new FaultWritableFile(this, path, std::move(file)));
}

Status FaultFileSystem::AppendTo(const std::string& path, WritableFile& file,
                                 std::span<const uint8_t> data) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kAppend, path));
  if (calls_[Index(Op::kAppend)] == tear_at_) data = data.first(std::min(tear_keep_, data.size()));
  RETURN_IF_ERROR(file.Append(data));
  auto it = files_.find(path);
  if (it != files_.end()) it->second.size += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

Status FaultFileSystem::SyncOf(const std::string& path, WritableFile& file) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kSync, path));
  RETURN_IF_ERROR(file.Sync());
  auto it = files_.find(path);
  if (it != files_.end()) it->second.synced_size = it->second.size;
  return absl::OkStatus();
}

Status FaultFileSystem::CloseOf(const std::string& path, WritableFile& file) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kClose, path));
  return file.Close();
}

StatusOr<std::vector<uint8_t>> FaultFileSystem::ReadFile(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kRead, path));
  return base_->ReadFile(path);
}

StatusOr<std::vector<uint8_t>> FaultFileSystem::ReadFilePrefix(const std::string& path,
                                                               size_t max_bytes) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kRead, path));
  return base_->ReadFilePrefix(path, max_bytes);
}

StatusOr<FileInfo> FaultFileSystem::Stat(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kStat, path));
  return base_->Stat(path);
}

Status FaultFileSystem::RenameFile(const std::string& from, const std::string& to) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kRename, from));
  RETURN_IF_ERROR(base_->RenameFile(from, to));
  auto it = files_.find(from);
  if (it != files_.end()) {
    files_[to] = it->second;
    files_.erase(from);
  } else {
    files_.erase(to);  // a durable file now has a (durable) entry at `to` once synced
  }
  renames_.push_back(Rename{from, to});
  return absl::OkStatus();
}

Status FaultFileSystem::RemoveFile(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kRemove, path));
  RETURN_IF_ERROR(base_->RemoveFile(path));
  files_.erase(path);
  return absl::OkStatus();
}

Status FaultFileSystem::CreateDirs(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kCreateDirs, path));
  return base_->CreateDirs(path);
}

Status FaultFileSystem::SyncDir(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kSyncDir, path));
  RETURN_IF_ERROR(base_->SyncDir(path));
  for (auto& [file, state] : files_) {
    if (ParentDir(file) == path) state.entry_durable = true;
  }
  std::erase_if(renames_, [&](const Rename& r) { return ParentDir(r.to) == path; });
  return absl::OkStatus();
}

StatusOr<std::vector<DirEntry>> FaultFileSystem::ListDir(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kList, path));
  return base_->ListDir(path);
}

StatusOr<std::unique_ptr<FileLock>> FaultFileSystem::LockFile(const std::string& path) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Admit(Op::kLock, path));
  return base_->LockFile(path);
}

Status FaultFileSystem::SimulateCrash() {
  MutexLock lock(&mu_);
  Status first_error;
  auto note = [&](Status s) {
    if (first_error.ok() && !s.ok()) first_error = std::move(s);
  };
  // 1. Undo the renames that no SyncDir made durable, newest first, so a chain of renames
  //    walks back to where it started.
  for (auto r = renames_.rbegin(); r != renames_.rend(); ++r) {
    if (!base_->Stat(r->to).ok()) continue;  // removed since; nothing to move back
    note(base_->RenameFile(r->to, r->from));
    auto it = files_.find(r->to);
    if (it != files_.end()) {
      files_[r->from] = it->second;
      files_.erase(r->to);
    }
  }
  renames_.clear();
  // 2. Files whose directory entry never became durable vanish; 3. the others lose the bytes
  //    after their last Sync.
  for (const auto& [path, state] : files_) {
    if (!state.entry_durable) {
      const Status s = base_->RemoveFile(path);
      if (!absl::IsNotFound(s)) note(s);
      continue;
    }
    if (state.synced_size >= state.size) continue;
    StatusOr<std::vector<uint8_t>> kept =
        base_->ReadFilePrefix(path, static_cast<size_t>(state.synced_size));
    if (!kept.ok()) {
      note(kept.status());
      continue;
    }
    note(WriteFileAtomically(*base_, path, path + ".crash-truncate", *kept));
  }
  files_.clear();
  fail_at_ = {};
  fail_always_ = {};
  tear_at_ = 0;
  crash_countdown_ = -1;
  dead_ = false;
  return first_error;
}

}  // namespace prefixd
