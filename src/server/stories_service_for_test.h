// For the server's tests: a real EngineService over stories260K (../shared/models), one
// thread, a small pool, answering in milliseconds.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "base/status.h"
#include "engine/engine.h"
#include "engine/engine_service.h"
#include "engine/vocab_loader.h"

namespace prefixd {

struct StoriesService {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<EngineService> service;
};

// Starts the service with `context_length` tokens of context; nullptr when stories260K.gguf
// is not in ../shared/models (the caller skips), an error when it cannot be served.
inline StatusOr<std::unique_ptr<StoriesService>> StartStoriesService(int context_length) {
  const std::string path = std::string(PREFIXD_SHARED_DIR) + "/models/stories260K.gguf";
  if (!std::filesystem::exists(path)) return std::unique_ptr<StoriesService>();
  auto s = std::make_unique<StoriesService>();
  ASSIGN_OR_RETURN(s->model, Model::Load(path));
  ASSIGN_OR_RETURN(auto vocab, LoadVocab(s->model->gguf()));
  ASSIGN_OR_RETURN(s->tokenizer, Tokenizer::Create(std::move(vocab)));
  EngineOptions eo;
  eo.num_threads = 1;
  eo.context_length = context_length;
  eo.max_running = 4;
  eo.cache_bytes = int64_t{4} << 20;
  ASSIGN_OR_RETURN(auto engine, Engine::Create(*s->model, s->tokenizer->eos_id(), eo));
  s->service = std::make_unique<EngineService>(*s->model, *s->tokenizer, std::move(engine), ServiceOptions{});
  return s;
}

}  // namespace prefixd
