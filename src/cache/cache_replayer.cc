#include "cache/cache_replayer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "tier/block_record.h"

namespace prefixd {

// Pool blocks hold no bytes: reads give zeros, writes are dropped.
class CacheReplayer::NullBlockIo final : public BlockIo {
 public:
  void ReadBlock(BlockId, std::span<uint8_t> out) const override {
    std::memset(out.data(), 0, out.size());
  }
  void WriteBlock(BlockId, std::span<const uint8_t>) override {}
  int64_t block_bytes() const override { return kReplayBlockBytes; }
};

namespace {

// A folder for the disk tier's files: under /dev/shm when there is one, where fsync costs
// nothing (the replay keeps no file past its run), else the system's temporary folder.
StatusOr<std::string> MakeScratchDir() {
  std::error_code ec;
  std::filesystem::path base = "/dev/shm";
  if (!std::filesystem::is_directory(base, ec)) base = std::filesystem::temp_directory_path(ec);
  std::string templ = (base / "prefixd-replay-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a scratch folder for the disk tier under ",
                                            base.string(), ": ", std::strerror(errno),
                                            "; set TMPDIR to a writable folder"));
  }
  return templ;
}

// The replay's model fingerprint: any fixed bytes (no file outlives the replay).
std::vector<uint8_t> ReplayFingerprint() {
  const std::string_view tag = "prefixd replay";
  return std::vector<uint8_t>(tag.begin(), tag.end());
}

}  // namespace

int64_t TierBlocks(int64_t budget_bytes, int block_size, int64_t block_bytes) {
  if (budget_bytes <= 0) return 0;
  return budget_bytes / static_cast<int64_t>(SerializedSize(block_size, block_bytes));
}

StatusOr<std::unique_ptr<CacheReplayer>> CacheReplayer::Create(const ReplayConfig& config) {
  if (config.block_size < 1 || config.num_kv_blocks < 1 || config.max_cached_blocks < 1 ||
      config.max_chunk_tokens < 1 || config.max_batch_tokens < 1 || config.host_blocks < 0 ||
      config.disk_blocks < 0 || config.num_kv_blocks >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replay config out of range: block_size ", config.block_size, ", num_kv_blocks ",
        config.num_kv_blocks, ", max_cached_blocks ", config.max_cached_blocks,
        ", max_chunk_tokens ", config.max_chunk_tokens, ", max_batch_tokens ",
        config.max_batch_tokens, ", host_blocks ", config.host_blocks, ", disk_blocks ",
        config.disk_blocks, " (sizes must be positive, tiers >= 0, the pool under 2^31 blocks)"));
  }
  std::string scratch;
  if (config.disk_blocks > 0) {
    ASSIGN_OR_RETURN(scratch, MakeScratchDir());
  }
  auto replayer = std::unique_ptr<CacheReplayer>(new CacheReplayer(config, std::move(scratch)));
  RETURN_IF_ERROR(replayer->Init());
  return replayer;
}

CacheReplayer::CacheReplayer(const ReplayConfig& config, std::string scratch_dir)
    : config_(config), scratch_dir_(std::move(scratch_dir)), io_(std::make_unique<NullBlockIo>()) {}

Status CacheReplayer::Init() {
  pool_ = std::make_unique<BlockPool>(static_cast<int>(config_.num_kv_blocks));
  PrefixCacheOptions co;
  co.enabled = config_.enabled;
  co.fingerprint = ReplayFingerprint();
  co.max_cached_blocks = static_cast<int>(std::min<int64_t>(config_.max_cached_blocks, 1 << 30));
  co.clock = &clock_;
  co.retention_max_share = config_.retention_max_share;
  const int64_t record = static_cast<int64_t>(SerializedSize(config_.block_size, kReplayBlockBytes));
  TierOptions to;
  to.host_bytes = config_.host_blocks * record;
  to.disk_dir = scratch_dir_;
  to.disk_bytes = config_.disk_blocks * record;
  to.partial_max_entries = config_.partial_max_entries;
  to.partial_supported = config_.partial_supported;
  to.scope = config_.scope;
  to.min_tokens = config_.min_tokens;
  to.clock = &clock_;
  to.retention_max_share = config_.retention_max_share;
  // The server queues at most this many records per slow tier; Run flushes after each
  // request, so only a request of more blocks than that would differ (its writes beyond are
  // dropped on the server too).
  std::unique_ptr<TierController> tiers;
  // The same rule as Engine::CreateCache: a controller exists when any lower tier does.
  if (to.host_bytes > 0 || !to.disk_dir.empty() || to.partial_max_entries > 0) {
    ASSIGN_OR_RETURN(tiers, TierController::Create(to, co.fingerprint, co.hash, config_.block_size,
                                                   io_.get(), pool_.get()));
  }
  cache_ = std::make_unique<PrefixCache>(pool_.get(), config_.block_size, co, std::move(tiers));
  return absl::OkStatus();
}

CacheReplayer::~CacheReplayer() {
  cache_.reset();  // joins the tiers' threads before their folder goes
  if (!scratch_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir_, ec);
  }
}

bool CacheReplayer::ReserveWrite(BlockTable& table, int64_t computed, int64_t len) {
  const int bs = config_.block_size;
  while (!table.PrepareWrite(*pool_, bs, computed, computed + len)) {
    const int needed = static_cast<int>((len + bs - 1) / bs) + 1;
    if (cache_->Evict(needed) == 0) return false;
  }
  return true;
}

ReplayOutcome CacheReplayer::Run(const ReplayedRequest& r) {
  PREFIXD_CHECK(r.num_prompt > 0 && r.num_prompt <= static_cast<int64_t>(r.tokens.size()),
                "CacheReplayer::Run: the prompt must be non-empty and within the tokens");
  ReplayOutcome out;
  const std::span<const int32_t> prompt = r.tokens.first(r.num_prompt);
  const int64_t total = static_cast<int64_t>(r.tokens.size());
  CacheTicket ticket(next_ticket_++, std::string(r.salt), r.num_prompt);
  // Pending only while the disk tier reads ahead (one request at a time: no shared prefill).
  while (cache_->Admit(ticket, prompt) == Admission::kPending) cache_->WaitForReads(100);
  const CacheHit& hit = ticket.hit();
  BlockTable table;
  table.Adopt(hit.blocks);
  int64_t computed = hit.num_tokens;
  out.cached_tokens = std::min(hit.num_tokens, r.num_prompt);
  out.tier = hit.tier;
  out.tier.load_ms = 0;
  // Prefill in chunks, as Engine::PlanStep with one running sequence; then one token per step.
  while (computed < total) {
    const int64_t len = computed < r.num_prompt
                            ? std::min<int64_t>({r.num_prompt - computed, config_.max_chunk_tokens,
                                                 config_.max_batch_tokens})
                            : 1;
    if (!ReserveWrite(table, computed, len)) {
      out.unservable = true;
      break;
    }
    const bool prompt_done = computed < r.num_prompt && computed + len >= r.num_prompt;
    computed += len;
    if (prompt_done) {
      cache_->OnPromptComputed(ticket, prompt, table.blocks(), r.message_starts, r.scope);
      // The server's writes run in the background; its next request came after they landed.
      cache_->FlushDiskWrites();
    }
  }
  // As Engine::Finish: index what was computed, unlock, drop the table's references.
  if (computed > 0) cache_->Insert(ticket, r.tokens.first(computed), table.blocks());
  cache_->Release(ticket);
  table.Release(*pool_);
  return out;
}

// ---- the engine's operations, one by one ----

std::unique_ptr<ReplaySequence> CacheReplayer::NewSequence(
    int64_t id, std::string salt, std::span<const int32_t> tokens, int64_t num_prompt,
    std::span<const int64_t> message_starts, std::optional<ScopeSpec> scope,
    std::vector<RetentionRange> retention) {
  auto seq = std::make_unique<ReplaySequence>();
  seq->ticket = CacheTicket(id, std::move(salt), num_prompt, std::move(retention));
  seq->tokens = tokens;
  seq->num_prompt = num_prompt;
  seq->message_starts = message_starts;
  seq->scope = std::move(scope);
  return seq;
}

bool CacheReplayer::StartReads(ReplaySequence& seq, int64_t known) {
  PREFIXD_CHECK(!seq.running && known > 0 && known <= static_cast<int64_t>(seq.tokens.size()),
                "CacheReplayer::StartReads: a running sequence, or known tokens out of range");
  // The disk as a superset of the server's (see Admit): the limit at the admission takes
  // from the reads what the server's got.
  cache_->FlushDiskWrites();
  if (cache_->Admit(seq.ticket, seq.tokens.first(known)) == Admission::kPending) return true;
  seq.table.Adopt(seq.ticket.hit().blocks);
  fprintf(stderr, "DEBUG startreads ready: hit %ld host %ld disk %ld partial %ld\n", (long)seq.ticket.hit().num_tokens, (long)seq.ticket.hit().tier.host_tokens, (long)seq.ticket.hit().tier.disk_tokens, (long)seq.ticket.hit().tier.partial_tokens);
  cache_->Release(seq.ticket);
  seq.table.Release(*pool_);
  return false;
}

const CacheHit& CacheReplayer::Admit(ReplaySequence& seq, int64_t known, int64_t disk_blocks) {
  PREFIXD_CHECK(!seq.running && known > 0 && known <= static_cast<int64_t>(seq.tokens.size()),
                "CacheReplayer::Admit: a running sequence, or known tokens out of range");
  // Every write the server could have made by now has landed here: the disk is a superset of
  // the server's, and the limit takes from it exactly what the server's gave.
  cache_->FlushDiskWrites();
  // Every read ahead started so far has landed: a superset of what had on the server, whose
  // extra copies are another request's (an admission takes its own first) and beyond the
  // disk limit.
  cache_->WaitForAllReads();
  cache_->LimitDiskOnboard(disk_blocks);
  // Pending only while the reads ahead that StartReads began are still running (the limit
  // lets an admission without them read nothing): the server's admission was kReady here, so
  // a shared prefill cannot hold it back unless the replay already differs. Bounded in time,
  // so that such a replay ends (with an empty hit, which the caller reports) rather than waits
  // forever. WaitForReads also returns when another sequence's reads are done: not a spin
  // for long, since reads from the scratch folder take microseconds.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool ready = false;
  while (!ready && std::chrono::steady_clock::now() < deadline) {
    ready = cache_->Admit(seq.ticket, seq.tokens.first(known)) == Admission::kReady;
    if (!ready) cache_->WaitForReads(100);
  }
  cache_->LimitDiskOnboard(-1);
  seq.running = true;
  if (!ready) {
    static const CacheHit kNone;
    cache_->Release(seq.ticket);
    seq.computed = 0;
    return kNone;
  }
  const CacheHit& hit = seq.ticket.hit();
  seq.table.Adopt(hit.blocks);
  seq.computed = hit.num_tokens;
  return hit;
}

bool CacheReplayer::Write(ReplaySequence& seq, int64_t len,
                          std::span<ReplaySequence* const> victims) {
  const int bs = config_.block_size;
  size_t used = 0;
  // Engine::ReserveWrite's loop, with the engine's choice of victims.
  while (!seq.table.PrepareWrite(*pool_, bs, seq.computed, seq.computed + len)) {
    const int needed = static_cast<int>((len + bs - 1) / bs) + 1;
    if (cache_->Evict(needed) > 0) continue;
    if (used == victims.size() || !victims[used]->running) return false;
    Preempt(*victims[used++]);
  }
  seq.computed += len;
  return used == victims.size();
}

void CacheReplayer::PromptComputed(ReplaySequence& seq) {
  cache_->OnPromptComputed(seq.ticket, seq.tokens.first(seq.num_prompt), seq.table.blocks(),
                           seq.message_starts, seq.scope);
}

void CacheReplayer::Preempt(ReplaySequence& seq) {
  if (seq.computed > 0) {
    cache_->Insert(seq.ticket, seq.tokens.first(seq.computed), seq.table.blocks());
  }
  cache_->Release(seq.ticket);
  seq.table.Release(*pool_);
  seq.computed = 0;
  seq.running = false;
}

void CacheReplayer::Finish(ReplaySequence& seq) { Preempt(seq); }

}  // namespace prefixd
