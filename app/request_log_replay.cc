#include "app/request_log_replay.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace prefixd {

namespace {

// The replay's disk keeps everything written: each admission then takes from it as many disk
// blocks as the server's did (CacheReplayer::Admit), which needs a superset of the server's
// disk at every admission. 2^40 blocks of a few hundred bytes: no budget in practice.
constexpr int64_t kUnboundedDiskBlocks = int64_t{1} << 40;

class OpReplayer {
 public:
  OpReplayer(const RequestLogFile& log, std::unique_ptr<CacheReplayer> replayer)
      : log_(log), replayer_(std::move(replayer)), seqs_(log.requests.size()),
        first_(log.requests.size()), admitted_(log.requests.size(), false) {}

  Status Apply(const LoggedOp& op) {
    ++out_.operations;
    switch (op.kind) {
      case LoggedOp::Kind::kTime:
        replayer_->SetTime(op.value);
        return absl::OkStatus();
      case LoggedOp::Kind::kReads:
        return StartReads(op);
      case LoggedOp::Kind::kAdmit:
        return Admit(op);
      case LoggedOp::Kind::kWrite:
        return Write(op);
      case LoggedOp::Kind::kPrompt: {
        ASSIGN_OR_RETURN(ReplaySequence* s, Running(op));
        if (s == nullptr) return absl::OkStatus();
        if (s->computed < s->num_prompt) {
          return Broken(op, absl::StrCat("completes its prompt of ", s->num_prompt,
                                         " tokens with ", s->computed, " computed"));
        }
        replayer_->PromptComputed(*s);
        return absl::OkStatus();
      }
      case LoggedOp::Kind::kFinish:
        return Finish(op);
      case LoggedOp::Kind::kEnable:
        replayer_->SetEnabled(op.value != 0);
        return absl::OkStatus();
      case LoggedOp::Kind::kClear:
        return replayer_->ClearTier(op.tier);
    }
    return absl::OkStatus();
  }

  OpReplay Take() {
    out_.result.evicted_blocks = replayer_->cache_stats().evicted_blocks;
    out_.result.offloaded_blocks = replayer_->tier_stats().offloaded_blocks;
    return std::move(out_);
  }

 private:
  // The operation's sequence (made at its first operation), waiting to be admitted with
  // op.value known tokens; nullptr when the operation is skipped (Broken).
  StatusOr<ReplaySequence*> Waiting(const LoggedOp& op) {
    const LoggedRequest& r = log_.requests[op.request];
    std::unique_ptr<ReplaySequence>& s = seqs_[op.request];
    if (!s) {
      s = replayer_->NewSequence(r.seq, r.salt, r.tokens, r.num_prompt, r.message_starts,
                                 r.scope, r.retention);
    }
    if (s->running) {
      RETURN_IF_ERROR(Broken(op, "is admitted while it runs"));
      return nullptr;
    }
    if (op.value < 1 || op.value > static_cast<int64_t>(r.tokens.size())) {
      RETURN_IF_ERROR(Broken(op, absl::StrCat("is admitted with ", op.value,
                                              " known tokens, and the log has ", r.tokens.size(),
                                              " of its tokens (is its finish line missing? the "
                                              "log may have been cut short)")));
      return nullptr;
    }
    return s.get();
  }

  Status StartReads(const LoggedOp& op) {
    ASSIGN_OR_RETURN(ReplaySequence* s, Waiting(op));
    if (s != nullptr && !replayer_->StartReads(*s, op.value)) {
      Diverge(op, absl::StrCat("sequence ", log_.requests[op.request].seq,
                               " found nothing to read ahead; the server's waited for the disk"));
    }
    return absl::OkStatus();
  }

  Status Admit(const LoggedOp& op) {
    const LoggedRequest& r = log_.requests[op.request];
    ASSIGN_OR_RETURN(ReplaySequence* s, Waiting(op));
    if (s == nullptr) return absl::OkStatus();
    const CacheHit& hit = replayer_->Admit(*s, op.value, op.disk_blocks);
    if (hit.num_tokens != op.hit) {
      Diverge(op, absl::StrCat("sequence ", r.seq, " was admitted with ", hit.num_tokens,
                               " cached tokens (host ", hit.tier.host_tokens, ", disk ",
                               hit.tier.disk_tokens, " in ", hit.tier.disk_blocks,
                               " blocks, partial ", hit.tier.partial_tokens, "), the server's ",
                               op.hit, " (", op.disk_blocks, " disk blocks)"));
    }
    if (!admitted_[op.request]) {
      // What usage reports is the first admission's (Engine::Admit).
      admitted_[op.request] = true;
      first_[op.request].cached_tokens = std::min(hit.num_tokens, r.num_prompt);
      first_[op.request].tier = hit.tier;
      first_[op.request].tier.load_ms = 0;
    }
    return absl::OkStatus();
  }

  Status Write(const LoggedOp& op) {
    ASSIGN_OR_RETURN(ReplaySequence* s, Running(op));
    if (s == nullptr) return absl::OkStatus();
    std::vector<ReplaySequence*> victims;
    for (size_t v : op.preempted) {
      if (!seqs_[v] || !seqs_[v]->running) return Broken(op, "preempts a sequence that is not running");
      victims.push_back(seqs_[v].get());
    }
    if (static_cast<int64_t>(s->tokens.size()) < s->computed + op.value) {
      return Broken(op, "writes past the tokens the log has for it (the log may have been cut short)");
    }
    const bool ok = replayer_->Write(*s, op.value, victims);
    if (ok != op.ok) {
      Diverge(op, absl::StrCat("sequence ", log_.requests[op.request].seq, "'s write of ", op.value,
                               " tokens ", ok ? "found room" : "found no room (or other victims)",
                               "; the server's ", op.ok ? "did" : "did not"));
    }
    return absl::OkStatus();
  }

  Status Finish(const LoggedOp& op) {
    const LoggedRequest& r = log_.requests[op.request];
    ReplaySequence* s = seqs_[op.request].get();
    if (s == nullptr) {
      RETURN_IF_ERROR(Broken(op, "finishes without an admission"));
    } else {
      if (s->running && s->computed != r.num_computed) {
        Diverge(op, absl::StrCat("sequence ", r.seq, " finished with ", s->computed,
                                 " computed tokens, the server's ", r.num_computed));
      }
      replayer_->Finish(*s);
      seqs_[op.request].reset();
    }
    // One outcome per finish line, even a skipped one: by_request pairs with finish_order.
    out_.result.Add(first_[op.request], r.num_prompt);
    return absl::OkStatus();
  }

  // The operation's sequence, running; nullptr when the operation is skipped (Broken).
  StatusOr<ReplaySequence*> Running(const LoggedOp& op) {
    ReplaySequence* s = seqs_[op.request].get();
    if (s == nullptr || !s->running) {
      RETURN_IF_ERROR(Broken(op, "is not running"));
      return nullptr;
    }
    return s;
  }

  // An operation that does not apply to the replay's state. After a divergence that is its
  // consequence (say, a hit longer than the server's leaves fewer tokens to write): the
  // operation is skipped and counted. Before any, the log itself is wrong.
  Status Broken(const LoggedOp& op, const std::string& what) {
    const std::string message =
        absl::StrCat("sequence ", log_.requests[op.request].seq, " ", what);
    if (out_.divergences > 0) {
      Diverge(op, message);
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "request log line ", op.line, ": ", message,
        "; the log is inconsistent, so it cannot be replayed operation by operation"));
  }

  void Diverge(const LoggedOp& op, const std::string& what) {
    if (out_.divergences++ == 0) out_.first_divergence = absl::StrCat("line ", op.line, ": ", what);
  }

  const RequestLogFile& log_;
  std::unique_ptr<CacheReplayer> replayer_;
  std::vector<std::unique_ptr<ReplaySequence>> seqs_;  // by request index, while live
  std::vector<ReplayOutcome> first_;                   // each request's first admission
  std::vector<bool> admitted_;
  OpReplay out_;
};

}  // namespace

StatusOr<ReplayConfig> ReplayConfigOf(const RequestLogHeader& h) {
  ReplayConfig c;
  c.enabled = h.prefix_cache;
  c.block_size = h.block_size;
  c.num_kv_blocks = h.num_kv_blocks;
  c.max_cached_blocks = h.max_cached_blocks;
  c.max_chunk_tokens = h.max_chunk_tokens;
  c.max_batch_tokens = h.max_batch_tokens;
  c.host_blocks = TierBlocks(h.host_bytes, h.block_size, h.block_bytes);
  c.disk_blocks = TierBlocks(h.disk_bytes, h.block_size, h.block_bytes);
  ASSIGN_OR_RETURN(c.scope, ParseScopeSpec(h.disk_scope));
  c.min_tokens = h.min_tokens;
  c.partial_max_entries = h.partial_max_entries;
  c.partial_supported = h.partial_supported;
  c.retention_max_share = h.retention_max_share;
  return c;
}

StatusOr<OpReplay> ReplayLogOperations(const RequestLogFile& log, ReplayConfig config) {
  if (config.disk_blocks > 0) config.disk_blocks = kUnboundedDiskBlocks;
  ASSIGN_OR_RETURN(std::unique_ptr<CacheReplayer> replayer, CacheReplayer::Create(config));
  OpReplayer r(log, std::move(replayer));
  for (const LoggedOp& op : log.ops) RETURN_IF_ERROR(r.Apply(op));
  OpReplay out = r.Take();
  out.result.pool_blocks = config.max_cached_blocks;
  out.result.num_kv_blocks = config.num_kv_blocks;
  return out;
}

}  // namespace prefixd
