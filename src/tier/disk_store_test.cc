#include "tier/disk_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "base/fault_file_system.h"

namespace prefixd {
namespace {

namespace fs = std::filesystem;
using Op = FaultFileSystem::Op;

constexpr BlockHashKind kKind = BlockHashKind::kXxh3;
constexpr int kBlockTokens = 4;
constexpr size_t kKvBytes = 256;
constexpr int64_t kRecordBytes = 80 + 4 * kBlockTokens + kKvBytes;  // 352

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/prefixd_disk_test_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> Fingerprint(const std::string& architecture) {
  ModelFingerprint fp;
  fp.architecture = architecture;
  fp.block_size = kBlockTokens;
  fp.head_dim = 64;
  return fp.Serialize();
}

// `n` consecutive full blocks of one prompt: record i's parent is record i-1's key.
std::vector<BlockRecord> MakeChain(const std::vector<uint8_t>& fingerprint, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<BlockRecord> chain;
  BlockKey parent = RootKey(kKind, fingerprint, absl::StrCat("salt", seed));
  for (int i = 0; i < n; ++i) {
    BlockRecord r;
    r.parent = parent;
    for (int t = 0; t < kBlockTokens; ++t) r.tokens.push_back(static_cast<int32_t>(rng() % 32000));
    r.kv.resize(kKvBytes);
    for (uint8_t& b : r.kv) b = static_cast<uint8_t>(rng());
    r.key = ChainKey(kKind, r.parent, r.tokens);
    parent = r.key;
    chain.push_back(std::move(r));
  }
  return chain;
}

std::vector<BlockKey> KeysOf(const std::vector<BlockRecord>& records) {
  std::vector<BlockKey> keys;
  for (const BlockRecord& r : records) keys.push_back(r.key);
  return keys;
}

DiskStoreOptions Options(const std::string& dir, int64_t budget, const std::string& model = "llama",
                         FileSystem* file_system = nullptr) {
  DiskStoreOptions o;
  o.dir = dir;
  o.budget_bytes = budget;
  o.fingerprint = Fingerprint(model);
  o.fs = file_system;
  return o;
}

std::unique_ptr<DiskStore> MustOpen(DiskStoreOptions options) {
  StatusOr<std::unique_ptr<DiskStore>> store = DiskStore::Open(std::move(options));
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  return std::move(store).value();
}

StatusOr<BlockRecord> ReadKey(DiskStore& store, const BlockKey& key) {
  return std::move(store.Read({&key, 1})[0]);
}

bool AllOk(const std::vector<Status>& statuses) {
  return std::all_of(statuses.begin(), statuses.end(), [](const Status& s) { return s.ok(); });
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

int CountFiles(const std::string& dir) {
  if (!fs::exists(dir)) return 0;
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

int CountSuffix(const std::string& dir, std::string_view suffix) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    n += e.is_regular_file() && e.path().string().ends_with(suffix);
  }
  return n;
}

TEST(DiskStoreTest, WriteThenReadAtTheDocumentedPath) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  ASSERT_NE(store, nullptr);
  const std::vector<BlockRecord> chain = MakeChain(Fingerprint("llama"), 3, 1);
  ASSERT_TRUE(AllOk(store->Write(chain)));
  store->CheckInvariants();

  const std::string fp16 = ToHex(HashFingerprint(Fingerprint("llama"))).substr(0, 16);
  const std::string hex = ToHex(chain[0].key);
  EXPECT_EQ(store->model_dir(), tmp.path() + "/" + fp16);
  EXPECT_EQ(store->PathFor(chain[0].key),
            absl::StrCat(tmp.path(), "/", fp16, "/", hex.substr(0, 2), "/", hex, ".blk"));
  EXPECT_TRUE(fs::exists(store->PathFor(chain[0].key)));
  EXPECT_EQ(ReadBytes(store->PathFor(chain[0].key)),
            Serialize(chain[0], HashFingerprint(Fingerprint("llama"))));
  EXPECT_EQ(CountSuffix(tmp.path(), ".tmp"), 0);

  std::vector<BlockKey> keys = KeysOf(chain);
  keys.push_back(BlockKey{1, 2});
  EXPECT_EQ(store->CountPresentPrefix(keys), 3);
  const std::vector<StatusOr<BlockRecord>> got = store->Read(keys);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(*got[i], chain[i]);
  }
  EXPECT_TRUE(absl::IsNotFound(got[3].status()));

  const TierStats s = store->Stats();
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.bytes, 3 * kRecordBytes);
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.writes, 3);
  EXPECT_EQ(s.quarantined, 0);
  EXPECT_EQ(s.write_failures, 0);

  // A held key is not rewritten.
  ASSERT_TRUE(AllOk(store->Write({chain[0]})));
  EXPECT_EQ(store->Stats().writes, 3);
}

TEST(DiskStoreTest, RestartFindsWhatWasWritten) {
  TempDir tmp;
  const std::vector<BlockRecord> chain = MakeChain(Fingerprint("llama"), 10, 2);
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
    ASSERT_TRUE(AllOk(store->Write(chain)));
  }
  std::vector<std::pair<int64_t, int64_t>> progress;
  DiskStoreOptions options = Options(tmp.path(), 100 * kRecordBytes);
  options.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  auto store = MustOpen(std::move(options));
  store->CheckInvariants();
  const DiskScanReport& report = store->scan_report();
  EXPECT_EQ(report.files_found, 10);
  EXPECT_EQ(report.bytes_found, 10 * kRecordBytes);
  EXPECT_EQ(report.quarantined, 0);
  EXPECT_EQ(report.evicted, 0);
  EXPECT_GE(report.seconds, 0);
  EXPECT_NE(report.ToString().find("10 block files"), std::string::npos) << report.ToString();
  ASSERT_GE(progress.size(), 2u);
  EXPECT_EQ(progress.front(), std::make_pair(int64_t{0}, int64_t{10}));
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{10}, int64_t{10}));

  EXPECT_EQ(store->CountPresentPrefix(KeysOf(chain)), 10);
  const std::vector<StatusOr<BlockRecord>> got = store->Read(KeysOf(chain));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(*got[i], chain[i]);
  }
}

TEST(DiskStoreTest, BudgetEvictsLeastRecentlyUsed) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 3 * kRecordBytes));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 5, 3);
  ASSERT_TRUE(AllOk(store->Write({c[0], c[1], c[2]})));
  ASSERT_TRUE(ReadKey(*store, c[0].key).ok());  // a use: c0 becomes the most recent
  EXPECT_TRUE(store->Contains(c[1].key));       // observers change nothing
  EXPECT_EQ(store->KeysByRecency(), (std::vector<BlockKey>{c[0].key, c[2].key, c[1].key}));

  ASSERT_TRUE(AllOk(store->Write({c[3]})));
  store->CheckInvariants();
  EXPECT_FALSE(store->Contains(c[1].key));
  EXPECT_FALSE(fs::exists(store->PathFor(c[1].key))) << "an evicted block's file is deleted";
  EXPECT_EQ(store->KeysByRecency(), (std::vector<BlockKey>{c[3].key, c[0].key, c[2].key}));
  EXPECT_EQ(store->Stats().evictions, 1);
  EXPECT_EQ(store->Stats().bytes, 3 * kRecordBytes);

  // Larger than the whole budget: refused, nothing evicted, not a failure.
  BlockRecord big = c[4];
  big.kv.resize(3 * kRecordBytes);
  const std::vector<Status> w = store->Write({big});
  EXPECT_TRUE(absl::IsResourceExhausted(w[0])) << w[0];
  EXPECT_EQ(store->Stats().entries, 3);
  EXPECT_EQ(store->Stats().write_failures, 0);
}

TEST(DiskStoreTest, RecencyAfterRestartFollowsMtimeAndASmallerBudgetEvictsTheOldest) {
  TempDir tmp;
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 3, 4);
  std::vector<std::string> paths;
  {
    auto store = MustOpen(Options(tmp.path(), 10 * kRecordBytes));
    ASSERT_TRUE(AllOk(store->Write(c)));
    for (const BlockRecord& r : c) paths.push_back(store->PathFor(r.key));
  }
  // Age: c1 newest, c0, then c2 oldest.
  const int64_t base_sec = 1'700'000'000;
  const int64_t age[3] = {base_sec + 20, base_sec + 30, base_sec + 10};
  for (int i = 0; i < 3; ++i) {
    struct timespec times[2] = {{age[i], 0}, {age[i], 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, paths[i].c_str(), times, 0), 0);
  }
  {
    auto store = MustOpen(Options(tmp.path(), 10 * kRecordBytes));
    EXPECT_EQ(store->KeysByRecency(), (std::vector<BlockKey>{c[1].key, c[0].key, c[2].key}));
  }
  auto store = MustOpen(Options(tmp.path(), 2 * kRecordBytes));
  store->CheckInvariants();
  EXPECT_EQ(store->scan_report().evicted, 1);
  EXPECT_EQ(store->KeysByRecency(), (std::vector<BlockKey>{c[1].key, c[0].key}));
  EXPECT_FALSE(fs::exists(paths[2]));
}

TEST(DiskStoreTest, FlippedByteIsQuarantinedOnReadAndIsAMiss) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 5);
  ASSERT_TRUE(AllOk(store->Write(c)));
  const std::string path = store->PathFor(c[0].key);
  std::vector<uint8_t> bytes = ReadBytes(path);
  bytes[200] ^= 0x40;  // inside the KV bytes
  WriteBytes(path, bytes);

  const StatusOr<BlockRecord> r = ReadKey(*store, c[0].key);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status();
  EXPECT_FALSE(store->Contains(c[0].key));
  EXPECT_FALSE(fs::exists(path));
  const std::vector<std::string> q = FileNames(store->quarantine_dir());
  ASSERT_EQ(q.size(), 1u);
  EXPECT_NE(q[0].find(ToHex(c[0].key)), std::string::npos) << q[0];
  EXPECT_NE(q[0].find("checksum"), std::string::npos) << q[0];
  EXPECT_EQ(ReadBytes(JoinPath(store->quarantine_dir(), q[0])), bytes) << "moved, not rewritten";

  TierStats s = store->Stats();
  EXPECT_EQ(s.quarantined, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.hits, 0);
  EXPECT_EQ(s.entries, 1);
  EXPECT_EQ(s.bytes, kRecordBytes);
  store->CheckInvariants();

  // Now an ordinary miss; the neighbour is untouched.
  EXPECT_TRUE(absl::IsNotFound(ReadKey(*store, c[0].key).status()));
  EXPECT_TRUE(ReadKey(*store, c[1].key).ok());
  EXPECT_EQ(store->Stats().quarantined, 1);
  // The block can be written again.
  ASSERT_TRUE(AllOk(store->Write({c[0]})));
  EXPECT_EQ(*ReadKey(*store, c[0].key), c[0]);
}

TEST(DiskStoreTest, TruncatedFileIsQuarantinedOnReadAndAtOpen) {
  TempDir tmp;
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 6);
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
    ASSERT_TRUE(AllOk(store->Write(c)));
    fs::resize_file(store->PathFor(c[0].key), 100);
    const StatusOr<BlockRecord> r = ReadKey(*store, c[0].key);
    EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status();
    EXPECT_EQ(store->Stats().quarantined, 1);
    fs::resize_file(store->PathFor(c[1].key), kRecordBytes - 1);  // seen by the next Open
  }
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  EXPECT_EQ(store->scan_report().quarantined, 1);
  EXPECT_EQ(store->scan_report().files_found, 0);
  EXPECT_FALSE(store->Contains(c[1].key));
  EXPECT_EQ(CountFiles(store->quarantine_dir()), 2);
  store->CheckInvariants();
}

TEST(DiskStoreTest, FilesSwappedBetweenKeysAreQuarantinedOnRead) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 7);
  ASSERT_TRUE(AllOk(store->Write(c)));
  const std::string a = store->PathFor(c[0].key), b = store->PathFor(c[1].key);
  const std::vector<uint8_t> bytes_a = ReadBytes(a), bytes_b = ReadBytes(b);
  WriteBytes(a, bytes_b);
  WriteBytes(b, bytes_a);

  for (const BlockRecord& r : c) {
    const StatusOr<BlockRecord> got = ReadKey(*store, r.key);
    EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
    EXPECT_NE(got.status().message().find("holds key"), std::string::npos) << got.status();
  }
  EXPECT_EQ(store->Stats().quarantined, 2);
  EXPECT_EQ(store->Stats().entries, 0);
  store->CheckInvariants();
}

TEST(DiskStoreTest, FilesSwappedBetweenKeysAreQuarantinedAtOpen) {
  TempDir tmp;
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 3, 8);
  std::string a, b;
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
    ASSERT_TRUE(AllOk(store->Write(c)));
    a = store->PathFor(c[0].key);
    b = store->PathFor(c[1].key);
  }
  const std::vector<uint8_t> bytes_a = ReadBytes(a), bytes_b = ReadBytes(b);
  WriteBytes(a, bytes_b);
  WriteBytes(b, bytes_a);
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  EXPECT_EQ(store->scan_report().quarantined, 2);
  EXPECT_EQ(store->CountPresentPrefix(KeysOf(c)), 0);
  EXPECT_TRUE(store->Contains(c[2].key));
  EXPECT_EQ(store->Stats().quarantined, 2);
}

// A header rewritten consistently (checksum valid, key = file name) over other tokens: only
// the chain hash check catches it.
TEST(DiskStoreTest, RecordWhoseKeyIsNotItsChainHashIsQuarantined) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 1, 9);
  ASSERT_TRUE(AllOk(store->Write(c)));
  BlockRecord forged = c[0];
  forged.tokens[1] += 1;
  WriteBytes(store->PathFor(c[0].key), Serialize(forged, HashFingerprint(Fingerprint("llama"))));
  const StatusOr<BlockRecord> got = ReadKey(*store, c[0].key);
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_NE(got.status().message().find("chain hash"), std::string::npos) << got.status();
  EXPECT_EQ(store->Stats().quarantined, 1);
}

TEST(DiskStoreTest, GarbageAndTempFilesAreHandledAtOpen) {
  TempDir tmp;
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 10);
  std::string model_dir;
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
    ASSERT_TRUE(AllOk(store->Write(c)));
    model_dir = store->model_dir();
    const std::string shard = ParentDir(store->PathFor(c[0].key));
    // Garbage under a block name, a temp file of an interrupted write, unrelated files.
    WriteBytes(store->PathFor(BlockKey{c[0].key.hi, 7}), std::vector<uint8_t>(500, 0xab));
    WriteBytes(JoinPath(shard, ToHex(c[1].key) + ".3.tmp"), std::vector<uint8_t>(10, 1));
    WriteBytes(JoinPath(shard, "notes.txt"), {'h', 'i'});
    WriteBytes(JoinPath(model_dir, "README"), {'h', 'i'});
  }
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const DiskScanReport& r = store->scan_report();
  EXPECT_EQ(r.files_found, 2);
  EXPECT_EQ(r.quarantined, 1);
  EXPECT_EQ(r.temp_files_removed, 1);
  EXPECT_EQ(r.ignored_files, 2);
  EXPECT_EQ(CountSuffix(tmp.path(), ".tmp"), 0);
  EXPECT_TRUE(fs::exists(JoinPath(model_dir, "README"))) << "files that are not ours stay";
  const std::vector<std::string> q = FileNames(store->quarantine_dir());
  ASSERT_EQ(q.size(), 1u);
  EXPECT_NE(q[0].find("bad-magic"), std::string::npos) << q[0];
  store->CheckInvariants();
}

TEST(DiskStoreTest, QuarantineBeyondItsCapDeletes) {
  TempDir tmp;
  DiskStoreOptions options = Options(tmp.path(), 100 * kRecordBytes);
  options.max_quarantine_files = 1;
  auto store = MustOpen(std::move(options));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 11);
  ASSERT_TRUE(AllOk(store->Write(c)));
  for (const BlockRecord& r : c) fs::resize_file(store->PathFor(r.key), 10);
  EXPECT_FALSE(ReadKey(*store, c[0].key).ok());
  EXPECT_FALSE(ReadKey(*store, c[1].key).ok());
  EXPECT_EQ(store->Stats().quarantined, 2);
  EXPECT_EQ(CountFiles(store->quarantine_dir()), 1);
  EXPECT_FALSE(fs::exists(store->PathFor(c[1].key)));
}

TEST(DiskStoreTest, OtherModelsFilesAreIgnoredAndKept) {
  TempDir tmp;
  const std::vector<BlockRecord> a = MakeChain(Fingerprint("llama"), 3, 12);
  std::string a_path;
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama"));
    ASSERT_TRUE(AllOk(store->Write(a)));
    a_path = store->PathFor(a[0].key);
  }
  const std::vector<BlockRecord> b = MakeChain(Fingerprint("qwen"), 3, 13);
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "qwen"));
    EXPECT_EQ(store->scan_report().other_model_dirs, 1);
    EXPECT_EQ(store->scan_report().files_found, 0);
    EXPECT_EQ(store->CountPresentPrefix(KeysOf(a)), 0);
    ASSERT_TRUE(AllOk(store->Write(b)));
    // Another model's record at one of our names (copied in by hand, or a fingerprint-prefix
    // collision): not ours to judge. Left alone at read time ...
    const std::string b_path = store->PathFor(b[0].key);
    WriteBytes(b_path, Serialize(b[0], HashFingerprint(Fingerprint("llama"))));
    const StatusOr<BlockRecord> got = ReadKey(*store, b[0].key);
    EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
    EXPECT_NE(got.status().message().find("another model"), std::string::npos) << got.status();
    EXPECT_EQ(store->Stats().quarantined, 0);
    EXPECT_FALSE(store->Contains(b[0].key));
    EXPECT_TRUE(fs::exists(b_path));
    ASSERT_TRUE(store->Clear().ok());
    EXPECT_TRUE(fs::exists(b_path)) << "Clear removes only what this store indexed";
    EXPECT_FALSE(fs::exists(store->PathFor(b[1].key)));
  }
  {
    // ... and at start-up.
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "qwen"));
    EXPECT_EQ(store->scan_report().foreign_files, 1);
    EXPECT_EQ(store->scan_report().quarantined, 0);
    EXPECT_EQ(store->Stats().entries, 0);
  }
  EXPECT_TRUE(fs::exists(a_path));
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama"));
  EXPECT_EQ(store->CountPresentPrefix(KeysOf(a)), 3);
}

TEST(DiskStoreTest, RemoveAndClearDeleteFiles) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 4, 14);
  ASSERT_TRUE(AllOk(store->Write(c)));
  const std::vector<BlockKey> gone = {c[1].key, BlockKey{5, 5}};
  EXPECT_EQ(store->Remove(gone), 1);
  EXPECT_FALSE(fs::exists(store->PathFor(c[1].key)));
  store->CheckInvariants();
  EXPECT_EQ(store->CountPresentPrefix(KeysOf(c)), 1);
  ASSERT_TRUE(store->Clear().ok());
  store->CheckInvariants();
  EXPECT_EQ(store->Stats().entries, 0);
  EXPECT_EQ(CountSuffix(store->model_dir(), ".blk"), 0);
  store.reset();
  store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  EXPECT_EQ(store->Stats().entries, 0) << "cleared blocks do not come back after a restart";
}

TEST(DiskStoreTest, SecondStoreOnTheSameFolderAndModelIsRefused) {
  TempDir tmp;
  auto first = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  const Status second = DiskStore::Open(Options(tmp.path(), 100 * kRecordBytes)).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(second)) << second;
  EXPECT_NE(second.message().find("in use"), std::string::npos) << second;
  EXPECT_TRUE(DiskStore::Open(Options(tmp.path(), 100 * kRecordBytes, "other")).ok())
      << "another model may share the folder";
  first.reset();
  EXPECT_TRUE(DiskStore::Open(Options(tmp.path(), 100 * kRecordBytes)).ok());
}

TEST(DiskStoreTest, OpenRejectsBadOptionsAndUnusableFolders) {
  TempDir tmp;
  EXPECT_TRUE(absl::IsInvalidArgument(DiskStore::Open(Options("", 100)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DiskStore::Open(Options(tmp.path(), 0)).status()));
  DiskStoreOptions no_fp = Options(tmp.path(), 100);
  no_fp.fingerprint.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(DiskStore::Open(no_fp).status()));
  const std::string file = JoinPath(tmp.path(), "a_file");
  WriteBytes(file, {1});
  const Status s = DiskStore::Open(Options(JoinPath(file, "cache"), 100)).status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--disk-cache-dir"), std::string::npos) << s;
}

TEST(DiskStoreTest, FailedWritesLeaveNoFileAndAreCounted) {
  TempDir tmp;
  FaultFileSystem fault(FileSystem::Default());
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &fault));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 6, 15);
  const Op ops[] = {Op::kCreate, Op::kAppend, Op::kSync, Op::kClose, Op::kRename};
  for (int i = 0; i < 5; ++i) {
    fault.FailNth(ops[i], 1, i == 1 ? ENOSPC : EIO);
    const std::vector<Status> w = store->Write({c[i]});
    EXPECT_FALSE(w[0].ok()) << "op " << i;
    EXPECT_NE(w[0].message().find("injected fault"), std::string::npos) << w[0];
    EXPECT_FALSE(store->Contains(c[i].key));
    EXPECT_FALSE(fs::exists(store->PathFor(c[i].key)));
    EXPECT_EQ(CountSuffix(tmp.path(), ".tmp"), 0) << "op " << i;
    EXPECT_EQ(store->Stats().write_failures, i + 1);
  }
  ASSERT_TRUE(AllOk(store->Write({c[5]})));
  EXPECT_EQ(*ReadKey(*store, c[5].key), c[5]);
  store->CheckInvariants();
}

TEST(DiskStoreTest, FailedDirectorySyncIsReportedButTheFileIsComplete) {
  TempDir tmp;
  FaultFileSystem fault(FileSystem::Default());
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &fault));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 1, 16);
  fault.FailNth(Op::kSyncDir, 1);
  EXPECT_FALSE(store->Write(c)[0].ok());
  EXPECT_EQ(store->Stats().write_failures, 1);
  EXPECT_EQ(*ReadKey(*store, c[0].key), c[0]);
}

TEST(DiskStoreTest, TornWriteThatReportedSuccessIsCaughtOnRead) {
  TempDir tmp;
  FaultFileSystem fault(FileSystem::Default());
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &fault));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 1, 17);
  fault.TearNthAppend(1, 150);
  ASSERT_TRUE(AllOk(store->Write(c))) << "the device lied";
  const StatusOr<BlockRecord> got = ReadKey(*store, c[0].key);
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->Stats().quarantined, 1);
}

TEST(DiskStoreTest, ReadErrorIsAMissThatKeepsTheFile) {
  TempDir tmp;
  FaultFileSystem fault(FileSystem::Default());
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &fault));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 1, 18);
  ASSERT_TRUE(AllOk(store->Write(c)));
  fault.FailNth(Op::kRead, 1, EMFILE);
  EXPECT_FALSE(ReadKey(*store, c[0].key).ok());
  EXPECT_EQ(store->Stats().misses, 1);
  EXPECT_EQ(store->Stats().quarantined, 0);
  EXPECT_TRUE(store->Contains(c[0].key));
  EXPECT_EQ(*ReadKey(*store, c[0].key), c[0]);
}

// The bug the write protocol avoids (rename before fsync) leaves a complete-looking name over
// missing bytes after a power loss; the store must still never serve it.
TEST(DiskStoreTest, RenameBeforeSyncAfterCrashIsQuarantinedAtOpen) {
  TempDir tmp;
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 1, 19);
  FaultFileSystem fault(FileSystem::Default());
  std::string path;
  {
    auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &fault));
    path = store->PathFor(c[0].key);
  }
  ASSERT_TRUE(fault.CreateDirs(ParentDir(path)).ok());
  auto file = fault.NewWritableFile(path + ".x").value();
  ASSERT_TRUE(file->Append(Serialize(c[0], HashFingerprint(Fingerprint("llama")))).ok());
  ASSERT_TRUE(file->Close().ok());
  ASSERT_TRUE(fault.RenameFile(path + ".x", path).ok());
  ASSERT_TRUE(fault.SyncDir(ParentDir(path)).ok());
  ASSERT_TRUE(fault.SimulateCrash().ok());
  ASSERT_EQ(fs::file_size(path), 0u);

  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  EXPECT_EQ(store->scan_report().quarantined, 1);
  EXPECT_FALSE(ReadKey(*store, c[0].key).ok());
}

// Kill at random moments during heavy writing, then lose power: every restart serves only
// blocks that verify and equal what was written, and keeps every block whose Write returned OK.
TEST(DiskStoreTest, CrashAtRandomMomentsNeverServesABadBlock) {
  // Coverage of the random schedule: crashes that lost writes, blocks served after a crash,
  // torn files caught.
  int crashes_that_lost_blocks = 0, blocks_served = 0, torn_files_caught = 0;
  for (int iter = 0; iter < 50; ++iter) {
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    std::mt19937_64 rng(1000 + iter);
    TempDir tmp;
    FaultFileSystem fault(FileSystem::Default());
    const std::vector<BlockRecord> chain = MakeChain(Fingerprint("llama"), 24, 2000 + iter);
    const bool tight_budget = iter % 3 == 1;  // evictions (deletions) race the crash too
    const bool lying_disk = iter % 3 == 2;    // and, sometimes, a torn write reported as OK
    const int64_t budget = (tight_budget ? 8 : 100) * kRecordBytes;
    std::set<BlockKey> acknowledged;
    {
      auto store = MustOpen(Options(tmp.path(), budget, "llama", &fault));
      ASSERT_NE(store, nullptr);
      fault.CrashAfter(static_cast<int>(rng() % 170));
      if (lying_disk) fault.TearNthAppend(1 + static_cast<int>(rng() % 24), rng() % kRecordBytes);
      for (size_t next = 0; next < chain.size() && !fault.dead();) {
        const size_t n = std::min<size_t>(1 + rng() % 4, chain.size() - next);
        std::vector<BlockRecord> batch(chain.begin() + next, chain.begin() + next + n);
        const std::vector<Status> w = store->Write(batch);
        for (size_t i = 0; i < n; ++i) {
          if (w[i].ok()) acknowledged.insert(batch[i].key);
        }
        next += n;
      }
    }  // the process dies here
    ASSERT_TRUE(fault.SimulateCrash().ok());

    auto store = MustOpen(Options(tmp.path(), budget));
    ASSERT_NE(store, nullptr);
    store->CheckInvariants();
    EXPECT_EQ(
        CountSuffix(tmp.path() + "/" + ToHex(HashFingerprint(Fingerprint("llama"))).substr(0, 16),
                    ".tmp"),
        0);
    if (!lying_disk) {
      EXPECT_EQ(store->scan_report().quarantined, 0) << "a crash alone never damages a block file";
    }
    int served = 0;
    for (const BlockRecord& r : chain) {
      const StatusOr<BlockRecord> got = ReadKey(*store, r.key);
      if (got.ok()) {
        ASSERT_EQ(*got, r);
        ++served;
      } else {
        ASSERT_TRUE(absl::IsNotFound(got.status())) << got.status();
        if (!tight_budget && !lying_disk) {
          EXPECT_FALSE(acknowledged.contains(r.key)) << "an acknowledged write was lost";
        }
      }
    }
    if (!lying_disk) {
      EXPECT_EQ(store->Stats().quarantined, 0);
    } else {
      torn_files_caught += static_cast<int>(store->Stats().quarantined);  // scan + reads
    }
    store->CheckInvariants();
    blocks_served += served;
    crashes_that_lost_blocks += served < static_cast<int>(chain.size()) && !tight_budget;
  }
  EXPECT_GT(crashes_that_lost_blocks, 10);
  EXPECT_GT(blocks_served, 100);
  EXPECT_GT(torn_files_caught, 0);
  std::printf("crash schedule: %d crashes lost blocks, %d blocks served, %d torn files caught\n",
              crashes_that_lost_blocks, blocks_served, torn_files_caught);
}

TEST(DiskStoreTest, WithoutDirectorySyncACrashLosesBlocksButNeverDamagesThem) {
  TempDir tmp;
  FaultFileSystem fault(FileSystem::Default());
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 6, 22);
  {
    DiskStoreOptions options = Options(tmp.path(), 100 * kRecordBytes, "llama", &fault);
    options.sync_dirs = false;
    auto store = MustOpen(std::move(options));
    ASSERT_TRUE(AllOk(store->Write(c)));
    EXPECT_EQ(fault.num_calls(Op::kSyncDir), 0);
    EXPECT_EQ(store->CountPresentPrefix(KeysOf(c)), 6);
  }
  ASSERT_TRUE(fault.SimulateCrash().ok());
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes));
  EXPECT_EQ(store->scan_report().quarantined, 0);
  EXPECT_EQ(store->Stats().entries, 0) << "the strictest crash undoes every unsynced rename";
  EXPECT_EQ(CountSuffix(tmp.path(), ".tmp"), 0);
}

// A writer thread (evicting under a tight budget) and reader threads at once: a read returns
// the exact record or a miss, never a damaged one, and nothing is quarantined.
TEST(DiskStoreTest, ConcurrentWriterAndReaders) {
  TempDir tmp;
  auto store = MustOpen(Options(tmp.path(), 12 * kRecordBytes));
  const std::vector<BlockRecord> chain = MakeChain(Fingerprint("llama"), 40, 20);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> served{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      const std::vector<BlockKey> keys = KeysOf(chain);
      while (!stop.load()) {
        const size_t from = rng() % chain.size();
        const std::span<const BlockKey> span = std::span(keys).subspan(from);
        const int n = store->CountPresentPrefix(span);
        (void)store->Stats();
        const std::vector<StatusOr<BlockRecord>> got =
            store->Read(span.first(std::min(n + 1, static_cast<int>(span.size()))));
        for (size_t i = 0; i < got.size(); ++i) {
          if (!got[i].ok()) continue;
          ASSERT_EQ(*got[i], chain[from + i]);
          served.fetch_add(1);
        }
      }
    });
  }
  std::mt19937_64 rng(7);
  for (int round = 0; round < 30; ++round) {
    const size_t from = rng() % chain.size();
    const size_t n = std::min<size_t>(1 + rng() % 5, chain.size() - from);
    store->Write({chain.begin() + from, chain.begin() + from + n});
    if (round % 10 == 9) store->Remove(std::vector<BlockKey>{chain[rng() % chain.size()].key});
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(store->Stats().quarantined, 0);
  EXPECT_EQ(store->Stats().write_failures, 0);
  store->CheckInvariants();
  EXPECT_GT(served.load(), 0);
}

// Forwards to the real file system and runs a hook just before a rename: a Clear there races
// the Write exactly at its worst moment.
class HookFileSystem final : public FileSystem {
 public:
  std::function<void()> before_rename;

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& p) override {
    return base_->NewWritableFile(p);
  }
  StatusOr<std::vector<uint8_t>> ReadFile(const std::string& p) override {
    return base_->ReadFile(p);
  }
  StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& p, size_t n) override {
    return base_->ReadFilePrefix(p, n);
  }
  StatusOr<FileInfo> Stat(const std::string& p) override { return base_->Stat(p); }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (before_rename) std::exchange(before_rename, nullptr)();
    return base_->RenameFile(from, to);
  }
  Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  Status CreateDirs(const std::string& p) override { return base_->CreateDirs(p); }
  Status SyncDir(const std::string& p) override { return base_->SyncDir(p); }
  StatusOr<std::vector<DirEntry>> ListDir(const std::string& p) override {
    return base_->ListDir(p);
  }
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& p) override {
    return base_->LockFile(p);
  }

 private:
  FileSystem* base_ = FileSystem::Default();
};

TEST(DiskStoreTest, WriteRacingClearLeavesNothingBehind) {
  TempDir tmp;
  HookFileSystem hook;
  auto store = MustOpen(Options(tmp.path(), 100 * kRecordBytes, "llama", &hook));
  const std::vector<BlockRecord> c = MakeChain(Fingerprint("llama"), 2, 21);
  ASSERT_TRUE(AllOk(store->Write({c[0]})));
  hook.before_rename = [&] { ASSERT_TRUE(store->Clear().ok()); };
  ASSERT_TRUE(AllOk(store->Write({c[1]})));
  EXPECT_EQ(store->Stats().entries, 0);
  EXPECT_EQ(CountSuffix(store->model_dir(), ".blk"), 0);
  store->CheckInvariants();
}

}  // namespace
}  // namespace prefixd
