#include "app/engine_flags.h"

#include <CLI/CLI.hpp>

#include "app/common.h"

namespace prefixd {

void AddEngineFlags(CLI::App* cmd, EngineFlags* f) {
  cmd->add_option("-t,--threads", f->threads, "Threads (0: all cores)")
      ->envname("PREFIXD_THREADS")->capture_default_str();
  cmd->add_option("-c,--ctx", f->ctx, "Context length (0: the model's)")
      ->envname("PREFIXD_CTX")->capture_default_str();
  cmd->add_option("--block-size", f->block_size, "KV block size in tokens")
      ->envname("PREFIXD_BLOCK_SIZE")->capture_default_str();
  cmd->add_option("--kv-type", f->kv_type, "KV cache type: f16 or f32")
      ->envname("PREFIXD_KV_TYPE")->capture_default_str();
  cmd->add_option("--prefix-cache", f->prefix_cache, "Prefix cache: on or off")
      ->envname("PREFIXD_PREFIX_CACHE")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  cmd->add_option("--cache-bytes", f->cache_bytes, "KV bytes the prefix cache may keep in the pool")
      ->envname("PREFIXD_CACHE_BYTES")->capture_default_str();
  cmd->add_option("--cache-hash", f->cache_hash,
                  "Block key hash: xxh3, or sha256 where engineered collisions are a concern")
      ->envname("PREFIXD_CACHE_HASH")->check(CLI::IsMember({"xxh3", "sha256"}))->capture_default_str();
  cmd->add_option("--max-running", f->max_running, "Sequences batched at once")
      ->envname("PREFIXD_MAX_RUNNING")->capture_default_str();
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens, "Tokens per engine step")
      ->envname("PREFIXD_MAX_BATCH_TOKENS")->capture_default_str();
}

StatusOr<EngineOptions> ToEngineOptions(const EngineFlags& f) {
  EngineOptions eo;
  eo.num_threads = f.threads;
  eo.context_length = f.ctx;
  eo.block_size = f.block_size;
  ASSIGN_OR_RETURN(eo.kv_dtype, ParseKvDtype(f.kv_type));
  eo.prefix_cache = f.prefix_cache == "on";
  eo.cache_bytes = f.cache_bytes;
  eo.cache_hash = f.cache_hash == "sha256" ? BlockHashKind::kSha256 : BlockHashKind::kXxh3;
  eo.max_running = f.max_running;
  eo.max_batch_tokens = f.max_batch_tokens;
  eo.max_chunk_tokens = f.max_batch_tokens;
  return eo;
}

}  // namespace prefixd
