#include "app/common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <iostream>
#include <sstream>

#include "engine/vocab_loader.h"

namespace prefixd {

std::function<void(int64_t, int64_t)> TerminalProgressBar(const char* what, const char* unit) {
  if (::isatty(STDERR_FILENO) == 0) return nullptr;
  return [what, unit](int64_t done, int64_t total) {
    if (total <= 0) return;  // nothing to show (an empty disk cache)
    const int width = 30;
    const int filled = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld %s", what, filled,
                 "##############################", width - filled, "",
                 static_cast<long long>(done), static_cast<long long>(total), unit);
    if (done == total) std::fprintf(stderr, "\n");
  };
}

StatusOr<Residence> ChooseWeightResidence(const std::string& flag, const std::string& path) {
  if (flag == "ram") return Residence::kRam;
  if (flag == "mmap") return Residence::kMapped;
  if (flag != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--weights must be auto, ram or mmap, not '", flag, "'"));
  }
  std::error_code ec;
  const uintmax_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) return Residence::kMapped;  // let the load report the missing or unreadable file
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uintmax_t kib = 0;
  while (meminfo >> key >> kib) {
    if (key == "MemAvailable:") return file_bytes <= kib * 1024 / 4 ? Residence::kRam : Residence::kMapped;
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return Residence::kMapped;
}

StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& path, Residence residence) {
  Model::ProgressFn progress;
  if (auto bar = TerminalProgressBar("loading model", "tensors")) {
    progress = [bar](size_t done, size_t total) {
      bar(static_cast<int64_t>(done), static_cast<int64_t>(total));
    };
  }
  LoadedModel out;
  ASSIGN_OR_RETURN(out.model, Model::Load(path, progress, residence));
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
