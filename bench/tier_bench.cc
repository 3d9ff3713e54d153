// Throughput of the lower cache tiers for realistic blocks: 16 tokens of a 12-layer model with
// 256-wide K and V rows in F16 = 196,608 KV bytes per block (196,768 serialized).
//
//   host:  Write (move into the LRU) and Read (copy out) of HostStore
//   disk:  Write (serialize, temp file, fdatasync, rename, then one fsync per shard folder
//          touched by the batch, or none with sync_dirs off),
//          Read with the page cache warm and cold (posix_fadvise DONTNEED before each batch),
//          each read verified (checksum, header, chain hash); start-up scan (files/s)
//   format: Serialize and Deserialize alone (CPU cost of the format and its checks)
//
// bytes_per_second counts KV bytes. Disk benchmarks use $PREFIXD_BENCH_DIR (default /tmp).
//
// Batched reads allocate one 196 KB vector per block; with glibc's default malloc those come
// from fresh mmap/sbrk pages (page faults) and batches of 16 run several times slower than
// single reads. Compare with
//   GLIBC_TUNABLES=glibc.malloc.trim_threshold=1000000000:glibc.malloc.mmap_threshold=1000000000
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "kv/kv_layout.h"
#include "tier/disk_store.h"
#include "tier/host_store.h"

namespace prefixd {
namespace {

constexpr BlockHashKind kKind = BlockHashKind::kXxh3;

int64_t BlockBytes() {
  KvLayout layout;
  layout.num_layers = 12;
  layout.kv_dim = 256;
  layout.block_size = 16;
  layout.dtype = KvDtype::kF16;
  return layout.BlockBytes();  // 196,608
}

std::vector<uint8_t> FingerprintBytes() {
  ModelFingerprint fp;
  fp.architecture = "llama";
  fp.block_size = 16;
  fp.head_dim = 64;
  return fp.Serialize();
}

// Block `i` of one long prompt, with random KV bytes (the checksum cost does not depend on
// them; random defeats any compression below us).
class Blocks {
 public:
  explicit Blocks(int n) {
    std::mt19937_64 rng(1);
    kv_.resize(BlockBytes());
    for (uint8_t& b : kv_) b = static_cast<uint8_t>(rng());
    BlockKey parent = RootKey(kKind, FingerprintBytes(), "");
    for (int i = 0; i < n; ++i) {
      std::vector<int32_t> tokens(16);
      for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 32000);
      const BlockKey key = ChainKey(kKind, parent, tokens);
      keys_.push_back(key);
      parents_.push_back(parent);
      tokens_.push_back(std::move(tokens));
      parent = key;
    }
  }
  BlockRecord Record(int i) const { return BlockRecord{keys_[i], parents_[i], tokens_[i], kv_}; }
  const std::vector<BlockKey>& keys() const { return keys_; }

 private:
  std::vector<uint8_t> kv_;
  std::vector<BlockKey> keys_, parents_;
  std::vector<std::vector<int32_t>> tokens_;
};

class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("PREFIXD_BENCH_DIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/prefixd_tier_bench_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~BenchDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<DiskStore> OpenDisk(const std::string& dir, int64_t budget, bool sync_dirs = true) {
  DiskStoreOptions o;
  o.dir = dir;
  o.budget_bytes = budget;
  o.sync_dirs = sync_dirs;
  o.fingerprint = FingerprintBytes();
  StatusOr<std::unique_ptr<DiskStore>> store = DiskStore::Open(std::move(o));
  if (!store.ok()) {
    fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    std::abort();
  }
  return std::move(store).value();
}

void DropPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void BM_Serialize(benchmark::State& state) {
  const Blocks blocks(1);
  const BlockRecord r = blocks.Record(0);
  const FingerprintHash fp = HashFingerprint(FingerprintBytes());
  for (auto _ : state) benchmark::DoNotOptimize(Serialize(r, fp));
  state.SetBytesProcessed(state.iterations() * BlockBytes());
}
BENCHMARK(BM_Serialize);

void BM_Deserialize(benchmark::State& state) {
  const Blocks blocks(1);
  const FingerprintHash fp = HashFingerprint(FingerprintBytes());
  const std::vector<uint8_t> bytes = Serialize(blocks.Record(0), fp);
  for (auto _ : state) {
    benchmark::DoNotOptimize(Deserialize(bytes, fp, blocks.keys()[0], kKind));
  }
  state.SetBytesProcessed(state.iterations() * BlockBytes());
}
BENCHMARK(BM_Deserialize);

// Batches of state.range(0) new blocks into a store that holds 256 (evicting from then on).
void BM_HostWrite(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const Blocks blocks(1024);
  HostStore store(256 * (BlockBytes() + 1024));
  int next = 0;
  for (auto _ : state) {
    state.PauseTiming();  // building records stands for the copy out of the pool
    std::vector<BlockRecord> records;
    for (int i = 0; i < batch; ++i) records.push_back(blocks.Record((next + i) % 1024));
    next = (next + batch) % 1024;
    state.ResumeTiming();
    benchmark::DoNotOptimize(store.Write(std::move(records)));
    // Re-writing a held key is a no-op; stay on keys the store no longer holds.
    if (next == 0) {
      state.PauseTiming();
      (void)store.Clear();
      state.ResumeTiming();
    }
  }
  state.SetBytesProcessed(state.iterations() * batch * BlockBytes());
}
BENCHMARK(BM_HostWrite)->Arg(1)->Arg(16)->UseRealTime();

void BM_HostRead(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const Blocks blocks(256);
  HostStore store(int64_t{1} << 30);
  for (int i = 0; i < 256; ++i) (void)store.Write({blocks.Record(i)});
  int next = 0;
  for (auto _ : state) {
    const std::span<const BlockKey> keys = std::span(blocks.keys()).subspan(next, batch);
    benchmark::DoNotOptimize(store.Read(keys));
    next = (next + batch) % (256 - batch + 1);
  }
  state.SetBytesProcessed(state.iterations() * batch * BlockBytes());
}
BENCHMARK(BM_HostRead)->Arg(1)->Arg(16)->UseRealTime();

// Writes batches of new blocks; the budget (256 blocks) makes it evict (delete) in steady state.
// state.range(1): DiskStoreOptions::sync_dirs.
void BM_DiskWrite(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const Blocks blocks(4096);
  BenchDir dir;
  auto store = OpenDisk(dir.path(), 256 * (BlockBytes() + 1024), state.range(1) == 1);
  int next = 0;
  int64_t failures = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<BlockRecord> records;
    for (int i = 0; i < batch; ++i) records.push_back(blocks.Record((next + i) % 4096));
    next = (next + batch) % 4096;
    state.ResumeTiming();
    for (const Status& s : store->Write(std::move(records))) failures += !s.ok();
  }
  state.SetBytesProcessed(state.iterations() * batch * BlockBytes());
  state.counters["failures"] = static_cast<double>(failures);
}
BENCHMARK(BM_DiskWrite)->Args({1, 1})->Args({16, 1})->Args({16, 0})->UseRealTime();

// state.range(1) == 1: page cache dropped for the batch's files before each batch (cold).
void BM_DiskRead(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool cold = state.range(1) == 1;
  constexpr int kHeld = 256;
  const Blocks blocks(kHeld);
  BenchDir dir;
  auto store = OpenDisk(dir.path(), int64_t{1} << 32);
  for (int i = 0; i < kHeld; i += 16) {
    std::vector<BlockRecord> records;
    for (int j = i; j < i + 16; ++j) records.push_back(blocks.Record(j));
    (void)store->Write(std::move(records));
  }
  int next = 0;
  int64_t misses = 0;
  for (auto _ : state) {
    const std::span<const BlockKey> keys = std::span(blocks.keys()).subspan(next, batch);
    if (cold) {
      state.PauseTiming();
      for (const BlockKey& k : keys) DropPageCache(store->PathFor(k));
      state.ResumeTiming();
    }
    for (const StatusOr<BlockRecord>& r : store->Read(keys)) misses += !r.ok();
    next = (next + batch) % (kHeld - batch + 1);
  }
  state.SetBytesProcessed(state.iterations() * batch * BlockBytes());
  state.counters["misses"] = static_cast<double>(misses);
}
BENCHMARK(BM_DiskRead)->Args({1, 0})->Args({16, 0})->Args({1, 1})->Args({16, 1})->UseRealTime();

// Start-up: Open over state.range(0) block files (headers only), warm page cache.
void BM_DiskOpenScan(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  BenchDir dir;
  {
    const Blocks blocks(n);
    auto store = OpenDisk(dir.path(), int64_t{1} << 34);
    for (int i = 0; i < n; i += 64) {
      std::vector<BlockRecord> records;
      for (int j = i; j < std::min(n, i + 64); ++j) records.push_back(blocks.Record(j));
      (void)store->Write(std::move(records));
    }
  }
  for (auto _ : state) {
    auto store = OpenDisk(dir.path(), int64_t{1} << 34);
    if (store->Stats().entries != n) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * n);  // items = files scanned
}
BENCHMARK(BM_DiskOpenScan)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace prefixd

BENCHMARK_MAIN();
