// `prefixd replay`: the prefix cache's hit rate per tier on a workload at given budgets, with
// no model run (src/cache/cache_replayer.h): the real tree, block tables, eviction, host RAM
// and disk stores, scope policy and partial tails, fed the token ids of a Mooncake-format
// trace or the token hashes of a request log that `prefixd serve --request-log` wrote.
//
//   prefixd replay (--trace FILE.jsonl | --request-log FILE.jsonl)
//                  [--pool-tokens 0,65536,... | --cache-bytes B,...] [--kv-blocks N]
//                  [--host-cache-bytes B | --host-blocks N] [--disk-cache-bytes B | --disk-blocks N]
//                  [--disk-prefix-cache off|full|auto[:N]|N] [--mru-partial-max-entries N]
//                  [--kv-cache-min-tokens N] [--max-batch-tokens N] [--block-size N]
//                  [-m MODEL | --block-bytes N] [--no-output] [--json]
//
// Each pool budget is one replay from an empty cache. A trace's budgets default to unbounded
// (the pool holds the whole trace: the cached share is the trace's ideal reuse as the tree
// sees it), with no host or disk tier. A request log's defaults are the server's own, from its
// header; any flag overrides them. Byte budgets need a KV block's size: the log's, a model's
// shape (-m, header only) or --block-bytes.
//
// A version 2 log at the server's own budgets is replayed operation by operation, as the
// engine ran it (app/request_log_replay.h: "mode": "operations"), and equals what the server
// reported request by request. At other budgets the server would have interleaved its
// requests differently, so the log's requests are replayed one at a time in the order they
// finished ("mode": "requests"), as for a version 1 log.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/replay_input.h"
#include "app/request_log_replay.h"
#include "kv/kv_layout.h"
#include "model/llama_model.h"

namespace prefixd {

namespace {

struct ReplayFlags {
  std::string trace;
  std::string request_log;
  std::vector<int64_t> pool_tokens;
  std::vector<int64_t> cache_bytes;
  int64_t kv_blocks = 0;  // 0: the log's pool (plus the budget's change), or budget + a request
  std::string model;
  int64_t block_bytes = 0;
  int block_size = 0;  // 0: the log's, or 16
  // -1: not given (the log's, or none).
  int64_t host_cache_bytes = -1, host_blocks = -1, disk_cache_bytes = -1, disk_blocks = -1;
  int64_t min_tokens = -1;
  int partial_max_entries = -1;
  int max_batch_tokens = 0;
  std::string disk_prefix_cache;  // empty: the log's, or auto:30
  bool no_output = false;
  bool json = false;
};

StatusOr<int64_t> BlockBytes(const ReplayFlags& f, int block_size, int64_t logged) {
  if (f.block_bytes > 0) return f.block_bytes;
  if (f.model.empty()) {
    if (logged > 0) return logged;
    return absl::InvalidArgumentError(
        "byte budgets (--cache-bytes, --host-cache-bytes, --disk-cache-bytes) need a KV block's "
        "size: give -m MODEL or --block-bytes N, or replay a request log (it has the server's)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(f.model));
  const Hparams& hp = model->hparams();
  return KvLayout{hp.num_layers, hp.kv_dim(), block_size, KvDtype::kF16}.BlockBytes();
}

bool NeedsBlockBytes(const ReplayFlags& f) {
  return !f.cache_bytes.empty() || f.host_cache_bytes >= 0 || f.disk_cache_bytes >= 0;
}

// The config a request log's header describes (the server's own), or the trace defaults.
StatusOr<ReplayConfig> BaseConfig(const std::optional<RequestLogHeader>& h) {
  if (!h) return ReplayConfig{};
  return ReplayConfigOf(*h);
}

// Applies the flags over `c`; `budgets` gets the tree budgets to replay (in blocks; 0:
// unbounded), or the config's own.
Status ApplyFlags(const ReplayFlags& f, int64_t logged_block_bytes, ReplayConfig& c,
                  std::vector<int64_t>& budgets) {
  if (f.block_size > 0) c.block_size = f.block_size;
  int64_t bytes = 0;
  if (NeedsBlockBytes(f)) {
    ASSIGN_OR_RETURN(bytes, BlockBytes(f, c.block_size, logged_block_bytes));
  }
  if (f.host_blocks >= 0) c.host_blocks = f.host_blocks;
  if (f.host_cache_bytes >= 0) c.host_blocks = TierBlocks(f.host_cache_bytes, c.block_size, bytes);
  if (f.disk_blocks >= 0) c.disk_blocks = f.disk_blocks;
  if (f.disk_cache_bytes >= 0) c.disk_blocks = TierBlocks(f.disk_cache_bytes, c.block_size, bytes);
  if (!f.disk_prefix_cache.empty()) {
    ASSIGN_OR_RETURN(c.scope, ParseScopeSpec(f.disk_prefix_cache));
  }
  if (f.min_tokens >= 0) c.min_tokens = f.min_tokens;
  if (f.partial_max_entries >= 0) c.partial_max_entries = f.partial_max_entries;
  if (f.max_batch_tokens > 0) c.max_chunk_tokens = c.max_batch_tokens = f.max_batch_tokens;
  for (int64_t t : f.pool_tokens) budgets.push_back((t + c.block_size - 1) / c.block_size);
  for (int64_t b : f.cache_bytes) budgets.push_back(std::max<int64_t>(b / bytes, 1));
  if (budgets.empty()) budgets.push_back(c.max_cached_blocks);
  return absl::OkStatus();
}

// The replay runs the server's own configuration (the operation-by-operation replay of a
// version 2 log applies).
bool SameAsServer(const ReplayConfig& a, const ReplayConfig& b) {
  return a.enabled == b.enabled && a.block_size == b.block_size &&
         a.num_kv_blocks == b.num_kv_blocks && a.max_cached_blocks == b.max_cached_blocks &&
         a.max_chunk_tokens == b.max_chunk_tokens && a.max_batch_tokens == b.max_batch_tokens &&
         a.host_blocks == b.host_blocks && a.disk_blocks == b.disk_blocks &&
         a.scope.ToString() == b.scope.ToString() && a.min_tokens == b.min_tokens &&
         a.partial_max_entries == b.partial_max_entries &&
         a.partial_supported == b.partial_supported &&
         a.retention_max_share == b.retention_max_share;
}

// Replays a request log's requests one at a time, in the order they finished, through
// `config` (max_cached_blocks 0: unbounded).
StatusOr<ReplayResult> ReplayLog(const RequestLogFile& log, ReplayConfig config) {
  const int bs = config.block_size;
  int64_t all = 0, longest = 0;
  for (size_t i : log.finish_order) {
    const LoggedRequest& r = log.requests[i];
    const int64_t blocks = (r.num_computed + bs - 1) / bs + 1;
    all += blocks;
    longest = std::max(longest, blocks);
  }
  if (config.max_cached_blocks <= 0) {
    config.max_cached_blocks = std::max<int64_t>(all, 1);
    config.num_kv_blocks = config.max_cached_blocks + longest;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CacheReplayer> replayer, CacheReplayer::Create(config));
  ReplayResult result;
  result.pool_blocks = config.max_cached_blocks;
  result.num_kv_blocks = config.num_kv_blocks;
  for (size_t i : log.finish_order) {
    const LoggedRequest& r = log.requests[i];
    ReplayedRequest q;
    q.salt = r.salt;
    q.tokens = std::span<const int32_t>(r.tokens).first(std::max(r.num_computed, r.num_prompt));
    q.num_prompt = r.num_prompt;
    q.message_starts = r.message_starts;
    q.scope = r.scope;
    result.Add(replayer->Run(q), r.num_prompt);
  }
  result.evicted_blocks = replayer->cache_stats().evicted_blocks;
  result.offloaded_blocks = replayer->tier_stats().offloaded_blocks;
  return result;
}

nlohmann::json TierJson(const ReplayResult& r, int64_t tokens, int64_t hit_requests) {
  return {{"cached_tokens", tokens},
          {"cached_fraction", r.fraction(tokens)},
          {"hit_requests", hit_requests},
          {"hit_rate", r.requests == 0 ? 0.0 : static_cast<double>(hit_requests) / r.requests}};
}

nlohmann::json ToJson(const ReplayResult& r, const ReplayConfig& c, const RequestLogFile* log) {
  int64_t pool_hits = 0;
  for (const ReplayOutcome& o : r.by_request) {
    pool_hits += o.cached_tokens > o.tier.host_tokens + o.tier.disk_tokens + o.tier.partial_tokens;
  }
  nlohmann::json j = {
      {"pool_blocks", r.pool_blocks}, {"pool_tokens", r.pool_blocks * c.block_size},
      {"num_kv_blocks", r.num_kv_blocks}, {"host_blocks", c.host_blocks},
      {"disk_blocks", c.disk_blocks}, {"disk_scope", c.scope.ToString()},
      {"partial_max_entries", c.partial_max_entries}, {"requests", r.requests},
      {"prompt_tokens", r.prompt_tokens}, {"cached_tokens", r.cached_tokens},
      {"cached_fraction", r.cached_fraction()}, {"hit_requests", r.hit_requests},
      {"hit_rate", r.requests == 0 ? 0.0 : static_cast<double>(r.hit_requests) / r.requests},
      {"by_tier",
       {{"pool", TierJson(r, r.pool_tokens(), pool_hits)},
        {"host", TierJson(r, r.host_tokens, r.host_hit_requests)},
        {"disk", TierJson(r, r.disk_tokens, r.disk_hit_requests)},
        {"partial", TierJson(r, r.partial_tokens, r.partial_hit_requests)}}},
      {"evicted_blocks", r.evicted_blocks}, {"offloaded_blocks", r.offloaded_blocks},
      {"unservable_requests", r.unservable}};
  if (log == nullptr) {
    j["ideal_tokens"] = r.ideal_tokens;
    j["ideal_fraction"] = r.ideal_fraction();
    return j;
  }
  // Request by request, beside what the server reported.
  nlohmann::json by_request = nlohmann::json::array();
  int64_t matches = 0, tier_matches = 0;
  for (size_t i = 0; i < r.by_request.size(); ++i) {
    const ReplayOutcome& o = r.by_request[i];
    const LoggedRequest& l = log->requests[log->finish_order[i]];
    matches += o.cached_tokens == l.cached_tokens;
    const bool same_tiers = o.tier.host_tokens == l.host_tokens &&
                            o.tier.disk_tokens == l.disk_tokens &&
                            o.tier.partial_tokens == l.partial_tokens;
    tier_matches += o.cached_tokens == l.cached_tokens && same_tiers;
    nlohmann::json one = {{"cached_tokens", o.cached_tokens},
                          {"host", o.tier.host_tokens},
                          {"disk", o.tier.disk_tokens},
                          {"partial", o.tier.partial_tokens},
                          {"server_cached_tokens", l.cached_tokens},
                          {"server_host", l.host_tokens},
                          {"server_disk", l.disk_tokens},
                          {"server_partial", l.partial_tokens},
                          {"prompt_tokens", l.num_prompt}};
    if (l.seq >= 0) one["seq"] = l.seq;
    by_request.push_back(std::move(one));
  }
  j["by_request"] = std::move(by_request);
  j["requests_matching_server"] = matches;
  j["requests_matching_server_by_tier"] = tier_matches;
  return j;
}

void PrintRow(const ReplayResult& r, const ReplayConfig& c, bool trace) {
  char ideal[32] = "-";
  if (trace) std::snprintf(ideal, sizeof(ideal), "%.4f", r.ideal_fraction());
  std::printf("| %lld | %lld | %lld | %lld / %lld | %.4f | %.4f | %.4f | %.4f | %.4f | %s | %lld / %lld | %lld |\n",
              static_cast<long long>(r.pool_blocks), static_cast<long long>(c.host_blocks),
              static_cast<long long>(c.disk_blocks), static_cast<long long>(r.cached_tokens),
              static_cast<long long>(r.prompt_tokens), r.cached_fraction(),
              r.fraction(r.pool_tokens()), r.fraction(r.host_tokens), r.fraction(r.disk_tokens),
              r.fraction(r.partial_tokens),
              ideal,
              static_cast<long long>(r.hit_requests), static_cast<long long>(r.requests),
              static_cast<long long>(r.evicted_blocks));
}

int ReplayFail(const Status& s) {
  std::fprintf(stderr, "prefixd replay: %s\n", std::string(s.message()).c_str());
  return 1;
}

int RunReplay(const ReplayFlags& f) {
  if (f.trace.empty() == f.request_log.empty()) {
    return ReplayFail(absl::InvalidArgumentError("give one of --trace FILE or --request-log FILE"));
  }
  std::vector<TraceRequest> trace;
  std::optional<RequestLogFile> log;
  if (!f.trace.empty()) {
    auto t = ReadTrace(f.trace);
    if (!t.ok()) return ReplayFail(t.status());
    trace = std::move(*t);
  } else {
    auto l = ReadRequestLog(f.request_log);
    if (!l.ok()) return ReplayFail(l.status());
    log = std::move(*l);
  }
  auto base = BaseConfig(log ? std::optional<RequestLogHeader>(log->header)
                             : std::optional<RequestLogHeader>());
  if (!base.ok()) return ReplayFail(base.status());
  ReplayConfig config = *base;
  std::vector<int64_t> budgets;
  if (Status s = ApplyFlags(f, log ? log->header.block_bytes : 0, config, budgets); !s.ok()) return ReplayFail(s);
  nlohmann::json runs = nlohmann::json::array();
  const size_t n = log ? log->finish_order.size() : trace.size();
  if (log && log->header.disk_start_blocks > 0) {
    std::fprintf(stderr, "prefixd replay: the server's disk tier held %lld blocks when the log "
                 "opened, which the replay does not have: its disk hits may be fewer than the "
                 "server's (start the server with an empty --disk-cache-dir to compare exactly)\n",
                 static_cast<long long>(log->header.disk_start_blocks));
  }
  if (!f.json) {
    std::printf("%zu requests from %s, block size %d\n\n", n, log ? f.request_log.c_str() : f.trace.c_str(),
                config.block_size);
    std::printf("| pool blocks | host blocks | disk blocks | cached / prompt tokens | cached share | pool | host | disk | partial | ideal share | requests hit | evicted blocks |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  }
  for (int64_t blocks : budgets) {
    ReplayConfig c = config;
    if (log && blocks != c.max_cached_blocks && blocks > 0 && f.kv_blocks == 0) {
      // The server's pool is room for its running requests plus the budget (Engine::Create).
      c.num_kv_blocks = std::max<int64_t>(c.num_kv_blocks - c.max_cached_blocks, 1) + blocks;
    }
    c.max_cached_blocks = blocks;
    if (f.kv_blocks > 0) c.num_kv_blocks = f.kv_blocks;
    const bool by_operation = log && log->version == 2 && SameAsServer(c, *base);
    std::optional<OpReplay> ops;
    StatusOr<ReplayResult> r = [&]() -> StatusOr<ReplayResult> {
      if (by_operation) {
        ASSIGN_OR_RETURN(ops, ReplayLogOperations(*log, c));
        return ops->result;
      }
      if (log) return ReplayLog(*log, c);
      ReplayOptions o;
      o.cache = c;
      o.with_output = !f.no_output;
      return ReplayTrace(trace, o);
    }();
    if (!r.ok()) return ReplayFail(r.status());
    nlohmann::json run = ToJson(*r, c, log ? &*log : nullptr);
    if (log) run["mode"] = by_operation ? "operations" : "requests";
    if (ops) {
      run["operations"] = ops->operations;
      run["diverged_operations"] = ops->divergences;
      if (ops->divergences > 0) run["first_divergence"] = ops->first_divergence;
    }
    runs.push_back(std::move(run));
    if (!f.json) PrintRow(*r, c, !log);
  }
  if (f.json) {
    nlohmann::json out = runs[0];
    out[log ? "request_log" : "trace"] = log ? f.request_log : f.trace;
    out["block_size"] = config.block_size;
    out["runs"] = runs;
    std::cout << out.dump() << "\n";
  } else if (log) {
    std::printf("\nthe first budget (replayed by %s) matches the server's cached tokens on %lld of "
                "%zu requests, and its figures per tier on %lld\n",
                runs[0]["mode"].get<std::string>() == "operations" ? "operation" : "request",
                static_cast<long long>(runs[0]["requests_matching_server"].get<int64_t>()), n,
                static_cast<long long>(runs[0]["requests_matching_server_by_tier"].get<int64_t>()));
    if (runs[0].contains("first_divergence")) {
      std::printf("first divergence from the server: %s\n",
                  runs[0]["first_divergence"].get<std::string>().c_str());
    }
  }
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<ReplayFlags>();
  CLI::App* cmd = app.add_subcommand(
      "replay", "Replay a trace or a request log through the prefix cache and its tiers, no model run: hit rate per tier and budget");
  cmd->add_option("--trace", f->trace, "Mooncake-format trace (JSON lines: input_length, output_length, hash_ids of 512-token blocks)");
  cmd->add_option("--request-log", f->request_log, "A request log written by serve --request-log (its budgets are the default)");
  cmd->add_option("--pool-tokens", f->pool_tokens, "Pool cache budgets in tokens, one replay each (0: unbounded)")
      ->delimiter(',');
  cmd->add_option("--cache-bytes", f->cache_bytes, "Pool cache budgets in KV bytes, one replay each")
      ->delimiter(',');
  cmd->add_option("--kv-blocks", f->kv_blocks, "Pool size in blocks (default: the budget plus room for the running requests)");
  cmd->add_option("--host-cache-bytes", f->host_cache_bytes, "Host RAM tier budget in bytes (0: none)");
  cmd->add_option("--host-blocks", f->host_blocks, "Host RAM tier budget in blocks (0: none)");
  cmd->add_option("--disk-cache-bytes", f->disk_cache_bytes, "Disk tier budget in bytes (0: none)");
  cmd->add_option("--disk-blocks", f->disk_blocks, "Disk tier budget in blocks (0: none)");
  cmd->add_option("--disk-prefix-cache", f->disk_prefix_cache, "What the disk tier keeps: off, full, auto[:N] or N tokens");
  cmd->add_option("--kv-cache-min-tokens", f->min_tokens, "Prompts shorter than this are not written to disk");
  cmd->add_option("--mru-partial-max-entries", f->partial_max_entries, "Partial tails kept (0: none; default 4)");
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens, "Tokens per engine step (prefill chunk)");
  cmd->add_option("-m,--model", f->model, "A GGUF model whose shape sizes a KV block (F16 K/V)");
  cmd->add_option("--block-bytes", f->block_bytes, "Bytes of one KV block (instead of -m)");
  cmd->add_option("--block-size", f->block_size, "KV block size in tokens (default: the log's, or 16)")
      ->check(CLI::Range(0, 4096));
  cmd->add_flag("--no-output", f->no_output, "Generated tokens of a trace take no pool space");
  cmd->add_flag("--json", f->json, "One JSON object: the first budget's figures, and every budget's under \"runs\"");
  cmd->callback([f, run] { *run = [f] { return RunReplay(*f); }; });
}

}  // namespace prefixd
