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
  // InvalidArgument (nothing added) on a duplicate name, 0 or more than 4 dims, a zero
  // dimension, an unknown type, a row length that is not whole blocks, or a size mismatch.
  Status AddTensor(const std::string& name, std::vector<uint64_t> dims, TensorType type,
                   std::vector<uint8_t> data);
  // Writes the file (to a temporary name in the same directory, fsynced, then renamed into
  // place, so `path` never holds a partial file). InvalidArgument when `general.alignment` is
  // set but is not a uint32 power of two; Internal with the path and errno text on I/O errors.
  Status Write(const std::string& path) const;
  // The serialised file, for tests that corrupt it in memory.
  std::vector<uint8_t> Serialize() const;

 private:
  // `general.alignment` when it is a uint32 power of two, else kGgufDefaultAlignment. (Write
  // rejects an invalid alignment key; Serialize keeps it, so tests can build such files.)
  uint64_t Alignment() const;
  // Everything before the tensor data: header, metadata, tensor infos, padding.
  std::vector<uint8_t> SerializeHeader() const;

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
