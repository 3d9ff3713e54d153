#include "app/engine_flags.h"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "app/common.h"
#include "tier/redis_url.h"

namespace prefixd {

void AddQuantDotFlag(CLI::App* cmd, std::string* quant_dot) {
  cmd->add_option("--quant-dot", *quant_dot,
                  "Quantised weights (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K) on the CPU: int8 (activations quantised to 8 bits, "
                  "integer dot products) or f32 (weights dequantised, the F32 reference); the two "
                  "give different logits and never share KV blocks")
      ->envname("PREFIXD_QUANT_DOT")->check(CLI::IsMember({"int8", "f32"}))->capture_default_str();
}

QuantDot ParseQuantDot(const std::string& quant_dot) {
  return quant_dot == "f32" ? QuantDot::kF32 : QuantDot::kInt8;
}

void AddEngineFlags(CLI::App* cmd, EngineFlags* f) {
  cmd->add_option("--weights", f->weights, kWeightsFlagHelp)
      ->envname("PREFIXD_WEIGHTS")->capture_default_str();
  cmd->add_option("--backend", f->backend,
                  "Where the model runs: cpu, or cuda (needs a GPU and a build with nvcc)")
      ->envname("PREFIXD_BACKEND")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--cuda-device", f->cuda_device, "CUDA device ordinal (--backend cuda)")
      ->envname("PREFIXD_CUDA_DEVICE")->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Threads (0: all cores)")
      ->envname("PREFIXD_THREADS")->capture_default_str();
  cmd->add_option("-c,--ctx", f->ctx, "Context length (0: the model's)")
      ->envname("PREFIXD_CTX")->capture_default_str();
  cmd->add_option("--block-size", f->block_size, "KV block size in tokens")
      ->envname("PREFIXD_BLOCK_SIZE")->capture_default_str();
  cmd->add_option("--kv-type", f->kv_type, "KV cache type: f16 or f32")
      ->envname("PREFIXD_KV_TYPE")->capture_default_str();
  AddQuantDotFlag(cmd, &f->quant_dot);
  cmd->add_option("--prefix-cache", f->prefix_cache, "Prefix cache: on or off")
      ->envname("PREFIXD_PREFIX_CACHE")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  cmd->add_option("--cache-bytes", f->cache_bytes, "KV bytes the prefix cache may keep in the pool")
      ->envname("PREFIXD_CACHE_BYTES")->capture_default_str();
  cmd->add_option("--cache-hash", f->cache_hash,
                  "Block key hash: xxh3, or sha256 where engineered collisions are a concern")
      ->envname("PREFIXD_CACHE_HASH")->check(CLI::IsMember({"xxh3", "sha256"}))->capture_default_str();
  cmd->add_option("--state-checkpoint-blocks", f->state_checkpoint_blocks,
                  "Hybrid models (qwen35): snapshot the recurrent state every this many blocks, "
                  "where a cached prefix can resume; each snapshot counts against --cache-bytes "
                  "(auto: as many blocks as a snapshot's bytes fill in KV; 0: no snapshots, no "
                  "prefix reuse for such models)")
      ->envname("PREFIXD_STATE_CHECKPOINT_BLOCKS")->capture_default_str();
  cmd->add_option("--max-running", f->max_running, "Sequences batched at once")
      ->envname("PREFIXD_MAX_RUNNING")->capture_default_str();
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens, "Tokens per engine step")
      ->envname("PREFIXD_MAX_BATCH_TOKENS")->capture_default_str();
  cmd->add_option("--host-cache-bytes", f->host_cache_bytes,
                  "Host RAM for blocks evicted from the pool (0: no host tier)")
      ->envname("PREFIXD_HOST_CACHE_BYTES")->capture_default_str();
  cmd->add_option("--disk-cache-dir", f->disk_cache_dir,
                  "Folder of the disk cache that survives restarts (empty: no disk tier)")
      ->envname("PREFIXD_DISK_CACHE_DIR");
  cmd->add_option("--disk-cache-bytes", f->disk_cache_bytes, "Disk cache budget")
      ->envname("PREFIXD_DISK_CACHE_BYTES")->capture_default_str();
  cmd->add_option("--disk-prefix-cache", f->disk_prefix_cache,
                  "What the disk tier keeps of each prompt: off, full, auto, auto:N (the part shared "
                  "with the most similar of the last N prompts) or N (first N tokens)")
      ->envname("PREFIXD_DISK_PREFIX_CACHE")->capture_default_str();
  cmd->add_option("--kv-cache-min-tokens", f->kv_cache_min_tokens,
                  "Prompts shorter than this are not written to the lower tiers")
      ->envname("PREFIXD_KV_CACHE_MIN_TOKENS")->capture_default_str();
  cmd->add_option("--mru-partial-max-entries", f->mru_partial_max_entries,
                  "Partial block tails kept for resubmitted prompts (0: off)")
      ->envname("PREFIXD_MRU_PARTIAL_MAX_ENTRIES")->capture_default_str();
  cmd->add_option("--retention-max-share", f->retention_max_share,
                  "Share (0..1) of each tier's budget that retained blocks (cache_control, "
                  "prompt_cache_retention, prefix_cache.retention) may hold; beyond it the oldest "
                  "retention ends first")
      ->envname("PREFIXD_RETENTION_MAX_SHARE")->capture_default_str();
  cmd->add_option("--remote-cache", f->remote_cache,
                  "Shared remote tier: redis://[[user]:password@]host[:port][/db] (empty: none). "
                  "The password may instead come from PREFIXD_REMOTE_CACHE_PASSWORD")
      ->envname("PREFIXD_REMOTE_CACHE");
  cmd->add_option("--remote-cache-namespace", f->remote_cache_namespace,
                  "Key prefix in Redis, so several models or fleets share one Redis")
      ->envname("PREFIXD_REMOTE_CACHE_NAMESPACE")->capture_default_str();
  cmd->add_option("--remote-cache-ttl", f->remote_cache_ttl,
                  "Seconds a block lives in Redis after its last write (Redis evicts it then)")
      ->envname("PREFIXD_REMOTE_CACHE_TTL")->capture_default_str();
  cmd->add_option("--remote-cache-timeout-ms", f->remote_cache_timeout_ms,
                  "Connect and per-read/write timeout for Redis; slower means a miss")
      ->envname("PREFIXD_REMOTE_CACHE_TIMEOUT_MS")->capture_default_str();
}

namespace {

StatusOr<std::optional<RedisStoreOptions>> ToRemoteOptions(const EngineFlags& f) {
  if (f.remote_cache.empty()) return std::optional<RedisStoreOptions>();
  RedisStoreOptions r;
  ASSIGN_OR_RETURN(r.url, ParseRedisUrl(f.remote_cache));
  if (r.url.password.empty()) {
    // From the environment, so the password stays out of `ps` and shell history.
    if (const char* p = std::getenv("PREFIXD_REMOTE_CACHE_PASSWORD"); p != nullptr) r.url.password = p;
  }
  r.key_namespace = f.remote_cache_namespace;
  r.ttl_seconds = f.remote_cache_ttl;
  r.connect_timeout_ms = f.remote_cache_timeout_ms;
  r.io_timeout_ms = f.remote_cache_timeout_ms;
  return std::optional<RedisStoreOptions>(std::move(r));
}

}  // namespace

StatusOr<EngineOptions> ToEngineOptions(const EngineFlags& f) {
  EngineOptions eo;
  eo.backend = f.backend == "cuda" ? BackendKind::kCuda : BackendKind::kCpu;
  eo.cuda_device = f.cuda_device;
  eo.num_threads = f.threads;
  eo.context_length = f.ctx;
  eo.block_size = f.block_size;
  ASSIGN_OR_RETURN(eo.kv_dtype, ParseKvDtype(f.kv_type));
  eo.quant_dot = ParseQuantDot(f.quant_dot);
  eo.prefix_cache = f.prefix_cache == "on";
  eo.cache_bytes = f.cache_bytes;
  eo.cache_hash = f.cache_hash == "sha256" ? BlockHashKind::kSha256 : BlockHashKind::kXxh3;
  if (f.state_checkpoint_blocks == "auto") {
    eo.state_checkpoint_blocks = EngineOptions::kStateCheckpointAuto;
  } else if (!absl::SimpleAtoi(f.state_checkpoint_blocks, &eo.state_checkpoint_blocks) ||
             eo.state_checkpoint_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--state-checkpoint-blocks must be auto or a whole number >= 0 (0 turns snapshots "
        "off); got '", f.state_checkpoint_blocks, "'"));
  }
  eo.max_running = f.max_running;
  eo.max_batch_tokens = f.max_batch_tokens;
  eo.max_chunk_tokens = f.max_batch_tokens;
  eo.tiers.host_bytes = f.host_cache_bytes;
  eo.tiers.disk_dir = f.disk_cache_dir;
  eo.tiers.disk_bytes = f.disk_cache_bytes;
  ASSIGN_OR_RETURN(eo.tiers.scope, ParseScopeSpec(f.disk_prefix_cache));
  eo.tiers.min_tokens = f.kv_cache_min_tokens;
  // The start-up scan of a large disk cache takes a while; its log line follows the bar.
  eo.tiers.scan_progress = TerminalProgressBar("scanning disk cache", "block files");
  if (f.mru_partial_max_entries < 0) {
    return absl::InvalidArgumentError("--mru-partial-max-entries must be >= 0");
  }
  eo.tiers.partial_max_entries = f.mru_partial_max_entries;
  if (!(f.retention_max_share >= 0 && f.retention_max_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--retention-max-share must be between 0 and 1 (a share of each tier's budget); got ",
        f.retention_max_share));
  }
  eo.retention_max_share = f.retention_max_share;
  ASSIGN_OR_RETURN(eo.tiers.remote, ToRemoteOptions(f));
  return eo;
}

}  // namespace prefixd
