// `prefixd generate`: runs prompts through one engine, in order, and prints what the model
// says (text, or one JSON object per prompt with --json).
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/common.h"
#include "app/engine_flags.h"

namespace prefixd {

namespace {

struct GenerateFlags {
  std::string model;
  std::vector<std::string> prompts;
  std::string prompts_file;
  int n_predict = 64;
  SamplingParams sampling;
  bool json = false;
  bool ignore_eos = false;
  std::string cache_salt;
  EngineFlags engine;
};

int RunGenerate(const GenerateFlags& f) {
  auto residence = ChooseWeightResidence(f.engine.weights, f.model);
  if (!residence.ok()) return Fail(residence.status());
  auto loaded = LoadModelAndTokenizer(f.model, *residence);
  if (!loaded.ok()) return Fail(loaded.status());
  std::vector<std::string> prompts = f.prompts;
  if (!f.prompts_file.empty()) {
    std::ifstream in(f.prompts_file);
    if (!in) return Fail(absl::NotFoundError("cannot read --prompts-file " + f.prompts_file));
    for (std::string line; std::getline(in, line);) prompts.push_back(line);
  }
  if (prompts.empty()) prompts.push_back("");
  auto eo = ToEngineOptions(f.engine);
  if (!eo.ok()) return Fail(eo.status());
  auto engine = Engine::Create(*loaded->model, loaded->tokenizer->eos_id(), *eo);
  if (!engine.ok()) return Fail(engine.status());
  const Tokenizer& tok = *loaded->tokenizer;
  for (const std::string& prompt : prompts) {
    GenerateRequest req;
    req.prompt = tok.Encode(prompt, EncodeOptions{});
    if (req.prompt.empty()) req.prompt.push_back(tok.bos_id());
    req.sampling = f.sampling;
    req.max_tokens = f.n_predict;
    req.ignore_eos = f.ignore_eos;
    req.cache_salt = f.cache_salt;
    auto id = (*engine)->Add(req);
    if (!id.ok()) return Fail(id.status());
    StreamingDecoder decoder(tok);
    if (!f.json) std::cout << prompt << std::flush;
    while ((*engine)->HasWork()) {
      auto events = (*engine)->Step();
      if (!events.ok()) return Fail(events.status());
      if (f.json) continue;
      for (const StepEvent& ev : *events) {
        if (ev.token && !tok.IsEndOfGeneration(*ev.token)) std::cout << decoder.Push(*ev.token) << std::flush;
      }
    }
    auto seq = (*engine)->TakeFinished(*id);
    std::vector<int32_t> generated(seq->tokens.begin() + seq->num_prompt, seq->tokens.end());
    if (f.json) {
      std::string text;
      StreamingDecoder d(tok);
      for (int32_t t : generated) text += d.Push(t);
      text += d.Finish();
      nlohmann::json j;
      j["prompt"] = prompt;
      j["prompt_ids"] = seq->request.prompt;
      j["generated_ids"] = generated;
      j["text"] = text;
      j["finish_reason"] = FinishReasonName(seq->finish);
      j["cached_tokens"] = seq->cached_tokens;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << decoder.Finish() << "\n";
    }
  }
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Generate text from prompts, in order, through one engine and its prefix cache");
  cmd->add_option("-m,--model", f->model, "GGUF model file")->required();
  cmd->add_option("-p,--prompt", f->prompts, "Prompt (repeat for several)");
  cmd->add_option("--prompts-file", f->prompts_file, "File with one prompt per line");
  cmd->add_option("-n,--n-predict", f->n_predict, "Tokens to generate per prompt")->capture_default_str();
  cmd->add_option("--temp", f->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p, "Top-p")->capture_default_str();
  cmd->add_option("--min-p", f->sampling.min_p, "Min-p")->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("--json", f->json, "One JSON object per prompt, one per line");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at end-of-sequence");
  cmd->add_option("--cache-salt", f->cache_salt, "Tenant key: different salts never share cache");
  AddEngineFlags(cmd, &f->engine);
  cmd->callback([f, run] { *run = [f] { return RunGenerate(*f); }; });
}

}  // namespace prefixd
