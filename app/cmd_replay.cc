// `prefixd replay`: the prefix cache's hit rate on a request trace at one or more pool
// budgets, with no model run (src/cache/trace_replay.h): the real tree, block tables and
// eviction, fed the token ids a Mooncake-format trace describes.
//
//   prefixd replay --trace FILE.jsonl [--pool-tokens 0,65536,...] [--block-size 16]
//                  [--cache-bytes B,... (-m MODEL | --block-bytes N)] [--no-output] [--json]
//
// Each budget is one replay from an empty cache. Budget 0 (the default) is unbounded: the
// pool holds the whole trace, and the cached share is the trace's ideal reuse as the tree
// sees it. Byte budgets need a KV block's size: from a model's shape (-m, only its header and
// hyper-parameters are used; the weights stay mapped, unread) or --block-bytes.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "cache/trace_replay.h"
#include "kv/kv_layout.h"
#include "model/llama_model.h"

namespace prefixd {

namespace {

struct ReplayFlags {
  std::string trace;
  std::vector<int64_t> pool_tokens;
  std::vector<int64_t> cache_bytes;
  std::string model;
  int64_t block_bytes = 0;
  int block_size = 16;
  bool no_output = false;
  bool json = false;
};

// Mooncake JSON lines: timestamp, input_length, output_length, hash_ids.
StatusOr<std::vector<TraceRequest>> ReadTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open the trace " + path);
  std::vector<TraceRequest> out;
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = [&] { return path + ":" + std::to_string(line_number) + ": "; };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(where() + "not a JSON object");
    TraceRequest r;
    try {
      r.timestamp = j.value("timestamp", 0.0);
      r.input_length = j.at("input_length").get<int64_t>();
      r.output_length = j.value("output_length", int64_t{0});
      r.hash_ids = j.at("hash_ids").get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(where() + "needs input_length and hash_ids (" + e.what() + ")");
    }
    const int64_t need = (r.input_length + kTraceBlockTokens - 1) / kTraceBlockTokens;
    if (r.input_length < 0 || r.output_length < 0 || static_cast<int64_t>(r.hash_ids.size()) < need) {
      return absl::InvalidArgumentError(where() + "input_length " + std::to_string(r.input_length) +
                                        " needs " + std::to_string(need) + " hash_ids of " +
                                        std::to_string(kTraceBlockTokens) + " tokens, it has " +
                                        std::to_string(r.hash_ids.size()));
    }
    for (int64_t h : r.hash_ids) {
      if (h < 0 || h >= (int64_t{1} << 31) / kTraceBlockTokens - 1) {
        return absl::InvalidArgumentError(where() + "hash id " + std::to_string(h) + " is out of range");
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

StatusOr<int64_t> BlockBytes(const ReplayFlags& f) {
  if (f.block_bytes > 0) return f.block_bytes;
  if (f.model.empty()) {
    return absl::InvalidArgumentError("--cache-bytes needs a KV block's size: give -m MODEL or --block-bytes N");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(f.model));
  const Hparams& hp = model->hparams();
  return KvLayout{hp.num_layers, hp.kv_dim(), f.block_size, KvDtype::kF16}.BlockBytes();
}

nlohmann::json ToJson(const ReplayResult& r, int block_size) {
  return {{"pool_blocks", r.pool_blocks},
          {"pool_tokens", r.pool_blocks * block_size},
          {"requests", r.requests},
          {"prompt_tokens", r.prompt_tokens},
          {"cached_tokens", r.cached_tokens},
          {"cached_fraction", r.cached_fraction()},
          {"by_tier", {{"pool", r.cached_fraction()}}},
          {"ideal_tokens", r.ideal_tokens},
          {"ideal_fraction", r.ideal_fraction()},
          {"hit_requests", r.hit_requests},
          {"evicted_blocks", r.evicted_blocks},
          {"unservable_requests", r.unservable}};
}

int RunReplay(const ReplayFlags& f) {
  auto trace = ReadTrace(f.trace);
  if (!trace.ok()) {
    std::fprintf(stderr, "prefixd replay: %s\n", std::string(trace.status().message()).c_str());
    return 1;
  }
  std::vector<int64_t> budgets;  // in blocks; 0: unbounded
  for (int64_t t : f.pool_tokens) budgets.push_back((t + f.block_size - 1) / f.block_size);
  if (!f.cache_bytes.empty()) {
    auto bytes = BlockBytes(f);
    if (!bytes.ok()) {
      std::fprintf(stderr, "prefixd replay: %s\n", std::string(bytes.status().message()).c_str());
      return 1;
    }
    for (int64_t b : f.cache_bytes) budgets.push_back(b / *bytes);
  }
  if (budgets.empty()) budgets.push_back(0);
  nlohmann::json runs = nlohmann::json::array();
  if (!f.json) {
    std::printf("%zu requests from %s, block size %d\n\n", trace->size(), f.trace.c_str(), f.block_size);
    std::printf("| pool blocks | pool tokens | cached / prompt tokens | cached share | ideal share | requests hit | evicted blocks |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  }
  for (int64_t blocks : budgets) {
    ReplayOptions o;
    o.block_size = f.block_size;
    o.pool_blocks = blocks;
    o.with_output = !f.no_output;
    const ReplayResult r = ReplayTrace(*trace, o);
    runs.push_back(ToJson(r, f.block_size));
    if (!f.json) {
      std::printf("| %lld%s | %lld | %lld / %lld | %.4f | %.4f | %lld / %lld | %lld |\n",
                  static_cast<long long>(r.pool_blocks), blocks == 0 ? " (unbounded)" : "",
                  static_cast<long long>(r.pool_blocks * f.block_size),
                  static_cast<long long>(r.cached_tokens), static_cast<long long>(r.prompt_tokens),
                  r.cached_fraction(), r.ideal_fraction(), static_cast<long long>(r.hit_requests),
                  static_cast<long long>(r.requests), static_cast<long long>(r.evicted_blocks));
    }
  }
  if (f.json) {
    nlohmann::json out = runs[0];
    out["trace"] = f.trace;
    out["block_size"] = f.block_size;
    out["runs"] = runs;
    std::cout << out.dump() << "\n";
  }
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App& app, std::function<int()>* run) {
  auto flags = std::make_shared<ReplayFlags>();
  CLI::App* cmd = app.add_subcommand(
      "replay", "Replay a request trace through the prefix cache, no model run: hit rate per budget");
  cmd->add_option("--trace", flags->trace, "Mooncake-format trace (JSON lines: input_length, output_length, hash_ids of 512-token blocks)")
      ->required();
  cmd->add_option("--pool-tokens", flags->pool_tokens, "Pool budgets in tokens, one replay each (0: unbounded)")
      ->delimiter(',');
  cmd->add_option("--cache-bytes", flags->cache_bytes, "Pool budgets in KV bytes, one replay each (needs -m or --block-bytes)")
      ->delimiter(',');
  cmd->add_option("-m,--model", flags->model, "A GGUF model whose shape sizes a KV block (F16 K/V)");
  cmd->add_option("--block-bytes", flags->block_bytes, "Bytes of one KV block (instead of -m)");
  cmd->add_option("--block-size", flags->block_size, "KV block size in tokens")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_flag("--no-output", flags->no_output, "Generated tokens take no pool space");
  cmd->add_flag("--json", flags->json, "One JSON object: the first budget's figures, and every budget's under \"runs\"");
  cmd->callback([flags, run] { *run = [flags] { return RunReplay(*flags); }; });
}

}  // namespace prefixd
