#include "tier/disk_store.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "base/check.h"
#include "base/log.h"
#include "tier/retention_file.h"

namespace prefixd {
namespace {

constexpr char kBlockSuffix[] = ".blk";
constexpr char kTempSuffix[] = ".tmp";
constexpr char kLockName[] = "LOCK";
constexpr char kQuarantineName[] = "quarantine";
constexpr int kFingerprintHexDigits = 16;
constexpr int64_t kProgressEvery = 256;  // files between progress callbacks

// Once per process per cause, a warning; afterwards the same at debug level. Slot kNone is
// used for files that could not be read at all.
std::array<std::atomic<bool>, kNumRecordDefects> g_quarantine_logged{};
std::atomic<bool> g_read_error_logged{false};
std::atomic<bool> g_write_error_logged{false};

bool IsLowerHex(std::string_view s, size_t digits) {
  if (s.size() != digits) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

uint64_t ParseHex64(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return v;
}

// "<32 hex>.blk" -> the key; anything else -> nullopt.
std::optional<BlockKey> KeyFromFileName(std::string_view name) {
  constexpr size_t kSuffixLen = sizeof(kBlockSuffix) - 1;
  if (name.size() != 32 + kSuffixLen || !name.ends_with(kBlockSuffix)) return std::nullopt;
  const std::string_view hex = name.substr(0, 32);
  if (!IsLowerHex(hex, 32)) return std::nullopt;
  return BlockKey{ParseHex64(hex.substr(0, 16)), ParseHex64(hex.substr(16))};
}

int ShardOf(const BlockKey& key) { return static_cast<int>(key.hi >> 56); }

Status WithContext(const Status& status, std::string_view context) {
  return Status(status.code(), absl::StrCat(std::string(context), ": ", status.message()));
}

// "bad magic" -> "bad-magic", for file names.
std::string Slug(std::string_view name) {
  std::string out(name);
  std::replace(out.begin(), out.end(), ' ', '-');
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
  if (bytes >= (int64_t{1} << 20)) return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  return absl::StrFormat("%d bytes", bytes);
}

}  // namespace

std::string DiskScanReport::ToString() const {
  return absl::StrFormat(
      "%d block files (%s) found in %.2f s, %d of them retained; %d evicted to fit the budget, "
      "%d quarantined, %d temp files of interrupted writes removed, %d foreign files and %d "
      "other models' folders left alone, %d unrecognised files ignored",
      files_found, FormatBytes(bytes_found), seconds, retained, evicted, quarantined,
      temp_files_removed, foreign_files, other_model_dirs, ignored_files);
}

StatusOr<std::unique_ptr<DiskStore>> DiskStore::Open(DiskStoreOptions options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("disk cache: no folder given (--disk-cache-dir)");
  }
  if (options.budget_bytes <= 0) {
    // Open would evict every file to fit a zero budget: a disabled disk tier is not opened.
    return absl::InvalidArgumentError(absl::StrCat("disk cache: budget must be positive, got ",
                                                   options.budget_bytes, " (--disk-cache-bytes)"));
  }
  if (options.fingerprint.empty()) {
    return absl::InvalidArgumentError("disk cache: empty model fingerprint");
  }
  FileSystem* fs = options.fs != nullptr ? options.fs : FileSystem::Default();
  const FingerprintHash fingerprint = HashFingerprint(options.fingerprint);
  std::string model_dir =
      JoinPath(options.dir, ToHex(fingerprint).substr(0, kFingerprintHexDigits));
  std::string quarantine_dir = JoinPath(options.dir, kQuarantineName);
  const std::string context =
      absl::StrCat("disk cache folder '", options.dir, "' (--disk-cache-dir)");
  if (Status s = fs->CreateDirs(model_dir); !s.ok()) return WithContext(s, context);
  if (Status s = fs->CreateDirs(quarantine_dir); !s.ok()) return WithContext(s, context);
  StatusOr<std::unique_ptr<FileLock>> lock = fs->LockFile(JoinPath(model_dir, kLockName));
  if (!lock.ok()) {
    return WithContext(lock.status(),
                       absl::StrCat(context, " is in use by another prefixd for this model"));
  }
  std::unique_ptr<DiskStore> store(new DiskStore(std::move(options), fingerprint,
                                                 std::move(model_dir), std::move(quarantine_dir),
                                                 std::move(lock).value()));
  if (Status s = store->Scan(); !s.ok()) return WithContext(s, context);
  store->scan_report_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return store;
}

DiskStore::DiskStore(DiskStoreOptions options, FingerprintHash fingerprint, std::string model_dir,
                     std::string quarantine_dir, std::unique_ptr<FileLock> lock)
    : options_(std::move(options)),
      fs_(options_.fs != nullptr ? options_.fs : FileSystem::Default()),
      fingerprint_(fingerprint),
      model_dir_(std::move(model_dir)),
      quarantine_dir_(std::move(quarantine_dir)),
      lock_(std::move(lock)),
      clock_(options_.clock != nullptr ? options_.clock : SteadyClock::Get()),
      wall_clock_(options_.wall_clock != nullptr ? options_.wall_clock : WallClock::Get()),
      max_retained_bytes_(static_cast<int64_t>(
          static_cast<double>(std::max<int64_t>(options_.budget_bytes, 0)) *
          std::clamp(options_.retention_max_share, 0.0, 1.0))) {
  counters_.budget_bytes.store(std::max<int64_t>(options_.budget_bytes, 0),
                               std::memory_order_relaxed);
}

DiskStore::~DiskStore() {
  if (Status s = SaveRetention(); !s.ok()) {
    spdlog::warn("disk cache: cannot save the retention marks ({}); after a restart the blocks on disk start "
                 "ordinary", std::string(s.message()));
  }
}

Status DiskStore::SaveRetention() {
  std::vector<KeyMark> marks;
  {
    MutexLock lock(&mu_);
    marks.reserve(kept_.size());
    for (const Entry& e : kept_) marks.push_back(KeyMark{e.key, e.mark});
  }
  const std::string path = JoinPath(model_dir_, kRetentionFileName);
  const int64_t now = clock_->NowMs();
  if (std::none_of(marks.begin(), marks.end(), [&](const KeyMark& m) { return m.mark.live(now); })) {
    Status s = fs_->RemoveFile(path);
    return absl::IsNotFound(s) ? absl::OkStatus() : s;
  }
  const std::vector<uint8_t> bytes = SerializeRetentionFile(marks, now, wall_clock_->NowMs());
  return WriteFileAtomically(*fs_, path, absl::StrCat(path, kTempSuffix), bytes, options_.sync_dirs);
}

absl::flat_hash_map<BlockKey, RetentionMark> DiskStore::ReadRetentionFile() {
  absl::flat_hash_map<BlockKey, RetentionMark> out;
  const std::string path = JoinPath(model_dir_, kRetentionFileName);
  StatusOr<std::vector<uint8_t>> bytes = fs_->ReadFile(path);
  if (!bytes.ok()) {
    if (!absl::IsNotFound(bytes.status())) {
      spdlog::warn("disk cache: cannot read {} ({}); the blocks on disk start without retention marks", path,
                   std::string(bytes.status().message()));
    }
    return out;
  }
  StatusOr<std::vector<KeyMark>> marks = ParseRetentionFile(*bytes, clock_->NowMs(), wall_clock_->NowMs());
  if (!marks.ok()) {
    spdlog::warn("disk cache: {} is refused ({}); the blocks on disk start without retention marks", path,
                 std::string(marks.status().message()));
    return out;
  }
  for (const KeyMark& m : *marks) out[m.key] = m.mark;
  return out;
}

std::string DiskStore::PathFor(const BlockKey& key) const {
  const std::string hex = ToHex(key);
  return absl::StrCat(model_dir_, "/", hex.substr(0, 2), "/", hex, kBlockSuffix);
}

Status DiskStore::Scan() {
  ASSIGN_OR_RETURN(const std::vector<ScanCandidate> candidates, ListBlockFiles());
  std::vector<ScannedFile> found;
  found.reserve(candidates.size());
  const int64_t total = static_cast<int64_t>(candidates.size());
  if (options_.progress) options_.progress(0, total);
  for (int64_t i = 0; i < total; ++i) {
    if (options_.progress && i > 0 && i % kProgressEvery == 0) options_.progress(i, total);
    if (std::optional<ScannedFile> f = CheckBlockFile(candidates[i]); f.has_value()) {
      found.push_back(*f);
      scan_report_.bytes_found += f->bytes;
    }
  }
  scan_report_.files_found = static_cast<int64_t>(found.size());
  if (options_.progress) options_.progress(total, total);

  // Index oldest first, so the newest end up most recent and the oldest go over the budget.
  std::stable_sort(found.begin(), found.end(), [](const ScannedFile& a, const ScannedFile& b) {
    return a.mtime_ns < b.mtime_ns;
  });
  std::vector<std::string> victims;
  absl::flat_hash_map<BlockKey, RetentionMark> restored = ReadRetentionFile();
  {
    MutexLock lock(&mu_);
    // InsertLocked gives each found block its mark before the budget evicts: retained ones last.
    pending_marks_ = std::move(restored);
    for (const ScannedFile& f : found) InsertLocked(f.key, f.bytes, victims);
    pending_marks_.clear();  // marks of blocks no longer on disk
    scan_report_.retained = static_cast<int64_t>(kept_.size());
    PublishGaugesLocked();
  }
  scan_report_.evicted = static_cast<int64_t>(victims.size());
  RemoveFiles(victims);
  return absl::OkStatus();
}

StatusOr<std::vector<DiskStore::ScanCandidate>> DiskStore::ListBlockFiles() {
  DiskScanReport& report = scan_report_;
  const std::string own_dir_name = ToHex(fingerprint_).substr(0, kFingerprintHexDigits);
  ASSIGN_OR_RETURN(const std::vector<DirEntry> top, fs_->ListDir(options_.dir));
  for (const DirEntry& e : top) {
    if (e.is_dir && e.name != own_dir_name && IsLowerHex(e.name, kFingerprintHexDigits)) {
      ++report.other_model_dirs;
    }
  }
  if (StatusOr<std::vector<DirEntry>> q = fs_->ListDir(quarantine_dir_); q.ok()) {
    quarantine_files_.store(static_cast<int64_t>(q->size()));
  }

  std::vector<ScanCandidate> candidates;
  ASSIGN_OR_RETURN(const std::vector<DirEntry> shards, fs_->ListDir(model_dir_));
  for (const DirEntry& shard : shards) {
    if (!shard.is_dir || !IsLowerHex(shard.name, 2)) {
      if (shard.name == absl::StrCat(kRetentionFileName, kTempSuffix)) {
        fs_->RemoveFile(JoinPath(model_dir_, shard.name)).IgnoreError();  // a crash mid-save
      } else if (shard.name != kLockName && shard.name != kRetentionFileName) {
        ++report.ignored_files;
      }
      continue;
    }
    const std::string shard_dir = JoinPath(model_dir_, shard.name);
    ASSIGN_OR_RETURN(const std::vector<DirEntry> files, fs_->ListDir(shard_dir));
    shard_ready_[ParseHex64(shard.name)].store(true);
    for (const DirEntry& f : files) {
      const std::string path = JoinPath(shard_dir, f.name);
      if (!f.is_dir && f.name.ends_with(kTempSuffix)) {
        // Only this process may write here (LOCK), so no write is in progress.
        if (fs_->RemoveFile(path).ok()) ++report.temp_files_removed;
        continue;
      }
      const std::optional<BlockKey> key = KeyFromFileName(f.name);
      if (f.is_dir || !key.has_value() || ToHex(*key).substr(0, 2) != shard.name) {
        ++report.ignored_files;
        continue;
      }
      candidates.push_back(ScanCandidate{*key, path});
    }
  }
  return candidates;
}

std::optional<DiskStore::ScannedFile> DiskStore::CheckBlockFile(const ScanCandidate& c) {
  StatusOr<FileInfo> info = fs_->Stat(c.path);
  StatusOr<std::vector<uint8_t>> head =
      info.ok() ? fs_->ReadFilePrefix(c.path, kBlockRecordHeaderBytes) : info.status();
  Status defect;
  if (!head.ok()) {
    if (absl::IsNotFound(head.status())) return std::nullopt;  // removed meanwhile
    defect = head.status();
  } else if (StatusOr<BlockRecordHeader> header = ParseHeader(*head, fingerprint_); !header.ok()) {
    if (IsForeignRecord(header.status())) {
      ++scan_report_.foreign_files;
      return std::nullopt;
    }
    defect = header.status();
  } else if (header->key != c.key) {
    defect = RecordDefectError(RecordDefect::kKeyMismatch,
                               absl::StrCat("block record holds key ", ToHex(header->key),
                                            ", its name says ", ToHex(c.key)));
  } else if (header->RecordBytes() != static_cast<uint64_t>(info->size)) {
    const bool shorter = static_cast<uint64_t>(info->size) < header->RecordBytes();
    defect = RecordDefectError(shorter ? RecordDefect::kTruncated : RecordDefect::kSizeMismatch,
                               absl::StrCat("block file is ", info->size,
                                            " bytes, its header says ", header->RecordBytes()));
  }
  if (!defect.ok()) {
    Quarantine(c.path, c.key, defect);
    ++scan_report_.quarantined;
    return std::nullopt;
  }
  return ScannedFile{c.key, info->size, info->mtime_ns};
}

int64_t DiskStore::AnnounceResident(ResidencyObserver& observer) const {
  std::vector<BlockKey> keys = KeysByRecency();
  std::reverse(keys.begin(), keys.end());  // oldest first, as the scan indexed them
  constexpr size_t kBatch = 256;           // records per OnStored call
  std::vector<BlockRecord> records;
  int64_t announced = 0;
  auto flush = [&] {
    std::vector<const BlockRecord*> ptrs;
    for (const BlockRecord& r : records) ptrs.push_back(&r);
    observer.OnStored(ptrs);
    announced += static_cast<int64_t>(records.size());
    records.clear();
  };
  for (const BlockKey& key : keys) {
    const std::string path = PathFor(key);
    StatusOr<std::vector<uint8_t>> head = fs_->ReadFilePrefix(path, kBlockRecordHeaderBytes);
    if (!head.ok()) continue;
    StatusOr<BlockRecordHeader> h = ParseHeader(*head, fingerprint_);
    if (!h.ok() || h->key != key) continue;
    const size_t token_bytes = 4 * static_cast<size_t>(h->num_tokens);
    StatusOr<std::vector<uint8_t>> front = fs_->ReadFilePrefix(path, kBlockRecordHeaderBytes + token_bytes);
    if (!front.ok() || front->size() < kBlockRecordHeaderBytes + token_bytes) continue;
    BlockRecord r;
    r.key = key;
    r.parent = h->parent;
    r.tokens.resize(h->num_tokens);
    const uint8_t* p = front->data() + kBlockRecordHeaderBytes;
    for (size_t i = 0; i < r.tokens.size(); ++i, p += 4) {  // little-endian on disk
      r.tokens[i] = static_cast<int32_t>(uint32_t{p[0]} | uint32_t{p[1]} << 8 |
                                         uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    }
    // Tokens that do not hash to the key would mislead a router: skip them as a read would.
    if (options_.chain_kind && ChainKey(*options_.chain_kind, r.parent, r.tokens) != key) continue;
    records.push_back(std::move(r));
    if (records.size() == kBatch) flush();
  }
  if (!records.empty()) flush();
  return announced;
}

void DiskStore::InsertLocked(const BlockKey& key, int64_t bytes,
                             std::vector<std::string>& victims,
                             std::vector<BlockKey>* victim_keys) {
  lru_.push_front(Entry{key, bytes, next_seq_++, RetentionMark{}});
  index_[key] = lru_.begin();
  bytes_ += bytes;
  if (auto pending = pending_marks_.find(key); pending != pending_marks_.end()) {
    PlaceLocked(lru_.begin(), pending->second, /*most_recent=*/true);
    pending_marks_.erase(pending);
    CapLocked();
  }
  int64_t evicted = 0;
  // Ordinary entries go first; retained ones only once none is left (never refused).
  while (bytes_ > options_.budget_bytes && !(lru_.empty() && kept_.empty())) {
    List& from = lru_.empty() ? kept_ : lru_;
    const auto victim = std::prev(from.end());
    victims.push_back(PathFor(victim->key));
    if (victim_keys != nullptr) victim_keys->push_back(victim->key);
    index_.erase(victim->key);
    EraseLocked(victim);
    ++evicted;
  }
  counters_.evictions.fetch_add(evicted, std::memory_order_relaxed);
}

void DiskStore::PlaceLocked(List::iterator it, const RetentionMark& mark, bool most_recent) {
  Lists().Place(it, mark, most_recent);
}

void DiskStore::TouchLocked(List::iterator it) {
  const RetentionMark mark = it->mark.marked() ? it->mark.RefreshedAt(clock_->NowMs()) : it->mark;
  PlaceLocked(it, mark, /*most_recent=*/true);
}

void DiskStore::EraseLocked(List::iterator it) {
  bytes_ -= it->bytes;
  if (it->mark.marked()) kept_bytes_ -= it->bytes;
  (it->mark.marked() ? kept_ : lru_).erase(it);
}

void DiskStore::CapLocked() {
  while (kept_bytes_ > max_retained_bytes_ && !kept_.empty()) {
    PlaceLocked(std::prev(kept_.end()), RetentionMark{}, /*most_recent=*/true);
    counters_.retention_capped.fetch_add(1, std::memory_order_relaxed);
  }
}

int DiskStore::Retain(std::span<const BlockKey> keys, const RetentionMark& mark,
                      bool remember_absent) {
  // Marks of blocks queued for writing: a backstop against keys whose write never comes.
  constexpr size_t kMaxPendingMarks = 4096;
  if (!mark.marked()) return 0;
  int n = 0;
  MutexLock lock(&mu_);
  for (const BlockKey& key : keys) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      PlaceLocked(it->second, RetentionMark::Merge(it->second->mark, mark), true);
      ++n;
    } else if (remember_absent) {
      if (pending_marks_.size() >= kMaxPendingMarks) pending_marks_.clear();
      RetentionMark& m = pending_marks_[key];
      m = RetentionMark::Merge(m, mark);
    }
  }
  CapLocked();
  PublishGaugesLocked();
  return n;
}

int DiskStore::ExpireRetention(int64_t now_ms) {
  MutexLock lock(&mu_);
  if (now_ms < next_expiry_ms_) return 0;
  const int n = Lists().Expire(now_ms);
  absl::erase_if(pending_marks_, [&](const auto& e) { return e.second.until_ms <= now_ms; });
  counters_.retention_expired.fetch_add(n, std::memory_order_relaxed);
  PublishGaugesLocked();
  return n;
}

RetentionMark DiskStore::MarkOf(const BlockKey& key) const {
  MutexLock lock(&mu_);
  auto it = index_.find(key);
  return it == index_.end() ? RetentionMark{} : it->second->mark;
}

void DiskStore::PublishGaugesLocked() {
  counters_.entries.store(static_cast<int64_t>(index_.size()), std::memory_order_relaxed);
  counters_.bytes.store(bytes_, std::memory_order_relaxed);
  counters_.retained_entries.store(static_cast<int64_t>(kept_.size()), std::memory_order_relaxed);
  counters_.retained_bytes.store(kept_bytes_, std::memory_order_relaxed);
}

int DiskStore::CountPresentPrefix(std::span<const BlockKey> keys) const {
  MutexLock lock(&mu_);
  int n = 0;
  while (n < static_cast<int>(keys.size()) && index_.contains(keys[n])) ++n;
  return n;
}

bool DiskStore::Contains(const BlockKey& key) const {
  MutexLock lock(&mu_);
  return index_.contains(key);
}

std::vector<StatusOr<BlockRecord>> DiskStore::Read(std::span<const BlockKey> keys) {
  std::vector<StatusOr<BlockRecord>> out;
  out.reserve(keys.size());
  int64_t hits = 0;
  for (const BlockKey& key : keys) {
    out.push_back(ReadOne(key));
    if (out.back().ok()) ++hits;
  }
  counters_.hits.fetch_add(hits, std::memory_order_relaxed);
  counters_.misses.fetch_add(static_cast<int64_t>(keys.size()) - hits, std::memory_order_relaxed);
  return out;
}

StatusOr<BlockRecord> DiskStore::ReadOne(const BlockKey& key) {
  uint64_t seq = 0;
  {
    MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      return absl::NotFoundError(absl::StrCat("block ", ToHex(key), " not on disk"));
    }
    TouchLocked(it->second);
    seq = it->second->seq;
  }
  const std::string path = PathFor(key);
  StatusOr<std::vector<uint8_t>> bytes = fs_->ReadFile(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      // Deleted behind our back (or by a racing eviction): forget it.
      Discard(key, seq, bytes.status(), /*quarantine=*/false);
      return absl::NotFoundError(absl::StrCat("block file ", path, " vanished"));
    }
    // Possibly transient (EMFILE, EINTR storms): keep the file and the entry; a miss now.
    if (!g_read_error_logged.exchange(true)) {
      spdlog::warn("disk cache: cannot read a block file, treated as a miss: {} (logged once)",
                   std::string(bytes.status().message()));
    }
    return bytes.status();
  }
  StatusOr<BlockRecord> record = Deserialize(*bytes, fingerprint_, key, options_.chain_kind);
  if (record.ok()) return record;
  const bool foreign = IsForeignRecord(record.status());
  Discard(key, seq, record.status(), /*quarantine=*/!foreign);
  return absl::NotFoundError(absl::StrCat("block file ", path, " failed verification (",
                                          record.status().message(), "); ",
                                          foreign ? "left alone" : "quarantined"));
}

void DiskStore::Discard(const BlockKey& key, uint64_t seq, const Status& cause, bool quarantine) {
  {
    MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it == index_.end() || it->second->seq != seq) return;  // already replaced or dropped
    EraseLocked(it->second);
    index_.erase(it);
    PublishGaugesLocked();
    // Under the lock, so no Write of this key can index a new file meanwhile: the file moved
    // is the one that failed (or, at worst, an identical copy a racing writer renamed over it).
    if (quarantine) Quarantine(PathFor(key), key, cause);
  }
  // No longer resident: told as an eviction (KV events: removed from DISK), outside the lock.
  ResidencyChanges changes;
  changes.Evicted(key);
  NotifyResidency(changes);
}

void DiskStore::Quarantine(const std::string& path, const BlockKey& key, const Status& cause) {
  const RecordDefect defect = RecordDefectOf(cause);
  const std::string_view cause_name =
      defect == RecordDefect::kNone ? "unreadable" : RecordDefectName(defect);
  const int64_t stamp = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  const std::string dest = JoinPath(
      quarantine_dir_, absl::StrCat(ToHex(fingerprint_).substr(0, kFingerprintHexDigits), "-",
                                    ToHex(key), ".", Slug(cause_name), ".", stamp, kBlockSuffix));
  Status moved;
  std::string where;
  if (quarantine_files_.load() < options_.max_quarantine_files) {
    moved = fs_->RenameFile(path, dest);
    where = absl::StrCat("moved to ", dest);
    if (moved.ok()) quarantine_files_.fetch_add(1);
  } else {
    moved = fs_->RemoveFile(path);
    where = absl::StrCat("deleted (", quarantine_dir_, " holds ", options_.max_quarantine_files,
                         " files already)");
  }
  if (!moved.ok()) {
    where = absl::StrCat("could not be moved or deleted (", moved.message(),
                         "); it stays out of the index");
  }
  counters_.quarantined.fetch_add(1, std::memory_order_relaxed);
  if (!g_quarantine_logged[static_cast<int>(defect)].exchange(true)) {
    spdlog::warn(
        "disk cache: block file {} failed verification ({}) and was {}; treated as a miss, "
        "never served. Further '{}' failures are logged at debug level.",
        path, std::string(cause.message()), where, cause_name);
  } else {
    spdlog::debug("disk cache: block file {} failed verification ({}) and was {}", path,
                  std::string(cause.message()), where);
  }
}

Status DiskStore::EnsureShardDir(const BlockKey& key) {
  const int shard = ShardOf(key);
  if (shard_ready_[shard].load(std::memory_order_acquire)) return absl::OkStatus();
  RETURN_IF_ERROR(fs_->CreateDirs(ParentDir(PathFor(key))));
  shard_ready_[shard].store(true, std::memory_order_release);
  return absl::OkStatus();
}

std::vector<Status> DiskStore::Write(std::vector<BlockRecord> records) {
  std::vector<Status> out(records.size());
  uint64_t generation = 0;
  {
    MutexLock lock(&mu_);
    generation = generation_;
  }
  // Indices of the records renamed into each shard folder, whose renames become durable with
  // one fsync of that folder at the end of the batch.
  std::array<std::vector<size_t>, 256> renamed_by_shard;
  int64_t writes = 0;
  int64_t failures = 0;
  ResidencyChanges changes;  // for the residency observer
  std::vector<BlockKey> evicted_keys;
  for (size_t i = 0; i < records.size(); ++i) {
    const BlockRecord& record = records[i];
    const int64_t bytes = static_cast<int64_t>(SerializedSize(record));
    if (bytes > options_.budget_bytes) {
      out[i] = absl::ResourceExhaustedError(
          absl::StrCat("block of ", bytes, " bytes does not fit the disk cache budget of ",
                       options_.budget_bytes, " bytes (--disk-cache-bytes)"));
      continue;
    }
    {
      MutexLock lock(&mu_);
      auto it = index_.find(record.key);
      if (it != index_.end()) {
        PlaceLocked(it->second, it->second->mark, /*most_recent=*/true);
        continue;
      }
    }
    // Written in turn, one file at a time: writing a group of temp files before syncing
    // them measured no faster on ext4 (one journal commit per fdatasync either way).
    const std::string path = PathFor(record.key);
    Status s = EnsureShardDir(record.key);
    if (s.ok()) {
      const std::string temp = absl::StrCat(path, ".", temp_seq_.fetch_add(1), kTempSuffix);
      s = WriteFileAtomically(*fs_, path, temp, Serialize(record, fingerprint_),
                              /*sync_dir=*/false);
    }
    if (!s.ok()) {
      if (absl::IsNotFound(s)) shard_ready_[ShardOf(record.key)].store(false);  // folder gone
      ++failures;
      if (!g_write_error_logged.exchange(true)) {
        spdlog::warn("disk cache: cannot write a block file: {} (logged once)",
                     std::string(s.message()));
      }
      out[i] = s;
      continue;
    }
    std::vector<std::string> victims;
    {
      MutexLock lock(&mu_);
      if (generation_ != generation) {
        victims.push_back(path);  // Clear ran meanwhile: the block goes with everything else
      } else if (auto it = index_.find(record.key); it != index_.end()) {
        PlaceLocked(it->second, it->second->mark, true);  // a concurrent writer won; same bytes
      } else {
        evicted_keys.clear();
        InsertLocked(record.key, bytes, victims, observed() ? &evicted_keys : nullptr);
        if (record.generated && !lru_.empty() && lru_.front().key == record.key) {
          lru_.splice(lru_.end(), lru_, lru_.begin());  // generated and unmarked: the first to go
        }
        PublishGaugesLocked();
        if (observed()) changes.Stored(&record);
        for (const BlockKey& k : evicted_keys) changes.Evicted(k);
        ++writes;
      }
    }
    RemoveFiles(victims);
    renamed_by_shard[ShardOf(record.key)].push_back(i);
  }
  if (options_.sync_dirs) {
    for (const std::vector<size_t>& renamed : renamed_by_shard) {
      if (renamed.empty()) continue;
      const Status s = fs_->SyncDir(ParentDir(PathFor(records[renamed[0]].key)));
      if (s.ok()) continue;
      // The files are complete and readable, but may not survive a power loss.
      if (!g_write_error_logged.exchange(true)) {
        spdlog::warn("disk cache: cannot sync a block folder: {} (logged once)",
                     std::string(s.message()));
      }
      for (size_t i : renamed) out[i] = s;
      failures += static_cast<int64_t>(renamed.size());
    }
  }
  counters_.writes.fetch_add(writes, std::memory_order_relaxed);
  counters_.write_failures.fetch_add(failures, std::memory_order_relaxed);
  NotifyResidency(changes);
  return out;
}

int DiskStore::Remove(std::span<const BlockKey> keys) {
  std::vector<std::string> paths;
  {
    MutexLock lock(&mu_);
    for (const BlockKey& key : keys) {
      auto it = index_.find(key);
      if (it == index_.end()) continue;
      EraseLocked(it->second);
      index_.erase(it);
      paths.push_back(PathFor(key));
    }
    PublishGaugesLocked();
  }
  RemoveFiles(paths);
  return static_cast<int>(paths.size());
}

Status DiskStore::Clear() {
  std::vector<std::string> paths;
  {
    MutexLock lock(&mu_);
    ++generation_;
    paths.reserve(index_.size());
    for (const Entry& e : lru_) paths.push_back(PathFor(e.key));
    for (const Entry& e : kept_) paths.push_back(PathFor(e.key));
    lru_.clear();
    kept_.clear();
    index_.clear();
    pending_marks_.clear();
    bytes_ = 0;
    kept_bytes_ = 0;
    next_expiry_ms_ = INT64_MAX;
    PublishGaugesLocked();
  }
  paths.push_back(JoinPath(model_dir_, kRetentionFileName));  // no marks outlive a clear
  Status first_error;
  for (const std::string& path : paths) {
    Status s = fs_->RemoveFile(path);
    if (!s.ok() && !absl::IsNotFound(s) && first_error.ok()) first_error = std::move(s);
  }
  return first_error;
}

void DiskStore::RemoveFiles(const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    const Status s = fs_->RemoveFile(path);
    // Already gone is fine; otherwise the file is out of the index and Open deletes or
    // re-indexes it after a restart.
    if (!s.ok() && !absl::IsNotFound(s)) {
      spdlog::debug("disk cache: cannot delete evicted block file: {}", std::string(s.message()));
    }
  }
}

std::vector<BlockKey> DiskStore::KeysByRecency() const {
  MutexLock lock(&mu_);
  std::vector<BlockKey> keys;
  keys.reserve(index_.size());
  for (const Entry& e : kept_) keys.push_back(e.key);
  for (const Entry& e : lru_) keys.push_back(e.key);
  return keys;
}

void DiskStore::CheckInvariants() const {
  MutexLock lock(&mu_);
  PREFIXD_CHECK(index_.size() == lru_.size() + kept_.size(),
                "disk store index and its two lists differ in size");
  int64_t sum = 0, kept_sum = 0;
  for (const List* list : {&lru_, &kept_}) {
    for (auto it = list->begin(); it != list->end(); ++it) {
      auto found = index_.find(it->key);
      PREFIXD_CHECK(found != index_.end() && found->second == it,
                    "disk store index does not point at the list entry of its key");
      PREFIXD_CHECK(it->mark.marked() == (list == &kept_),
                    "disk store entry in the list its retention mark does not say");
      PREFIXD_CHECK(it->seq < next_seq_, "disk store entry from the future");
      const StatusOr<FileInfo> info = fs_->Stat(PathFor(it->key));
      PREFIXD_CHECK(info.ok(), "disk store indexes a block file that does not exist");
      PREFIXD_CHECK(info->size == it->bytes, "disk store charges a size other than the file's");
      sum += it->bytes;
      if (list == &kept_) kept_sum += it->bytes;
    }
  }
  PREFIXD_CHECK(sum == bytes_, "disk store byte count differs from the sum of its entries");
  PREFIXD_CHECK(kept_sum == kept_bytes_, "disk store retained bytes differ from kept_'s entries");
  PREFIXD_CHECK(bytes_ <= std::max<int64_t>(options_.budget_bytes, 0),
                "disk store over its budget");
  const TierStats stats = counters_.Snapshot();
  PREFIXD_CHECK(stats.entries == static_cast<int64_t>(index_.size()) && stats.bytes == bytes_,
                "disk store stats differ from its contents");
}

}  // namespace prefixd
