#include "base/file_system.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "base/fault_file_system.h"

namespace prefixd {
namespace {

using Op = FaultFileSystem::Op;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/prefixd_fs_test_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<std::string> Names(FileSystem& fs, const std::string& dir) {
  std::vector<std::string> names;
  const std::vector<DirEntry> entries = fs.ListDir(dir).value();
  for (const DirEntry& e : entries) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

TEST(PathTest, ParentAndJoin) {
  EXPECT_EQ(ParentDir("a/b/c.blk"), "a/b");
  EXPECT_EQ(ParentDir("c.blk"), ".");
  EXPECT_EQ(ParentDir("/c"), "/");
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("a/b/", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("", "c"), "c");
}

TEST(PosixFileSystemTest, WriteAtomicallyThenReadBack) {
  TempDir tmp;
  FileSystem& fs = *FileSystem::Default();
  const std::string dir = JoinPath(tmp.path(), "x/y/z");
  ASSERT_TRUE(fs.CreateDirs(dir).ok());
  ASSERT_TRUE(fs.CreateDirs(dir).ok()) << "CreateDirs of an existing directory is OK";
  const std::string path = JoinPath(dir, "f.blk");
  ASSERT_TRUE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("hello world")).ok());

  EXPECT_EQ(fs.ReadFile(path).value(), Bytes("hello world"));
  EXPECT_EQ(fs.ReadFilePrefix(path, 5).value(), Bytes("hello"));
  EXPECT_EQ(fs.ReadFilePrefix(path, 100).value(), Bytes("hello world"));
  const FileInfo info = fs.Stat(path).value();
  EXPECT_EQ(info.size, 11);
  EXPECT_FALSE(info.is_dir);
  EXPECT_GT(info.mtime_ns, 0);
  EXPECT_TRUE(fs.Stat(dir).value().is_dir);
  EXPECT_EQ(Names(fs, dir), std::vector<std::string>{"f.blk"}) << "the temp file is gone";

  ASSERT_TRUE(fs.RenameFile(path, JoinPath(dir, "g.blk")).ok());
  ASSERT_TRUE(fs.RemoveFile(JoinPath(dir, "g.blk")).ok());
  EXPECT_TRUE(Names(fs, dir).empty());
  ASSERT_TRUE(fs.SyncDir(dir).ok());
}

TEST(PosixFileSystemTest, ErrorsNameThePathAndTheCause) {
  TempDir tmp;
  FileSystem& fs = *FileSystem::Default();
  const std::string missing = JoinPath(tmp.path(), "missing.blk");
  const Status read = fs.ReadFile(missing).status();
  EXPECT_TRUE(absl::IsNotFound(read)) << read;
  EXPECT_NE(read.message().find(missing), std::string::npos) << read;
  EXPECT_NE(read.message().find("No such file"), std::string::npos) << read;
  EXPECT_TRUE(absl::IsNotFound(fs.RemoveFile(missing)));
  EXPECT_TRUE(absl::IsNotFound(fs.Stat(missing).status()));
  EXPECT_TRUE(absl::IsNotFound(fs.ListDir(missing).status()));
  EXPECT_FALSE(fs.NewWritableFile(JoinPath(tmp.path(), "no/such/dir/f")).ok());

  // A file where a directory is wanted.
  const std::string file = JoinPath(tmp.path(), "file");
  ASSERT_TRUE(WriteFileAtomically(fs, file, file + ".tmp", Bytes("x")).ok());
  EXPECT_FALSE(fs.CreateDirs(file).ok());
  EXPECT_FALSE(fs.CreateDirs(JoinPath(file, "sub")).ok());
}

TEST(PosixFileSystemTest, WriteAtomicallyFailureLeavesNothing) {
  TempDir tmp;
  FileSystem& fs = *FileSystem::Default();
  // The rename fails (target is a non-empty directory); the temp file is removed.
  const std::string target = JoinPath(tmp.path(), "target");
  ASSERT_TRUE(fs.CreateDirs(JoinPath(target, "inner")).ok());
  const std::string temp = JoinPath(tmp.path(), "t.tmp");
  EXPECT_FALSE(WriteFileAtomically(fs, target, temp, Bytes("abc")).ok());
  EXPECT_EQ(Names(fs, tmp.path()), std::vector<std::string>{"target"});
}

TEST(PosixFileSystemTest, LockFileIsExclusiveUntilReleased) {
  TempDir tmp;
  FileSystem& fs = *FileSystem::Default();
  const std::string path = JoinPath(tmp.path(), "LOCK");
  StatusOr<std::unique_ptr<FileLock>> first = fs.LockFile(path);
  ASSERT_TRUE(first.ok()) << first.status();
  const Status second = fs.LockFile(path).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(second)) << second;
  first->reset();
  EXPECT_TRUE(fs.LockFile(path).ok());
}

TEST(FaultFileSystemTest, FailNthFailsExactlyThatCall) {
  TempDir tmp;
  FaultFileSystem fs(FileSystem::Default());
  const std::string path = JoinPath(tmp.path(), "f");
  fs.FailNth(Op::kSync, 2, ENOSPC);
  EXPECT_TRUE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("a")).ok());
  const Status s = WriteFileAtomically(fs, path, path + ".tmp", Bytes("bb"));
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("injected fault: sync"), std::string::npos) << s;
  EXPECT_EQ(fs.ReadFile(path).value(), Bytes("a")) << "a failed write leaves the old file";
  EXPECT_EQ(Names(fs, tmp.path()), std::vector<std::string>{"f"});
  EXPECT_TRUE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("ccc")).ok());
  EXPECT_EQ(fs.num_calls(Op::kSync), 3);
}

TEST(FaultFileSystemTest, FailAlwaysUntilCleared) {
  TempDir tmp;
  FaultFileSystem fs(FileSystem::Default());
  const std::string path = JoinPath(tmp.path(), "f");
  fs.FailAlways(Op::kRename);
  EXPECT_FALSE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("a")).ok());
  EXPECT_FALSE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("a")).ok());
  EXPECT_TRUE(Names(fs, tmp.path()).empty());
  fs.ClearFaults();
  EXPECT_TRUE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("a")).ok());
}

TEST(FaultFileSystemTest, TornAppendKeepsAPrefixAndReportsSuccess) {
  TempDir tmp;
  FaultFileSystem fs(FileSystem::Default());
  const std::string path = JoinPath(tmp.path(), "f");
  fs.TearNthAppend(1, 4);
  ASSERT_TRUE(WriteFileAtomically(fs, path, path + ".tmp", Bytes("0123456789")).ok());
  EXPECT_EQ(fs.ReadFile(path).value(), Bytes("0123"));
}

TEST(FaultFileSystemTest, CrashKeepsOnlyWhatWasMadeDurable) {
  TempDir tmp;
  FaultFileSystem fs(FileSystem::Default());
  const std::string dir = tmp.path();
  auto p = [&](const char* name) { return JoinPath(dir, name); };

  // Durable: written, synced, renamed, directory synced.
  ASSERT_TRUE(WriteFileAtomically(fs, p("durable"), p("durable.tmp"), Bytes("kept")).ok());
  // Synced and renamed, but the rename never made durable (no SyncDir of "sub"): back at the
  // temp name, whose own entry was never synced either, so it is gone.
  const std::string sub = p("sub");
  ASSERT_TRUE(fs.CreateDirs(sub).ok());
  ASSERT_TRUE(WriteFileAtomically(fs, JoinPath(sub, "renamed"), JoinPath(sub, "renamed.tmp"),
                                  Bytes("x"), /*sync_dir=*/false)
                  .ok());
  ASSERT_EQ(Names(fs, sub), std::vector<std::string>{"renamed"});
  // Created, entry synced, bytes never synced: present but empty.
  {
    auto f = fs.NewWritableFile(p("unsynced")).value();
    ASSERT_TRUE(f->Append(Bytes("lost")).ok());
    ASSERT_TRUE(f->Close().ok());
    ASSERT_TRUE(fs.SyncDir(dir).ok());
  }
  // Partly synced: keeps the synced prefix.
  {
    auto f = fs.NewWritableFile(p("partial")).value();
    ASSERT_TRUE(f->Append(Bytes("abc")).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Append(Bytes("def")).ok());
    ASSERT_TRUE(f->Close().ok());
    ASSERT_TRUE(fs.SyncDir(dir).ok());
  }
  // The bug this model exists to catch: rename before fsync, directory synced.
  {
    auto f = fs.NewWritableFile(p("nosync.tmp")).value();
    ASSERT_TRUE(f->Append(Bytes("data")).ok());
    ASSERT_TRUE(f->Close().ok());
    ASSERT_TRUE(fs.RenameFile(p("nosync.tmp"), p("nosync")).ok());
    ASSERT_TRUE(fs.SyncDir(dir).ok());
  }
  // Never synced anywhere.
  {
    auto f = fs.NewWritableFile(p("ghost")).value();
    ASSERT_TRUE(f->Append(Bytes("boo")).ok());
  }

  ASSERT_TRUE(fs.SimulateCrash().ok());
  EXPECT_EQ(Names(fs, dir),
            (std::vector<std::string>{"durable", "nosync", "partial", "sub", "unsynced"}));
  EXPECT_TRUE(Names(fs, sub).empty());
  EXPECT_EQ(fs.ReadFile(p("durable")).value(), Bytes("kept"));
  EXPECT_EQ(fs.ReadFile(p("partial")).value(), Bytes("abc"));
  EXPECT_TRUE(fs.ReadFile(p("unsynced")).value().empty());
  EXPECT_TRUE(fs.ReadFile(p("nosync")).value().empty());
}

TEST(FaultFileSystemTest, DeadAfterCountdownChangesNothing) {
  TempDir tmp;
  FaultFileSystem fs(FileSystem::Default());
  const std::string path = JoinPath(tmp.path(), "f");
  // create, append, sync, close succeed; the rename is the first call of the dead process.
  fs.CrashAfter(4);
  const Status s = WriteFileAtomically(fs, path, path + ".tmp", Bytes("abc"));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(fs.dead());
  EXPECT_FALSE(fs.ReadFile(path + ".tmp").ok()) << "a dead process reads nothing either";
  EXPECT_EQ(Names(*FileSystem::Default(), tmp.path()), std::vector<std::string>{"f.tmp"})
      << "the cleanup after the failed rename did not run";
  ASSERT_TRUE(fs.SimulateCrash().ok());
  EXPECT_FALSE(fs.dead());
  EXPECT_TRUE(Names(fs, tmp.path()).empty()) << "the temp file's entry was never durable";
}

}  // namespace
}  // namespace prefixd
