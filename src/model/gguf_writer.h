// Writes GGUF v3 files: metadata in insertion order, tensors aligned to `general.alignment`
// (32 unless set). Used by `prefixd make-model`, tests and benchmarks.
//
// Thread safety: none; one writer per thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/gguf_file.h"

namespace prefixd {

class GgufWriter {
 public:
  // Sets (or replaces, keeping its position) a metadata value.
  void Set(const std::string& key, GgufValue value);
  // Adds a tensor; `data` must hold exactly TensorBytes(type, product of dims) bytes.
  Status AddTensor(const std::string& name, std::vector<uint64_t> dims, TensorType type,
                   std::vector<uint8_t> data);
  // Writes the file (to a temporary name, then renamed into place).
  Status Write(const std::string& path) const;
  // The serialised file, for tests that corrupt it in memory.
  std::vector<uint8_t> Serialize() const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace prefixd
