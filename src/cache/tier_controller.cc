#include "cache/tier_controller.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "base/log.h"
#include "tier/disk_store.h"
#include "tier/host_store.h"

namespace prefixd {

namespace {
using MonoClock = std::chrono::steady_clock;
// Remote candidates per lookup: past this many blocks (16k tokens at 16 per block), a prompt
// reads the rest from its own computation rather than one huge MGET.
constexpr size_t kMaxRemoteKeys = 1024;
}  // namespace

StatusOr<std::unique_ptr<TierController>> TierController::Create(
    const TierOptions& options, std::vector<uint8_t> fingerprint, BlockHashKind hash,
    int block_size, BlockIo* io, BlockPool* pool) {
  auto tc = std::unique_ptr<TierController>(
      new TierController(options, fingerprint, block_size, io, pool));
  if (options.host_bytes > 0) {
    tc->host_ = std::make_unique<HostStore>(options.host_bytes, options.clock,
                                            options.retention_max_share);
  }
  if (!options.disk_dir.empty()) {
    DiskStoreOptions d;
    d.dir = options.disk_dir;
    d.budget_bytes = options.disk_bytes;
    d.fingerprint = std::move(fingerprint);
    d.chain_kind = hash;
    d.progress = options.scan_progress;
    d.fs = options.disk_fs;
    d.clock = options.clock;
    d.retention_max_share = options.retention_max_share;
    ASSIGN_OR_RETURN(auto disk, DiskStore::Open(std::move(d)));
    spdlog::info("disk cache {}: {}", options.disk_dir, disk->scan_report().ToString());
    tc->disk_ = std::move(disk);
    tc->disk_writer_ = std::make_unique<BackgroundWriter>(tc->disk_.get(), options.max_pending_writes);
  }
  if (options.remote) {
    RedisStoreOptions r = *options.remote;
    r.fingerprint = tc->fingerprint_;
    r.chain_kind = hash;
    ASSIGN_OR_RETURN(tc->remote_, RedisStore::Open(std::move(r)));
    tc->remote_writer_ =
        std::make_unique<BackgroundWriter>(tc->remote_.get(), options.max_pending_writes);
  }
  if (tc->disk_ || tc->remote_) {
    tc->reader_ = std::thread([t = tc.get()] { t->ReaderLoop(); });
  }
  if (tc->host_ || tc->disk_ || tc->remote_) {
    // Unbounded: a queued copy holds a pool block (the pool bounds them) and no KV bytes
    // until it is made, and dropping one would make what host RAM holds depend on timing.
    // The slow tiers' writers it feeds keep their bounds (max_pending_writes).
    tc->copier_ = std::make_unique<BackgroundWriter>(
        [t = tc.get()](std::vector<PendingWrite>& job) { t->Land(job); },
        std::numeric_limits<int>::max());
  }
  return tc;
}

TierController::TierController(const TierOptions& options, std::vector<uint8_t> fingerprint,
                               int block_size, BlockIo* io, BlockPool* pool)
    : fingerprint_(std::move(fingerprint)),
      block_size_(block_size),
      io_(io),
      pool_(pool),
      tails_(options.partial_supported ? options.partial_max_entries : 0),
      snapshots_(options.snapshots),
      partial_supported_(options.partial_supported),
      scope_(options.scope, options.min_tokens),
      max_pending_writes_(options.max_pending_writes) {
  if (!options.partial_supported && options.partial_max_entries > 0) {
    spdlog::warn("partial tails are off: this model's KV cache cannot be sliced per token "
                 "(sliding-window or recurrent layers); --mru-partial-max-entries is ignored");
  }
}

TierController::~TierController() {
  // The copier's jobs feed the writers below: finish them first, and give the pool (which
  // outlives the controller) back the blocks they held.
  if (copier_) WaitForCopies();
  copier_.reset();
  disk_writer_.reset();
  remote_writer_.reset();
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    read_stop_ = true;
  }
  read_cv_.notify_all();
  if (reader_.joinable()) reader_.join();
}

SlowReads TierController::KeysToLoad(const BlockKeyChain& chain, int64_t pool_tokens) const {
  SlowReads out;
  if (!reads_ahead()) return out;
  const std::vector<BlockKey>& keys = chain.keys;
  size_t i = pool_tokens / block_size_;
  for (; i < keys.size(); ++i) {
    if (HostHas(keys[i])) continue;
    if (!disk_ || !disk_->Contains(keys[i])) break;
    if (disk_onboard_limit_ >= 0 && static_cast<int64_t>(out.disk.size()) >= disk_onboard_limit_) break;
    out.disk.push_back(keys[i]);
  }
  // Only a round trip tells what Redis holds: every following block is a candidate.
  if (remote_) {
    for (; i < keys.size() && out.remote.size() < kMaxRemoteKeys; ++i) {
      out.remote.push_back(keys[i]);
    }
  }
  return out;
}

void TierController::Prefetch(int64_t ticket, SlowReads reads) {
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    read_queue_.emplace_back(ticket, std::move(reads));
  }
  read_cv_.notify_one();
}

bool TierController::PrefetchDone(int64_t ticket) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto it = std::find(read_done_.begin(), read_done_.end(), ticket);
  if (it == read_done_.end()) return false;
  read_done_.erase(it);
  return true;
}

void TierController::WaitForPrefetch(int timeout_ms) {
  std::unique_lock<std::mutex> lock(read_mu_);
  read_done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                         [&] { return !read_done_.empty() || read_stop_; });
}

void TierController::WaitForAllPrefetches() {
  std::unique_lock<std::mutex> lock(read_mu_);
  read_done_cv_.wait(lock, [&] { return read_stop_ || (read_queue_.empty() && reading_ticket_ < 0); });
}

void TierController::EndPrefetch(int64_t ticket) {
  std::lock_guard<std::mutex> lock(read_mu_);
  std::erase_if(read_queue_, [&](const auto& job) { return job.first == ticket; });
  if (reading_ticket_ == ticket) ended_.insert(ticket);
  std::erase(read_done_, ticket);
  absl::erase_if(prefetched_, [&](auto& entry) {
    std::erase_if(entry.second, [&](const Prefetched& p) {
      if (p.ticket != ticket) return false;
      if (p.from == remote_.get()) --remote_prefetched_;
      --num_prefetched_entries_;
      return true;
    });
    return entry.second.empty();
  });
  CountPrefetched();
}

void TierController::CountPrefetched() {
  const int64_t total = num_prefetched_entries_;
  num_prefetched_.store(total - remote_prefetched_, std::memory_order_relaxed);
  num_remote_prefetched_.store(remote_prefetched_, std::memory_order_relaxed);
}

namespace {

// The copy an admission of `ticket` takes among `copies`: its own, else the first.
template <typename Copies>
auto ChooseCopy(Copies& copies, int64_t ticket) {
  auto own = std::find_if(copies.begin(), copies.end(),
                          [&](const auto& p) { return p.ticket == ticket; });
  return own != copies.end() ? own : copies.begin();
}

}  // namespace

std::optional<BlockRecord> TierController::TakePrefetched(const BlockKey& key, int64_t ticket) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto it = prefetched_.find(key);
  if (it == prefetched_.end()) return std::nullopt;
  auto copy = ChooseCopy(it->second, ticket);
  BlockRecord r = std::move(copy->record);
  if (copy->from == remote_.get()) --remote_prefetched_;
  it->second.erase(copy);
  --num_prefetched_entries_;
  if (it->second.empty()) prefetched_.erase(it);
  CountPrefetched();
  return r;
}

TierStore* TierController::PrefetchedFrom(const BlockKey& key, int64_t ticket) {
  std::lock_guard<std::mutex> lock(read_mu_);
  auto it = prefetched_.find(key);
  return it == prefetched_.end() ? nullptr : ChooseCopy(it->second, ticket)->from;
}

std::vector<TierController::Prefetched> TierController::ReadAhead(int64_t ticket,
                                                                  const SlowReads& reads) {
  std::vector<Prefetched> got;
  // Disk: one key at a time, stopping at the first that fails (a damaged file, say): a prefix
  // is contiguous, so Onboard would never take the blocks after it, nor the remote ones.
  for (const BlockKey& key : reads.disk) {
    auto r = disk_->Read(std::span<const BlockKey>(&key, 1));
    if (!r[0].ok()) return got;
    got.push_back(Prefetched{disk_.get(), std::move(*r[0]), ticket});
  }
  if (reads.remote.empty()) return got;
  {
    // Ended while its disk blocks were read: no round trip for blocks nobody will take.
    std::lock_guard<std::mutex> lock(read_mu_);
    if (ended_.contains(ticket)) return got;
  }
  for (auto& r : remote_->Read(reads.remote)) {  // one MGET
    if (!r.ok()) break;  // as for disk: the rest would not be used
    got.push_back(Prefetched{remote_.get(), std::move(*r), ticket});
  }
  return got;
}

void TierController::ReaderLoop() {
  while (true) {
    std::pair<int64_t, SlowReads> job;
    {
      std::unique_lock<std::mutex> lock(read_mu_);
      read_cv_.wait(lock, [&] { return read_stop_ || !read_queue_.empty(); });
      if (read_stop_) return;
      job = std::move(read_queue_.front());
      read_queue_.pop_front();
      reading_ticket_ = job.first;
    }
    std::vector<Prefetched> got = ReadAhead(job.first, job.second);
    {
      std::lock_guard<std::mutex> lock(read_mu_);
      reading_ticket_ = -1;
      if (ended_.erase(job.first) == 0) {
        // A backstop: EndPrefetch normally leaves nothing behind.
        if (num_prefetched_entries_ > 4096) {
          prefetched_.clear();
          remote_prefetched_ = 0;
          num_prefetched_entries_ = 0;
        }
        for (Prefetched& p : got) {
          if (p.from == remote_.get()) ++remote_prefetched_;
          std::vector<Prefetched>& copies = prefetched_[p.record.key];
          auto same = std::find_if(copies.begin(), copies.end(),
                                   [&](const Prefetched& q) { return q.ticket == p.ticket; });
          if (same == copies.end()) {
            copies.push_back(std::move(p));
            ++num_prefetched_entries_;
          } else {
            if (same->from == remote_.get()) --remote_prefetched_;
            *same = std::move(p);
          }
        }
        read_done_.push_back(job.first);
      }
      CountPrefetched();
    }
    read_done_cv_.notify_all();
  }
}

std::optional<std::vector<BlockId>> TierController::AllocateForOnboard(int n,
                                                                      const MakeRoom& make_room) {
  if (n <= 0) return std::vector<BlockId>{};
  // Blocks waiting for their copies would be free had the copies been made at once: count
  // them as such before asking the tree for room.
  if (pool_->num_free() < n && pool_->num_held() > 0) WaitForCopies();
  if (pool_->num_free() < n) make_room(n - pool_->num_free());
  return pool_->Allocate(n);
}

std::vector<BlockRecord> TierController::RecordsToOnboard(const BlockKeyChain& chain,
                                                          int64_t first, int64_t ticket,
                                                          std::vector<TierStore*>* source) {
  // Which tier holds each following block, stopping at the first that none holds. Slow-tier
  // blocks (disk, remote) come only from the read-ahead, so the engine thread never waits for
  // the disk or Redis: one not read ahead (the pool dropped it while the request waited for
  // the others) ends the prefix here, and the rest is recomputed.
  const std::vector<BlockKey>& keys = chain.keys;
  int64_t from_disk = 0;
  for (size_t i = first; i < keys.size(); ++i) {
    TierStore* t = nullptr;
    if (HostHas(keys[i])) t = host_.get();
    else t = PrefetchedFrom(keys[i], ticket);
    if (t == nullptr) break;
    if (t == disk_.get() && disk_onboard_limit_ >= 0 && from_disk++ >= disk_onboard_limit_) break;
    source->push_back(t);
  }
  std::vector<BlockRecord> records;
  for (size_t k = 0; k < source->size(); ++k) {
    const BlockKey& key = keys[first + k];
    std::optional<BlockRecord> rec;
    if ((*source)[k] == host_.get()) {
      auto got = host_->Read(std::span<const BlockKey>(&key, 1));
      if (got[0].ok()) rec = std::move(*got[0]);
    } else {
      rec = TakePrefetched(key, ticket);
    }
    if (!rec || !PayloadFits(rec->kv.size())) break;
    records.push_back(std::move(*rec));
  }
  return records;
}

TierHit TierController::Onboard(RadixTree& tree, std::string_view salt,
                                std::span<const int32_t> tokens, const BlockKeyChain& keys,
                                int64_t max_tokens, const MakeRoom& make_room, int64_t ticket) {
  TierHit hit;
  const auto t0 = MonoClock::now();
  const int bs = block_size_;
  const MatchResult l1 = tree.Peek(salt, tokens.first(std::min<size_t>(tokens.size(), max_tokens)));
  const int64_t first = l1.num_tokens / bs;  // first block index the pool cannot serve whole
  // Keep the pool's match while evicting for room.
  tree.Lock(l1.node);
  int64_t covered = l1.num_tokens;
  std::vector<TierStore*> source;
  const std::vector<BlockRecord> records = RecordsToOnboard(keys, first, ticket, &source);
  // What the disk's reads gave, counted before the pool is asked for room: a request log
  // records it, and its replay, given as many disk blocks, needs the same room.
  hit.disk_blocks = std::count(source.begin(), source.begin() + records.size(), disk_.get());
  if (!source.empty()) {
    auto fresh = AllocateForOnboard(static_cast<int>(records.size()), make_room);
      if (fresh && !records.empty()) {
      std::vector<BlockId> blocks(l1.blocks.begin(), l1.blocks.begin() + first);
      for (size_t k = 0; k < records.size(); ++k) {
        const int64_t index = first + static_cast<int64_t>(k);
        LoadPayload(records[k].kv, (*fresh)[k], (index + 1) * bs);
        blocks.push_back((*fresh)[k]);
        // Counted up to max_tokens only: the block holding the last prompt token is onboarded
        // too, but that token is recomputed, so usage's per-tier counts add up to
        // cached_tokens.
        const int64_t begin = std::max<int64_t>(index * bs, l1.num_tokens);
        const int64_t end = std::min<int64_t>((index + 1) * bs, max_tokens);
        (source[k] == host_.get()   ? hit.host_tokens
         : source[k] == disk_.get() ? hit.disk_tokens
                                    : hit.remote_tokens) += std::max<int64_t>(0, end - begin);
      }
      covered = (first + static_cast<int64_t>(records.size())) * bs;
      tree.Insert(salt, tokens.first(covered), blocks, &keys);
      for (BlockId b : *fresh) pool_->Unref(b);  // the tree holds them now
      onboarded_.fetch_add(static_cast<int64_t>(records.size()), std::memory_order_relaxed);
    } else if (fresh) {
      for (BlockId b : *fresh) pool_->Unref(b);
    }
  }
  if (covered % bs == 0 && covered < max_tokens) {
    hit.partial_tokens = SpliceTail(tree, salt, tokens, keys, covered, max_tokens, make_room);
  }
  tree.Unlock(l1.node);
  hit.load_ms = std::chrono::duration<double, std::milli>(MonoClock::now() - t0).count();
  return hit;
}

int64_t TierController::SpliceTail(RadixTree& tree, std::string_view salt,
                                   std::span<const int32_t> tokens, const BlockKeyChain& keys,
                                   int64_t p, int64_t max_tokens, const MakeRoom& make_room) {
  const int bs = block_size_;
  const BlockKey parent = keys.Parent(p / bs);
  // The tail must match the prompt's own next tokens; only the part before max_tokens is used
  // (the last prompt token is always computed).
  if (tails_.Peek(parent, tokens.subspan(p)) == nullptr) {
    tails_.Take(parent, tokens.subspan(p));  // evicts a stale entry, if any
    return 0;
  }
  auto block = AllocateForOnboard(1, make_room);
  if (!block) return 0;
  // All or nothing: the blocks before the tail must still be in the tree.
  const MatchResult before = tree.Peek(salt, tokens.first(p));
  if (before.num_tokens < p) {
    pool_->Unref((*block)[0]);
    return 0;
  }
  std::optional<PartialTail> tail = tails_.Take(parent, tokens.subspan(p));
  // A hybrid's tail carries the state before the prompt's last token (StashTail).
  const int64_t state_at = p + static_cast<int64_t>(tail ? tail->tokens.size() : 0) - 1;
  if (!tail || !LoadPayload(tail->kv, (*block)[0], state_at)) {
    pool_->Unref((*block)[0]);
    return 0;
  }
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(tail->tokens.size()), max_tokens - p);
  std::vector<BlockId> blocks(before.blocks.begin(), before.blocks.begin() + p / bs);
  blocks.push_back((*block)[0]);
  tree.Insert(salt, tokens.first(p + n), blocks, &keys);
  pool_->Unref((*block)[0]);
  return n;
}

PendingWrite TierController::HoldForCopy(const BlockKey& key, const BlockKey& parent,
                                         std::span<const int32_t> tokens, BlockId block,
                                         int64_t end, uint8_t tiers) {
  PendingWrite w;
  w.record.key = key;
  w.record.parent = parent;
  w.record.tokens.assign(tokens.begin(), tokens.end());
  // The snapshot map is the engine thread's: its bytes are taken now, the KV by the copier.
  if (snapshots_) snapshots_->AppendBytes(block, end, &w.record.kv);
  w.source = block;
  w.tiers = tiers;
  pool_->Hold(block);
  ++holds_in_flight_;
  return w;
}

bool TierController::PayloadFits(size_t bytes) const {
  const int64_t n = static_cast<int64_t>(bytes);
  return n == io_->block_bytes() ||
         (snapshots_ != nullptr && n == io_->block_bytes() + snapshots_->state_bytes());
}

bool TierController::LoadPayload(std::span<const uint8_t> payload, BlockId block, int64_t end) {
  if (!PayloadFits(payload.size())) return false;
  const size_t kv = static_cast<size_t>(io_->block_bytes());
  io_->WriteBlock(block, payload.first(kv));
  if (payload.size() > kv) snapshots_->PutBytes(block, end, payload.subspan(kv));
  return true;
}

void TierController::Offload(std::span<const EvictionPlan::Entry> nodes) {
  if (!host_) return;
  const int bs = block_size_;
  std::vector<PendingWrite> job;
  std::vector<HostStore::Spilled> spilled;  // retained records host RAM hands down
  std::vector<int32_t> first_block;  // a node's first full block: its lead, then its own tokens
  for (const EvictionPlan::Entry& e : nodes) {
    const RemovedNode& n = e.node;
    // Blocks host RAM (or the disk, written through) already holds keep ranking by what the
    // tree asked: marked on what host RAM holds once the copies before this one landed.
    if (n.retention.marked()) {
      WaitForCopies();
      host_->Retain(n.keys, n.retention, &spilled);
      if (disk_) disk_->Retain(n.keys, n.retention, /*remember_absent=*/false);
    }
    // Key k is block index n.start / bs + k; it is n.blocks[k] and ends inside the edge.
    // Whether host RAM holds it already is asked by the copier, in order, before it copies.
    for (size_t k = 0; k < n.keys.size(); ++k) {
      const BlockKey parent = k == 0 ? n.parent_key : n.keys[k - 1];
      const int64_t begin = (n.start / bs + static_cast<int64_t>(k)) * bs - n.start;
      std::span<const int32_t> tokens;
      if (begin >= 0) {
        tokens = n.tokens.subspan(begin, bs);
      } else {
        first_block.assign(e.lead.begin(), e.lead.end());
        first_block.insert(first_block.end(), n.tokens.begin(), n.tokens.begin() + bs + begin);
        tokens = first_block;
      }
      const int64_t end = (n.start / bs + static_cast<int64_t>(k) + 1) * bs;
      job.push_back(HoldForCopy(n.keys[k], parent, tokens, n.blocks[k], end, kToHost));
      job.back().record.generated = n.generated;
      job.back().mark = n.retention;
    }
  }
  SpillToDisk(std::move(spilled));
  // Known as on their way only now: a WaitForCopies above forgets what it saw land.
  for (const PendingWrite& w : job) {
    offloading_.insert(w.record.key);
    if (w.mark.marked()) offloading_expiry_ms_ = std::min(offloading_expiry_ms_, w.mark.until_ms);
  }
  copier_->Enqueue(std::move(job));
}

void TierController::Land(std::vector<PendingWrite>& job) {
  std::vector<BlockRecord> host_records, disk_records, remote_records;
  std::vector<RetentionMark> marks;
  for (PendingWrite& w : job) {
    uint8_t to = w.tiers;
    // As the engine thread would have asked before copying, had it copied: the jobs before
    // this one have landed, and host RAM changes only through them (HostHas, WaitForCopies).
    if ((to & kToHost) && host_->Contains(w.record.key)) to &= ~kToHost;
    if (to == 0) continue;
    if (w.source.valid()) {
      // record.kv holds what follows the KV (a state snapshot, or nothing): the KV goes first.
      const size_t kv = static_cast<size_t>(io_->block_bytes());
      w.record.kv.insert(w.record.kv.begin(), kv, 0);
      io_->ReadBlock(w.source, std::span<uint8_t>(w.record.kv).first(kv));
    }
    if (to & kToDisk) disk_records.push_back(w.record);
    if (to & kToRemote) remote_records.push_back(w.record);
    if (to & kToHost) {
      host_records.push_back(std::move(w.record));
      marks.push_back(w.mark);
    }
  }
  if (!host_records.empty()) {
    const int64_t n = static_cast<int64_t>(host_records.size());
    std::vector<HostStore::Spilled> spilled;
    host_->WriteRetained(std::move(host_records), marks, &spilled);
    offloaded_.fetch_add(n, std::memory_order_relaxed);
    SpillToDisk(std::move(spilled));
  }
  if (!disk_records.empty()) disk_writer_->Enqueue(std::move(disk_records));
  if (!remote_records.empty()) remote_writer_->Enqueue(std::move(remote_records));
}

void TierController::ReleaseCopied() {
  if (!copier_ || (holds_in_flight_ == 0 && offloading_.empty())) return;
  // Only this thread queues jobs: idle now means every job so far is done, and released.
  const bool idle = copier_->idle();
  std::vector<BlockId> done;
  copier_->TakeReleased(&done);
  for (BlockId b : done) pool_->Unhold(b);
  holds_in_flight_ -= static_cast<int64_t>(done.size());
  if (idle) {
    offloading_.clear();
    offloading_expiry_ms_ = INT64_MAX;
  }
}

void TierController::WaitForCopies() {
  if (!copier_) return;
  copier_->Flush();
  ReleaseCopied();
}

bool TierController::HostHas(const BlockKey& key) const {
  if (!host_) return false;
  if (!offloading_.empty()) {
    // A key neither held nor queued cannot be there after the copies either (they only add
    // the queued keys); otherwise the copies decide (they may also push a held key out).
    if (!offloading_.contains(key) && !host_->Contains(key)) return false;
    copier_->Flush();
    offloading_.clear();
    offloading_expiry_ms_ = INT64_MAX;
  }
  return host_->Contains(key);
}

void TierController::SpillToDisk(std::vector<HostStore::Spilled> spilled) {
  if (!disk_writer_ || spilled.empty()) return;
  std::vector<BlockRecord> records;
  for (HostStore::Spilled& s : spilled) {
    // The mark waits for the write when the block is not on disk yet.
    disk_->Retain(std::span<const BlockKey>(&s.record.key, 1), s.mark, /*remember_absent=*/true);
    if (!disk_->Contains(s.record.key)) records.push_back(std::move(s.record));
  }
  spilled_to_disk_.fetch_add(static_cast<int64_t>(records.size()), std::memory_order_relaxed);
  disk_writer_->Enqueue(std::move(records));
}

void TierController::RetainOnDisk(const BlockKeyChain& keys, int64_t begin, int64_t end,
                                  const RetentionMark& mark) {
  if (!disk_ || !mark.marked()) return;
  const int64_t first = (begin + block_size_ - 1) / block_size_;
  const int64_t last = std::min(end / block_size_, keys.size());
  if (first >= last) return;
  disk_->Retain(std::span<const BlockKey>(keys.keys).subspan(first, last - first), mark, /*remember_absent=*/true);
}

int TierController::ExpireRetention(int64_t now_ms) {
  int n = 0;
  // Host RAM's marks end in order with the copies: only when one is due, held or in flight.
  if (host_ && now_ms >= std::min(offloading_expiry_ms_, host_->next_retention_expiry_ms())) {
    WaitForCopies();
    n += host_->ExpireRetention(now_ms);
  }
  return n + (disk_ ? disk_->ExpireRetention(now_ms) : 0);
}

void TierController::StashTail(std::span<const int32_t> prompt, std::span<const BlockId> blocks,
                               const BlockKeyChain& keys, int64_t end) {
  const int bs = block_size_;
  if (end <= 0 || end % bs == 0 || tails_.max_entries() == 0) return;
  const int64_t index = end / bs;
  if (index >= static_cast<int64_t>(blocks.size())) return;
  PartialTail tail;
  tail.parent = keys.Parent(index);
  tail.tokens.assign(prompt.begin() + index * bs, prompt.begin() + end);
  tail.kv.resize(io_->block_bytes());
  io_->ReadBlock(blocks[index], tail.kv);
  // A hybrid resumes a repeat of this prompt before its last token (always recomputed): the
  // state there goes with the tail, when it lies inside the tail's block.
  if (snapshots_) snapshots_->AppendBytes(blocks[index], end - 1, &tail.kv);
  tails_.Stash(std::move(tail));
}

void TierController::OnPrefillComplete(std::span<const int32_t> prompt,
                                       std::span<const BlockId> blocks, const BlockKeyChain& keys,
                                       std::span<const int64_t> message_starts,
                                       const std::optional<ScopeSpec>& scope) {
  const int64_t len = static_cast<int64_t>(prompt.size());
  // The tail at the prompt boundary: a prompt-only resubmission finds it.
  StashTail(prompt, blocks, keys, len);
  if (!disk_ && !remote_) return;
  const ScopeSpec spec = scope.value_or(scope_.default_spec());
  const ScopeDecision d = scope_.Decide(spec, prompt, message_starts);
  scope_.Remember(prompt);
  if (spec.mode == ScopeSpec::Mode::kAuto) {
    spdlog::debug("disk scope {}: {} candidates, longest shared prefix {}, boundary {} of {} ({})",
                  spec.ToString(), d.candidates, d.longest_shared, d.end, len, d.reason);
  }
  if (d.keep_tail && d.end != len) StashTail(prompt, blocks, keys, d.end);
  copier_->Enqueue(WritesThrough(prompt, blocks, keys, d.end));
}

std::vector<PendingWrite> TierController::WritesThrough(std::span<const int32_t> prompt,
                                                        std::span<const BlockId> blocks,
                                                        const BlockKeyChain& keys, int64_t end) {
  const int bs = block_size_;
  std::vector<PendingWrite> job;
  for (int64_t i = 0; (i + 1) * bs <= end && i < static_cast<int64_t>(blocks.size()); ++i) {
    // Remote: Contains is the store's memory of what it wrote or read lately, so a prefix
    // every request repeats is not re-sent each time.
    uint8_t to = 0;
    if (disk_ && !disk_->Contains(keys.keys[i])) to |= kToDisk;
    if (remote_ && !remote_->Contains(keys.keys[i])) to |= kToRemote;
    if (to == 0) continue;
    job.push_back(HoldForCopy(keys.keys[i], keys.Parent(i), prompt.subspan(i * bs, bs), blocks[i],
                              (i + 1) * bs, to));
  }
  return job;
}

void TierController::SetEventLog(KvEventLog* log) {
  if (host_) {
    host_events_ = std::make_unique<TierEventObserver>(log, KvMedium::kHost);
    host_->SetResidencyObserver(host_events_.get());
  }
  if (disk_) {
    disk_events_ = std::make_unique<TierEventObserver>(log, KvMedium::kDisk);
    disk_->SetResidencyObserver(disk_events_.get());
    // What the start-up scan found is resident too: a router learns it now, not only as it
    // is rewritten.
    const int64_t n = disk_->AnnounceResident(*disk_events_);
    if (n > 0) spdlog::info("KV events: {} blocks found on disk at start-up announced", n);
  }
  if (remote_) {
    remote_events_ = std::make_unique<TierEventObserver>(log, KvMedium::kRemote);
    remote_->SetResidencyObserver(remote_events_.get());
  }
}

void TierController::FlushDiskWrites() {
  if (copier_) copier_->Flush();  // it feeds the writer
  if (disk_writer_) disk_writer_->Flush();
}

void TierController::FlushRemoteWrites() {
  if (copier_) copier_->Flush();
  if (remote_writer_) remote_writer_->Flush();
}

TierProbe TierController::Probe(int64_t pool_tokens, std::span<const int32_t> tokens,
                                const BlockKeyChain& chain) const {
  TierProbe p;
  const int bs = block_size_;
  p.pool_tokens = pool_tokens;
  const std::vector<BlockKey>& keys = chain.keys;
  int64_t covered = p.pool_tokens;
  for (size_t i = p.pool_tokens / bs; i < keys.size(); ++i) {
    const int64_t n = static_cast<int64_t>(i + 1) * bs - std::max<int64_t>(i * bs, p.pool_tokens);
    if (HostHas(keys[i])) {
      p.host_tokens += n;
      if (host_->MarkOf(keys[i]).marked()) p.host_retained_tokens += n;
    } else if (disk_ && disk_->Contains(keys[i])) {
      p.disk_tokens += n;
      if (disk_->MarkOf(keys[i]).marked()) p.disk_retained_tokens += n;
    } else {
      break;
    }
    covered = static_cast<int64_t>(i + 1) * bs;
  }
  if (covered % bs == 0) {
    const BlockKey parent = chain.Parent(covered / bs);
    if (const PartialTail* t = tails_.Peek(parent, tokens.subspan(covered))) {
      p.partial_tokens = static_cast<int64_t>(t->tokens.size());
    }
  }
  return p;
}

void TierController::ProbeRemote(const BlockKeyChain& chain, TierProbe* probe) const {
  if (!remote_) return;
  const int bs = block_size_;
  const int64_t covered = probe->pool_tokens + probe->host_tokens + probe->disk_tokens;
  const std::vector<BlockKey>& keys = chain.keys;
  const size_t first = static_cast<size_t>(covered / bs);
  if (first >= keys.size()) return;
  const size_t n = std::min(keys.size() - first, kMaxRemoteKeys);
  StatusOr<int> found = remote_->LookupPrefix(std::span(keys).subspan(first, n));
  if (!found.ok() || *found == 0) return;  // Redis down reads as "not there", like a miss
  probe->remote_tokens = static_cast<int64_t>(first + *found) * bs - covered;
  probe->partial_tokens = 0;
}

Status TierController::ClearRemote() {
  if (!remote_) return absl::OkStatus();
  FlushRemoteWrites();
  return remote_->Clear();
}

Status TierController::Clear(std::string_view tier) {
  WaitForCopies();  // what they would add must go too
  if (tier == "host") return host_ ? host_->Clear() : absl::OkStatus();
  if (tier == "partial") {
    tails_.Clear();
    return absl::OkStatus();
  }
  if (tier == "disk") {
    FlushDiskWrites();
    // The tails' parents may have lived on disk only: drop them all, so that a probe never
    // reports a tail whose blocks are gone.
    tails_.Clear();
    return disk_ ? disk_->Clear() : absl::OkStatus();
  }
  if (tier == "remote") {
    tails_.Clear();  // as for disk: a tail's parent may have lived in Redis only
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown cache tier '", std::string(tier), "'; use pool, host, disk, remote, partial or all"));
}

TierControllerStats TierController::stats() const {
  if (copier_) copier_->Flush();
  TierControllerStats s;
  s.host_enabled = host_ != nullptr;
  s.disk_enabled = disk_ != nullptr;
  s.remote_enabled = remote_ != nullptr;
  if (host_) s.host = host_->Stats();
  if (disk_) s.disk = disk_->Stats();
  if (remote_) {
    s.remote = remote_->Stats();
    s.remote_health = remote_->Health();
  }
  s.partial = tails_.stats();
  s.partial.supported = partial_supported_;
  s.offloaded_blocks = offloaded_.load(std::memory_order_relaxed);
  s.spilled_to_disk_blocks = spilled_to_disk_.load(std::memory_order_relaxed);
  s.onboarded_blocks = onboarded_.load(std::memory_order_relaxed);
  if (disk_writer_) {
    s.disk_writes_queued = disk_writer_->queued();
    s.disk_writes_dropped = disk_writer_->dropped();
    s.disk_writes_pending = disk_writer_->pending();
  }
  if (remote_writer_) {
    s.remote_writes_queued = remote_writer_->queued();
    s.remote_writes_dropped = remote_writer_->dropped();
    s.remote_writes_pending = remote_writer_->pending();
  }
  s.prefetched_blocks = num_prefetched_.load(std::memory_order_relaxed);
  s.remote_prefetched_blocks = num_remote_prefetched_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace prefixd
