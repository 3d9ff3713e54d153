// Pieces the subcommands share: loading a model with a progress bar, building its tokenizer,
// and the default model path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "engine/engine.h"
#include "model/llama_model.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// A progress bar on stderr ("what [####    ] done/total unit") when stderr is a terminal,
// else nullptr (logs and pipes get no carriage returns).
std::function<void(int64_t, int64_t)> TerminalProgressBar(const char* what, const char* unit);

// Loads the model at `path` (progress on stderr when it is a terminal) and its tokenizer.
StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& path,
                                            Residence residence = Residence::kMapped);

// The --weights flag: "ram" copies the weights onto huge pages (decode reads them faster),
// "mmap" uses the file in place, "auto" is ram when the file takes at most a quarter of the
// memory the kernel reports available (the CPU backend also keeps a packed copy of F16
// matrices), else mmap. InvalidArgument for any other value.
StatusOr<Residence> ChooseWeightResidence(const std::string& flag, const std::string& path);
inline constexpr const char* kWeightsFlagHelp =
    "Weights: ram (copied onto huge pages: faster decode), mmap (the file in place), auto "
    "(ram when the file takes at most a quarter of the available memory)";

// Parses "f16" / "f32".
StatusOr<KvDtype> ParseKvDtype(const std::string& name);

// The whole file at `path` ("-": standard input). NotFound / the I/O error when unreadable.
StatusOr<std::string> ReadTextFile(const std::string& path);

// Prints `status` as "prefixd: error: ..." on stderr and returns the exit code 1.
int Fail(const Status& status);

}  // namespace prefixd
