// Time to first token with the prefix cache off and on, side by side in one run: a shared
// prefix of --prefix-tokens followed by --suffix-tokens new tokens, as when many users share
// one system prompt. Also times the cache's own work (match + insert) for that prompt, to set
// it against the prefill it saves.
//
//   prefix_ttft_bench MODEL [--prefix-tokens 1500] [--suffix-tokens 50] [--reps 5] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace prefixd {
namespace {

using MonoClock = std::chrono::steady_clock;

double Ms(MonoClock::time_point a, MonoClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Runs `prompt` to its first token; returns milliseconds and the cached token count.
std::pair<double, int64_t> TimeToFirstToken(Engine& engine, const std::vector<int32_t>& prompt) {
  GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = 1;
  const auto t0 = MonoClock::now();
  auto id = engine.Add(r);
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", std::string(id.status().message()).c_str());
    std::exit(1);
  }
  while (engine.HasWork()) {
    if (!engine.Step().ok()) std::exit(1);
  }
  const auto t1 = MonoClock::now();
  return {Ms(t0, t1), engine.TakeFinished(*id)->cached_tokens};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--prefix-tokens N] [--suffix-tokens N] [--reps N] "
                 "[--threads N]\n", argv[0]);
    return 2;
  }
  int prefix_tokens = 1500, suffix_tokens = 50, reps = 5, threads = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--prefix-tokens") prefix_tokens = v;
    else if (flag == "--suffix-tokens") suffix_tokens = v;
    else if (flag == "--reps") reps = v;
    else if (flag == "--threads") threads = v;
  }
  auto model = Model::Load(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const int vocab = (*model)->hparams().vocab_size;
  EngineOptions eo;
  eo.num_threads = threads;
  eo.max_running = 1;
  eo.context_length = prefix_tokens + suffix_tokens + 8;
  eo.max_batch_tokens = 512;
  eo.max_chunk_tokens = 512;
  EngineOptions off = eo;
  off.prefix_cache = false;
  auto cold_engine = std::move(*Engine::Create(**model, -1, off));
  auto warm_engine = std::move(*Engine::Create(**model, -1, eo));

  std::mt19937 rng(7);
  std::vector<int32_t> prefix(prefix_tokens);
  for (auto& t : prefix) t = static_cast<int32_t>(3 + rng() % (vocab - 3));
  auto with_suffix = [&] {
    std::vector<int32_t> p = prefix;
    for (int i = 0; i < suffix_tokens; ++i) p.push_back(static_cast<int32_t>(3 + rng() % (vocab - 3)));
    return p;
  };
  // The shared prefix enters the cache once, from a first user.
  TimeToFirstToken(*warm_engine, with_suffix());

  std::vector<double> cold, warm;
  int64_t cached = 0;
  for (int r = 0; r < reps; ++r) {  // alternate, so both see the same machine state
    cold.push_back(TimeToFirstToken(*cold_engine, with_suffix()).first);
    auto [ms, c] = TimeToFirstToken(*warm_engine, with_suffix());
    warm.push_back(ms);
    cached = c;
  }

  // The cache's own cost for one such prompt: match (with recency), lock, insert and release
  // of a prompt whose prefix is cached, averaged over many repetitions on the warm engine.
  PrefixCache& cache = warm_engine->cache();
  const auto probe_prompt = with_suffix();
  const int iters = 2000;
  const auto m0 = MonoClock::now();
  for (int i = 0; i < iters; ++i) {
    CacheHit hit = cache.Acquire("", probe_prompt, static_cast<int64_t>(probe_prompt.size()) - 1);
    // A finished request re-indexes its prompt: over the cached part that walks the same path.
    cache.Insert("", std::span<const int32_t>(probe_prompt).first(hit.num_tokens), hit.blocks);
    cache.Release(hit);
    // Acquire Ref'ed the blocks for a caller that would adopt them; give them back.
    for (BlockId b : hit.blocks) const_cast<BlockPool&>(warm_engine->block_pool()).Unref(b);
  }
  const double match_us = Ms(m0, MonoClock::now()) * 1000 / iters;

  const double cold_ms = Median(cold), warm_ms = Median(warm);
  std::printf("model %s, %d threads, prompt %d shared + %d new tokens, %d reps (median)\n",
              argv[1], threads, prefix_tokens, suffix_tokens, reps);
  std::printf("ttft cache off: %.1f ms\n", cold_ms);
  std::printf("ttft cache on:  %.1f ms (%lld tokens from cache)\n", warm_ms,
              static_cast<long long>(cached));
  std::printf("ratio on/off:   %.3f\n", warm_ms / cold_ms);
  std::printf("match+insert+lock+release of the prompt: %.1f us = %.4f%% of the prefill it saves\n",
              match_us, match_us / 1000 / (cold_ms - warm_ms) * 100);
  std::printf("{\"cold_ms\": %.3f, \"warm_ms\": %.3f, \"cached_tokens\": %lld, \"match_us\": %.3f}\n",
              cold_ms, warm_ms, static_cast<long long>(cached), match_us);
  return 0;
}

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) { return prefixd::Main(argc, argv); }
