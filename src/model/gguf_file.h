// A parsed GGUF file (v2 or v3): metadata key/values, tensor infos, and tensor data used in
// place from a read-only memory map.
//
// Every malformed input is rejected by Open/Parse with an InvalidArgument status whose message
// names the file and the problem (bad magic, unsupported version, truncated header or data,
// absurd counts or lengths, unknown tensor type, tensor out of bounds, misaligned offsets).
// Parsing never allocates more than a small multiple of the file's size, so a hostile file
// cannot exhaust memory: every count is checked against the bytes left before anything is
// reserved, and the number of metadata values (array elements included) is capped at
// kGgufMaxMetadataValues, since each one costs sizeof(GgufValue) (~100 bytes) in memory.
//
// Thread safety: immutable after construction; safe to read from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/mapped_file.h"
#include "base/status.h"
#include "model/tensor_type.h"

namespace prefixd {

// GGUF metadata value types, numbered as in the format.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view GgufTypeName(GgufType type);

// Limits the reader enforces beyond the format itself.
inline constexpr int kGgufMaxDims = 4;                 // as ggml (GGML_MAX_DIMS)
inline constexpr int kGgufMaxArrayDepth = 4;           // arrays of arrays of ... (top level = 1)
inline constexpr uint64_t kGgufMaxMetadataValues = uint64_t{1} << 23;  // ~800 MB of GgufValue
inline constexpr uint64_t kGgufDefaultAlignment = 32;

// One metadata value. Scalars keep their exact type; arrays keep their element type.
struct GgufValue {
  GgufType type = GgufType::kUint32;
  // Scalar payload: integers in `i` (signed) or `u` (unsigned), floats in `f`, bools in `u`.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string str;                 // kString
  GgufType elem_type = GgufType::kUint8;  // kArray
  std::vector<GgufValue> array;    // kArray (nested arrays allowed by the format)

  static GgufValue U8(uint8_t v);
  static GgufValue I8(int8_t v);
  static GgufValue U16(uint16_t v);
  static GgufValue I16(int16_t v);
  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue U64(uint64_t v);
  static GgufValue I64(int64_t v);
  static GgufValue F32(float v);
  static GgufValue F64(double v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue StringArray(std::vector<std::string> v);
  static GgufValue F32Array(const std::vector<float>& v);
  static GgufValue I32Array(const std::vector<int32_t>& v);
  // An array of `elements`, each of which should have type `elem_type` (the writer encodes
  // each element as `elem_type`, reading the payload field that type uses).
  static GgufValue Array(GgufType elem_type, std::vector<GgufValue> elements);

  // Field-wise equality (floats compare as doubles, so NaN != NaN).
  bool operator==(const GgufValue&) const = default;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] is the fastest-varying (row length)
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t num_elements = 0;
  uint64_t num_bytes = 0;
};

class GgufFile {
 public:
  // Maps and parses the file at `path`.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path,
                                                  Residence residence = Residence::kMapped);
  // Parses bytes already in memory (not copied: they must outlive the result). `name` is used
  // in error messages. For tests and the fuzzer.
  static StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes,
                                                   std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  // Metadata in file order, and lookup by key (nullptr when absent).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;

  // Typed getters. NotFound when the key is absent; InvalidArgument naming the key and both
  // types when the stored type does not convert (integers convert between widths when the
  // value fits; floats accept float32/float64).
  StatusOr<uint64_t> GetUint(std::string_view key) const;
  StatusOr<int64_t> GetInt(std::string_view key) const;
  StatusOr<double> GetFloat(std::string_view key) const;
  StatusOr<bool> GetBool(std::string_view key) const;
  StatusOr<std::string> GetString(std::string_view key) const;
  StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // The tensor's bytes (bounds were checked at parse time).
  std::span<const uint8_t> TensorData(const GgufTensorInfo& info) const;

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> map_;  // null when parsed from caller-owned bytes
  std::span<const uint8_t> bytes_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;  // start of the tensor data section within bytes_
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  absl::flat_hash_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace prefixd
