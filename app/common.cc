#include "app/common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/vocab_loader.h"

namespace prefixd {

StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& path) {
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  Model::ProgressFn progress;
  if (tty) {
    progress = [](size_t done, size_t total) {
      const int width = 30;
      const int filled = total ? static_cast<int>(width * done / total) : width;
      std::fprintf(stderr, "\rloading model [%.*s%*s] %zu/%zu tensors", filled,
                   "##############################", width - filled, "", done, total);
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  LoadedModel out;
  ASSIGN_OR_RETURN(out.model, Model::Load(path, progress));
  ASSIGN_OR_RETURN(Vocab vocab, LoadVocab(out.model->gguf()));
  ASSIGN_OR_RETURN(out.tokenizer, Tokenizer::Create(std::move(vocab)));
  if (out.tokenizer->vocab_size() != out.model->hparams().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", path, "': the tokenizer has ", out.tokenizer->vocab_size(),
        " tokens but the embedding has ", out.model->hparams().vocab_size, " rows"));
  }
  return out;
}

StatusOr<KvDtype> ParseKvDtype(const std::string& name) {
  if (name == "f16") return KvDtype::kF16;
  if (name == "f32") return KvDtype::kF32;
  return absl::InvalidArgumentError(absl::StrCat("KV type '", name, "' is not f16 or f32"));
}

StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in;
  std::istream* is = &std::cin;
  if (path != "-") {
    in.open(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
    is = &in;
  }
  std::ostringstream ss;
  ss << is->rdbuf();
  if (is->bad()) return absl::DataLossError(absl::StrCat("cannot read '", path, "'"));
  return ss.str();
}

int Fail(const Status& status) {
  std::fprintf(stderr, "prefixd: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace prefixd
