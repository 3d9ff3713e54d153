// `prefixd bench-model`: prefill and decode speed of one model, shaped like llama-bench's
// pp512 / tg128: a 512-token prompt in one step from an empty context, and 128 tokens
// generated one at a time from an empty context. Random token ids; the cache plays no part.
//
// With --batch N (N > 1) it is shaped like llama-batched-bench's S_PP / S_TG instead: N
// sequences of --prompt-tokens random tokens each are prefilled together in one step, then
// decoded together, one token per sequence per step, for --gen-tokens steps; prefill_tok_s is
// N * prompt tokens over the prefill step's time and decode_tok_s is N * gen tokens over the
// decode steps' time (the whole batch's throughput, as batched-bench's S_TG).
//
// With --depth D (batch 1) the tg sequence first reads a D-token prompt and decode is timed
// from its first token on, as llama-bench's `-d D`: a server decodes after a long context, and
// attention's share of a step grows with it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/common.h"
#include "app/engine_flags.h"

namespace prefixd {

namespace {

struct BenchFlags {
  std::string model;
  int threads = 2;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int depth = 0;
  int repetitions = 3;
  int batch = 1;
  int block_size = 16;
  std::string kv_type = "f16";
  std::string quant_dot = "int8";
  std::string backend = "cpu";
  std::string weights = "auto";
  bool json = false;
};

using MonoClock = std::chrono::steady_clock;

double Seconds(MonoClock::time_point a, MonoClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// --batch N: N sequences prefilled in one step, then decoded together. Adds the timed
// seconds of the prefill step and of the decode steps (those after every sequence has its
// first token) to *prefill_s and *decode_s, and the tokens those steps produced to *decoded.
Status BatchRound(Engine& engine, int n, int prompt_tokens, int gen_tokens, std::mt19937& rng,
                  std::uniform_int_distribution<int32_t>& tok, double* prefill_s, double* decode_s,
                  int64_t* decoded) {
  std::vector<SequenceId> ids;
  for (int s = 0; s < n; ++s) {
    GenerateRequest r;
    for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(tok(rng));
    r.max_tokens = gen_tokens + 1;  // the first token comes from the prefill step
    r.ignore_eos = true;
    ASSIGN_OR_RETURN(SequenceId id, engine.Add(std::move(r)));
    ids.push_back(id);
  }
  int64_t first = 0, later = 0;
  const auto t0 = MonoClock::now();
  while (first < n && engine.HasWork()) {
    ASSIGN_OR_RETURN(auto events, engine.Step());
    for (const StepEvent& e : events) first += e.token.has_value();
  }
  const auto t1 = MonoClock::now();
  if (first != n) {
    return absl::InternalError(absl::StrCat("prefill gave ", first, " first tokens for ", n,
                                            " sequences (steps did not keep the batch together)"));
  }
  while (engine.HasWork()) {
    ASSIGN_OR_RETURN(auto events, engine.Step());
    for (const StepEvent& e : events) later += e.token.has_value();
  }
  const auto t2 = MonoClock::now();
  for (SequenceId id : ids) engine.TakeFinished(id);
  if (later != int64_t{n} * gen_tokens) {
    return absl::InternalError(absl::StrCat("decode gave ", later, " tokens, not ", n, " x ", gen_tokens));
  }
  *prefill_s += Seconds(t0, t1);
  *decode_s += Seconds(t1, t2);
  *decoded += later;
  return absl::OkStatus();
}

int RunBench(const BenchFlags& f) {
  if (f.batch < 1) return Fail(absl::InvalidArgumentError("--batch must be at least 1"));
  if (f.depth > 0 && f.batch > 1) {
    return Fail(absl::InvalidArgumentError("--depth works with --batch 1 (with --batch N, "
                                           "--prompt-tokens is every sequence's context)"));
  }
  auto residence = ChooseWeightResidence(f.weights, f.model);
  if (!residence.ok()) return Fail(residence.status());
  auto loaded = Model::Load(f.model, nullptr, *residence);
  if (!loaded.ok()) return Fail(loaded.status());
  const Model& model = **loaded;
  auto kv = ParseKvDtype(f.kv_type);
  if (!kv.ok()) return Fail(kv.status());
  EngineOptions eo;
  eo.backend = f.backend == "cuda" ? BackendKind::kCuda : BackendKind::kCpu;
  eo.num_threads = f.threads;
  eo.block_size = f.block_size;
  eo.kv_dtype = *kv;
  eo.quant_dot = ParseQuantDot(f.quant_dot);
  eo.max_running = f.batch;
  eo.max_batch_tokens = std::max(f.prompt_tokens, 1) * f.batch;
  eo.max_chunk_tokens = std::max({f.prompt_tokens, f.depth, 1});
  eo.max_batch_tokens = std::max(eo.max_batch_tokens, eo.max_chunk_tokens);
  eo.context_length = f.batch > 1 ? f.prompt_tokens + f.gen_tokens + 2
                                  : std::max(f.prompt_tokens, f.depth + f.gen_tokens) + 2;
  if (f.batch > 1) eo.prefix_cache = false;  // every sequence computes its own prompt
  auto engine = Engine::Create(model, /*eos_id=*/-1, eo);
  if (!engine.ok()) return Fail(engine.status());
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, model.hparams().vocab_size - 1);

  double prefill_s = 0, decode_s = 0;
  int64_t decoded = 0;
  for (int rep = 0; f.batch > 1 && rep < f.repetitions + 1; ++rep) {  // the first run warms up
    double p = 0, d = 0;
    int64_t n = 0;
    auto st = BatchRound(**engine, f.batch, f.prompt_tokens, f.gen_tokens, rng, tok, &p, &d, &n);
    if (!st.ok()) return Fail(st);
    if (rep > 0) prefill_s += p, decode_s += d, decoded += n;
  }
  for (int rep = 0; f.batch == 1 && rep < f.repetitions + 1; ++rep) {  // the first run warms up
    GenerateRequest pp;
    for (int i = 0; i < f.prompt_tokens; ++i) pp.prompt.push_back(tok(rng));
    pp.max_tokens = 1;
    auto id = (*engine)->Add(pp);
    if (!id.ok()) return Fail(id.status());
    const auto t0 = MonoClock::now();
    while ((*engine)->HasWork()) {
      auto st = (*engine)->Step();
      if (!st.ok()) return Fail(st.status());
    }
    const auto t1 = MonoClock::now();
    (*engine)->TakeFinished(*id);

    double tg_s = 0;
    if (f.depth > 0) {  // decode after a D-token context, timed from the first token on
      double unused_prefill = 0;
      int64_t unused_tokens = 0;
      auto st = BatchRound(**engine, 1, f.depth, f.gen_tokens, rng, tok, &unused_prefill, &tg_s,
                           &unused_tokens);
      if (!st.ok()) return Fail(st);
    } else {
      GenerateRequest tg;
      tg.prompt = {tok(rng)};
      tg.max_tokens = f.gen_tokens;
      tg.ignore_eos = true;
      id = (*engine)->Add(tg);
      if (!id.ok()) return Fail(id.status());
      const auto t2 = MonoClock::now();
      while ((*engine)->HasWork()) {
        auto st = (*engine)->Step();
        if (!st.ok()) return Fail(st.status());
      }
      tg_s = Seconds(t2, MonoClock::now());
      (*engine)->TakeFinished(*id);
    }
    if (rep > 0) {
      prefill_s += Seconds(t0, t1);
      decode_s += tg_s;
    }
  }
  const double pp_tok_s = static_cast<double>(f.prompt_tokens) * f.batch * f.repetitions / prefill_s;
  const double tg_tok_s =
      (f.batch > 1 ? static_cast<double>(decoded) : static_cast<double>(f.gen_tokens) * f.repetitions) / decode_s;
  if (f.json) {
    nlohmann::json j;
    j["model"] = f.model;
    j["params"] = model.num_params();
    j["threads"] = f.threads;
    j["backend"] = f.backend;
    j["prompt_tokens"] = f.prompt_tokens;
    j["gen_tokens"] = f.gen_tokens;
    j["depth"] = f.depth;
    j["repetitions"] = f.repetitions;
    j["batch"] = f.batch;
    j["prefill_tok_s"] = pp_tok_s;
    j["decode_tok_s"] = tg_tok_s;
    std::cout << j.dump() << "\n";
  } else {
    std::printf("model %s (%.2f M params), %s backend, %d threads, batch %d\n", f.model.c_str(),
                model.num_params() / 1e6, f.backend.c_str(), f.threads, f.batch);
    std::printf("prefill pp%d: %.1f tok/s\ndecode  tg%d%s: %.1f tok/s\n", f.prompt_tokens, pp_tok_s,
                f.gen_tokens, f.depth > 0 ? absl::StrCat(" @ d", f.depth).c_str() : "", tg_tok_s);
  }
  return 0;
}

}  // namespace

void AddBenchModelCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench-model", "Prefill and decode tokens/s of a model");
  cmd->add_option("-m,--model", f->model, "GGUF model file")->required();
  cmd->add_option("-t,--threads", f->threads, "Threads")->capture_default_str();
  cmd->add_option("--weights", f->weights, kWeightsFlagHelp)->capture_default_str();
  cmd->add_option("--prompt-tokens", f->prompt_tokens, "Prompt length (pp)")->capture_default_str();
  cmd->add_option("--gen-tokens", f->gen_tokens, "Tokens generated (tg)")->capture_default_str();
  cmd->add_option("--depth", f->depth,
                  "Context tokens read before the timed decode (batch 1; as llama-bench's -d)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("-r,--repetitions", f->repetitions, "Timed runs after one warm-up")->capture_default_str();
  cmd->add_option("--batch", f->batch,
                  "Sequences prefilled and decoded together (tok/s of the whole batch, as "
                  "llama-batched-bench's S_PP / S_TG)")->capture_default_str();
  cmd->add_option("--block-size", f->block_size, "KV block size")->capture_default_str();
  cmd->add_option("--kv-type", f->kv_type, "KV type f16|f32")->capture_default_str();
  AddQuantDotFlag(cmd, &f->quant_dot);
  cmd->add_option("--backend", f->backend, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_flag("--json", f->json, "Print {\"prefill_tok_s\": ..., \"decode_tok_s\": ...}");
  cmd->callback([f, run] { *run = [f] { return RunBench(*f); }; });
}

}  // namespace prefixd
