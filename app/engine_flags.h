// Flags that configure the engine and its prefix cache, shared by `generate`, `serve` and
// `bench-model`. Each has an environment variable (PREFIXD_...) that the flag overrides.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/engine.h"

namespace CLI {
class App;
}

namespace prefixd {

struct EngineFlags {
  std::string weights = "auto";  // see ChooseWeightResidence (app/common.h)
  std::string backend = "cpu";
  int cuda_device = 0;
  int threads = 0;
  int ctx = 0;
  int block_size = 16;
  std::string kv_type = "f16";
  std::string quant_dot = "int8";
  std::string prefix_cache = "on";
  int64_t cache_bytes = int64_t{256} << 20;
  std::string cache_hash = "xxh3";
  std::string state_checkpoint_blocks = "auto";  // hybrids: recurrent-state snapshot every k blocks
  int max_running = 16;
  int max_batch_tokens = 512;
  // Lower tiers (ARCHITECTURE.md, "The cache, tier by tier").
  int64_t host_cache_bytes = int64_t{1} << 30;
  std::string disk_cache_dir;
  int64_t disk_cache_bytes = int64_t{10} << 30;
  std::string disk_prefix_cache = "auto:30";
  int64_t kv_cache_min_tokens = 0;
  int mru_partial_max_entries = 4;
  double retention_max_share = 0.5;
  // Shared remote tier (L4) on Redis; empty URL: none.
  std::string remote_cache;
  std::string remote_cache_namespace = "prefixd";
  int64_t remote_cache_ttl = 86400;
  int remote_cache_timeout_ms = 500;
};

void AddEngineFlags(CLI::App* cmd, EngineFlags* flags);

// --quant-dot int8|f32 (PREFIXD_QUANT_DOT), for commands that take only some engine flags
// (bench-model); AddEngineFlags adds it too. The value is checked by CLI11.
void AddQuantDotFlag(CLI::App* cmd, std::string* quant_dot);
QuantDot ParseQuantDot(const std::string& quant_dot);

// Validates the flags and turns them into engine options.
StatusOr<EngineOptions> ToEngineOptions(const EngineFlags& flags);

}  // namespace prefixd
