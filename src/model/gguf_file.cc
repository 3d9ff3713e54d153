#include "model/gguf_file.h"

#include <bit>
#include <cstring>
#include <limits>
#include <utility>

namespace prefixd {
namespace {

// GGUF v2/v3 files are little-endian (v3 also allows big-endian files, which we reject); we
// read fields with memcpy, which is only right on a little-endian host.
static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr std::string_view kAlignmentKey = "general.alignment";

// Debian's absl has its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW is 0), which
// StrCat and heterogeneous map lookup need.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsUnsignedInt(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}
bool IsSignedInt(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}
bool IsFloat(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

bool IsKnownType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

// The fewest bytes one value of `type` can occupy in a file. Used to reject counts that cannot
// fit in what is left of the file before anything is reserved.
uint64_t MinEncodedSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString:  // the uint64 length
      return 8;
    case GgufType::kArray:  // uint32 element type + uint64 count
      return 12;
  }
  return 1;
}

// "uint32", or "array[string]" for arrays.
std::string DescribeType(const GgufValue& v) {
  if (v.type != GgufType::kArray) return std::string(GgufTypeName(v.type));
  return absl::StrCat("array[", Sv(GgufTypeName(v.elem_type)), "]");
}

// Bounds-checked little-endian cursor over the file's bytes. Every error names the file, what
// was being read and where.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status Error(absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", problem));
  }

  Status Need(uint64_t n, absl::string_view what) const {
    if (n > remaining()) {
      return Error(absl::StrCat("truncated file: need ", n, " bytes for ", what, " at offset ",
                                pos_, " but only ", remaining(), " remain"));
    }
    return absl::OkStatus();
  }

  template <typename T>
  StatusOr<T> Read(absl::string_view what) {
    RETURN_IF_ERROR(Need(sizeof(T), what));
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // REQUIRES: n <= remaining().
  void Skip(uint64_t n) { pos_ += n; }

  StatusOr<std::string> ReadString(absl::string_view what) {
    ASSIGN_OR_RETURN(const uint64_t len, Read<uint64_t>(absl::StrCat("the length of ", what)));
    // Checked before constructing the string, so a hostile length never allocates.
    if (len > remaining()) {
      return Error(absl::StrCat("string length ", len, " of ", what, " at offset ", pos_ - 8,
                                " exceeds the ", remaining(), " bytes left in the file"));
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

// Reads metadata values, counting them against kGgufMaxMetadataValues.
class ValueReader {
 public:
  explicit ValueReader(Reader& r) : r_(r) {}

  // Reads one value of `type`. `depth` is the number of arrays enclosing it; `key` names the
  // metadata entry in errors.
  StatusOr<GgufValue> ReadValue(GgufType type, int depth, const std::string& key) {
    if (++num_values_ > kGgufMaxMetadataValues) return TooMany();
    GgufValue v;
    v.type = type;
    const std::string what = absl::StrCat("the value of key '", key, "'");
    switch (type) {
      case GgufType::kUint8: {
        ASSIGN_OR_RETURN(v.u, r_.Read<uint8_t>(what));
        break;
      }
      case GgufType::kInt8: {
        ASSIGN_OR_RETURN(v.i, r_.Read<int8_t>(what));
        break;
      }
      case GgufType::kUint16: {
        ASSIGN_OR_RETURN(v.u, r_.Read<uint16_t>(what));
        break;
      }
      case GgufType::kInt16: {
        ASSIGN_OR_RETURN(v.i, r_.Read<int16_t>(what));
        break;
      }
      case GgufType::kUint32: {
        ASSIGN_OR_RETURN(v.u, r_.Read<uint32_t>(what));
        break;
      }
      case GgufType::kInt32: {
        ASSIGN_OR_RETURN(v.i, r_.Read<int32_t>(what));
        break;
      }
      case GgufType::kUint64: {
        ASSIGN_OR_RETURN(v.u, r_.Read<uint64_t>(what));
        break;
      }
      case GgufType::kInt64: {
        ASSIGN_OR_RETURN(v.i, r_.Read<int64_t>(what));
        break;
      }
      case GgufType::kFloat32: {
        ASSIGN_OR_RETURN(v.f, r_.Read<float>(what));
        break;
      }
      case GgufType::kFloat64: {
        ASSIGN_OR_RETURN(v.f, r_.Read<double>(what));
        break;
      }
      case GgufType::kBool: {
        const uint64_t at = r_.pos();
        ASSIGN_OR_RETURN(const uint8_t b, r_.Read<uint8_t>(what));
        if (b > 1) {
          return r_.Error(absl::StrCat("invalid bool value ", b, " at offset ", at, " in key '",
                                       key, "' (must be 0 or 1)"));
        }
        v.u = b;
        break;
      }
      case GgufType::kString: {
        ASSIGN_OR_RETURN(v.str, r_.ReadString(what));
        break;
      }
      case GgufType::kArray:
        RETURN_IF_ERROR(ReadArray(v, depth + 1, key));
        break;
    }
    return v;
  }

 private:
  Status ReadArray(GgufValue& v, int level, const std::string& key) {
    if (level > kGgufMaxArrayDepth) {
      return r_.Error(absl::StrCat("arrays nested more than ", kGgufMaxArrayDepth,
                                   " deep in key '", key, "'"));
    }
    const uint64_t type_at = r_.pos();
    ASSIGN_OR_RETURN(const uint32_t elem_type,
                     r_.Read<uint32_t>(absl::StrCat("the element type of array '", key, "'")));
    if (!IsKnownType(elem_type)) {
      return r_.Error(absl::StrCat("unknown array element type ", elem_type, " at offset ",
                                   type_at, " in key '", key, "'"));
    }
    v.elem_type = static_cast<GgufType>(elem_type);
    ASSIGN_OR_RETURN(const uint64_t count,
                     r_.Read<uint64_t>(absl::StrCat("the length of array '", key, "'")));
    // Reject before reserving: a hostile count must not turn into a huge allocation.
    if (count > r_.remaining() / MinEncodedSize(v.elem_type)) {
      return r_.Error(absl::StrCat("array length ", count, " of key '", key, "' (",
                                   Sv(GgufTypeName(v.elem_type)), " elements) cannot fit in the ",
                                   r_.remaining(), " bytes left in the file"));
    }
    if (count > kGgufMaxMetadataValues - num_values_) return TooMany();
    v.array.reserve(count);
    for (uint64_t k = 0; k < count; ++k) {
      ASSIGN_OR_RETURN(GgufValue elem, ReadValue(v.elem_type, level, key));
      v.array.push_back(std::move(elem));
    }
    return absl::OkStatus();
  }

  Status TooMany() const {
    return r_.Error(absl::StrCat("more than ", kGgufMaxMetadataValues,
                                 " metadata values (array elements included)"));
  }

  Reader& r_;
  uint64_t num_values_ = 0;
};

// Round `x` up to a multiple of `alignment` (a power of two no larger than 2^32).
uint64_t AlignUp(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) & ~(alignment - 1);
}

}  // namespace

std::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

GgufValue GgufValue::U8(uint8_t v) {
  GgufValue r;
  r.type = GgufType::kUint8;
  r.u = v;
  return r;
}
GgufValue GgufValue::I8(int8_t v) {
  GgufValue r;
  r.type = GgufType::kInt8;
  r.i = v;
  return r;
}
GgufValue GgufValue::U16(uint16_t v) {
  GgufValue r;
  r.type = GgufType::kUint16;
  r.u = v;
  return r;
}
GgufValue GgufValue::I16(int16_t v) {
  GgufValue r;
  r.type = GgufType::kInt16;
  r.i = v;
  return r;
}
GgufValue GgufValue::U32(uint32_t v) {
  GgufValue r;
  r.type = GgufType::kUint32;
  r.u = v;
  return r;
}
GgufValue GgufValue::I32(int32_t v) {
  GgufValue r;
  r.type = GgufType::kInt32;
  r.i = v;
  return r;
}
GgufValue GgufValue::U64(uint64_t v) {
  GgufValue r;
  r.type = GgufType::kUint64;
  r.u = v;
  return r;
}
GgufValue GgufValue::I64(int64_t v) {
  GgufValue r;
  r.type = GgufType::kInt64;
  r.i = v;
  return r;
}
GgufValue GgufValue::F32(float v) {
  GgufValue r;
  r.type = GgufType::kFloat32;
  r.f = v;
  return r;
}
GgufValue GgufValue::F64(double v) {
  GgufValue r;
  r.type = GgufType::kFloat64;
  r.f = v;
  return r;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue r;
  r.type = GgufType::kBool;
  r.u = v ? 1 : 0;
  return r;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue r;
  r.type = GgufType::kString;
  r.str = std::move(v);
  return r;
}
GgufValue GgufValue::Array(GgufType elem_type, std::vector<GgufValue> elements) {
  GgufValue r;
  r.type = GgufType::kArray;
  r.elem_type = elem_type;
  r.array = std::move(elements);
  return r;
}
GgufValue GgufValue::StringArray(std::vector<std::string> v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (auto& s : v) elems.push_back(String(std::move(s)));
  return Array(GgufType::kString, std::move(elems));
}
GgufValue GgufValue::F32Array(const std::vector<float>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (float x : v) elems.push_back(F32(x));
  return Array(GgufType::kFloat32, std::move(elems));
}
GgufValue GgufValue::I32Array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (int32_t x : v) elems.push_back(I32(x));
  return Array(GgufType::kInt32, std::move(elems));
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path,
                                                   Residence residence) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> map, MappedFile::Open(path, residence));
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, Parse(map->bytes(), path));
  file->map_ = std::move(map);
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes,
                                                    std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->name_ = std::move(name);
  file->bytes_ = bytes;
  Reader r(bytes, file->name_);

  // Header.
  RETURN_IF_ERROR(r.Need(4, "the magic"));
  if (std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return r.Error(absl::StrFormat(
        "bad magic: not a GGUF file (expected \"GGUF\", found bytes %02x %02x %02x %02x)",
        bytes[0], bytes[1], bytes[2], bytes[3]));
  }
  r.Skip(4);
  ASSIGN_OR_RETURN(file->version_, r.Read<uint32_t>("the version"));
  const uint32_t version = file->version_;
  if (version == 1) {
    return r.Error(
        "unsupported GGUF version 1 (only versions 2 and 3 are supported; re-convert the model "
        "with a current llama.cpp)");
  }
  if (version == 0x02000000u || version == 0x03000000u) {
    return r.Error("unsupported GGUF version: this is a big-endian GGUF file; only "
                   "little-endian files are supported");
  }
  if (version != 2 && version != 3) {
    return r.Error(absl::StrCat("unsupported GGUF version ", version,
                                " (only versions 2 and 3 are supported)"));
  }
  ASSIGN_OR_RETURN(const uint64_t tensor_count, r.Read<uint64_t>("tensor_count"));
  ASSIGN_OR_RETURN(const uint64_t kv_count, r.Read<uint64_t>("kv_count"));
  // The smallest key/value is an empty key (8), a type (4) and a one-byte value; the smallest
  // tensor info is an empty name (8), n_dims (4), one dim (8), type (4) and offset (8).
  constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
  constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
  if (kv_count > r.remaining() / kMinKvBytes) {
    return r.Error(absl::StrCat("kv_count ", kv_count, " is impossible: ", kv_count,
                                " key/value pairs cannot fit in the ", r.remaining(),
                                " bytes left in the file"));
  }
  if (tensor_count > r.remaining() / kMinTensorInfoBytes) {
    return r.Error(absl::StrCat("tensor_count ", tensor_count, " is impossible: ", tensor_count,
                                " tensor infos cannot fit in the ", r.remaining(),
                                " bytes left in the file"));
  }

  // Metadata.
  ValueReader values(r);
  file->metadata_.reserve(kv_count);
  file->metadata_index_.reserve(kv_count);
  for (uint64_t k = 0; k < kv_count; ++k) {
    const uint64_t key_at = r.pos();
    ASSIGN_OR_RETURN(std::string key, r.ReadString(absl::StrCat("the key of metadata entry ", k)));
    if (file->metadata_index_.contains(key)) {
      return r.Error(absl::StrCat("duplicate metadata key '", key, "' at offset ", key_at));
    }
    const uint64_t type_at = r.pos();
    ASSIGN_OR_RETURN(const uint32_t type,
                     r.Read<uint32_t>(absl::StrCat("the type of key '", key, "'")));
    if (!IsKnownType(type)) {
      return r.Error(absl::StrCat("unknown value type ", type, " at offset ", type_at,
                                  " for key '", key, "'"));
    }
    ASSIGN_OR_RETURN(GgufValue value, values.ReadValue(static_cast<GgufType>(type), 0, key));
    file->metadata_index_.emplace(key, file->metadata_.size());
    file->metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = file->Find(kAlignmentKey); a != nullptr) {
    if (a->type != GgufType::kUint32) {
      return r.Error(absl::StrCat("metadata key '", Sv(kAlignmentKey), "' has type ",
                                  DescribeType(*a), "; it must be uint32"));
    }
    if (a->u == 0 || !std::has_single_bit(a->u)) {
      return r.Error(absl::StrCat("metadata key '", Sv(kAlignmentKey), "' is ", a->u,
                                  "; it must be a nonzero power of two"));
    }
    file->alignment_ = a->u;
  }
  const uint64_t alignment = file->alignment_;

  // Tensor infos.
  file->tensors_.reserve(tensor_count);
  file->tensor_index_.reserve(tensor_count);
  for (uint64_t t = 0; t < tensor_count; ++t) {
    GgufTensorInfo info;
    const uint64_t name_at = r.pos();
    ASSIGN_OR_RETURN(info.name, r.ReadString(absl::StrCat("the name of tensor ", t)));
    if (file->tensor_index_.contains(info.name)) {
      return r.Error(absl::StrCat("duplicate tensor name '", info.name, "' at offset ", name_at));
    }
    const std::string tensor = absl::StrCat("tensor '", info.name, "'");
    ASSIGN_OR_RETURN(const uint32_t n_dims, r.Read<uint32_t>(absl::StrCat("n_dims of ", tensor)));
    if (n_dims == 0 || n_dims > kGgufMaxDims) {
      return r.Error(absl::StrCat(tensor, " has n_dims ", n_dims, "; it must be between 1 and ",
                                  kGgufMaxDims));
    }
    info.dims.reserve(n_dims);
    uint64_t num_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(const uint64_t dim,
                       r.Read<uint64_t>(absl::StrCat("dimension ", d, " of ", tensor)));
      if (dim == 0) return r.Error(absl::StrCat(tensor, " has dimension ", d, " equal to 0"));
      // ggml counts elements in int64_t, so that is the limit.
      if (num_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim) {
        return r.Error(absl::StrCat(tensor, " element count overflows (dimension ", d, " is ",
                                    dim, ")"));
      }
      num_elements *= dim;
      info.dims.push_back(dim);
    }
    info.num_elements = num_elements;
    const uint64_t type_at = r.pos();
    ASSIGN_OR_RETURN(const uint32_t type, r.Read<uint32_t>(absl::StrCat("the type of ", tensor)));
    const std::optional<TensorTypeTraits> traits = GetTensorTypeTraits(type);
    if (!traits) {
      return r.Error(absl::StrCat(tensor, " has unknown tensor type ", type, " at offset ",
                                  type_at));
    }
    info.type = static_cast<TensorType>(type);
    // Quantised rows are whole blocks; ggml requires the row length itself to divide.
    const uint64_t block_elements = static_cast<uint64_t>(traits->block_elements);
    const uint64_t block_bytes = static_cast<uint64_t>(traits->block_bytes);
    if (info.dims[0] % block_elements != 0) {
      return r.Error(absl::StrCat(tensor, " of type ", Sv(traits->name), " has row length ",
                                  info.dims[0], ", not a multiple of the block size ",
                                  block_elements));
    }
    const uint64_t num_blocks = num_elements / block_elements;
    if (num_blocks > std::numeric_limits<uint64_t>::max() / block_bytes) {
      return r.Error(absl::StrCat(tensor, " byte size overflows"));
    }
    info.num_bytes = num_blocks * block_bytes;
    ASSIGN_OR_RETURN(info.offset, r.Read<uint64_t>(absl::StrCat("the offset of ", tensor)));
    if (info.offset % alignment != 0) {
      return r.Error(absl::StrCat(tensor, " has offset ", info.offset,
                                  ", not aligned to the file's alignment of ", alignment));
    }
    file->tensor_index_.emplace(info.name, file->tensors_.size());
    file->tensors_.push_back(std::move(info));
  }

  // Tensor data. A file with no tensors may end right after the infos, without padding.
  file->data_offset_ = AlignUp(r.pos(), alignment);
  const uint64_t size = bytes.size();
  if (!file->tensors_.empty() && file->data_offset_ > size) {
    return r.Error(absl::StrCat("truncated file: the tensor data section starts at offset ",
                                file->data_offset_, " but the file is only ", size,
                                " bytes long"));
  }
  const uint64_t data_size = file->data_offset_ <= size ? size - file->data_offset_ : 0;
  for (const GgufTensorInfo& info : file->tensors_) {
    if (info.offset > data_size || info.num_bytes > data_size - info.offset) {
      return r.Error(absl::StrCat("tensor '", info.name, "' data is out of bounds: offset ",
                                  info.offset, " + ", info.num_bytes,
                                  " bytes exceeds the data section of ", data_size,
                                  " bytes (file truncated?)"));
    }
  }
  return file;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(Sv(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {

Status NotFound(const std::string& file, absl::string_view key) {
  return absl::NotFoundError(absl::StrCat(file, ": metadata key '", key, "' not found"));
}

Status WrongType(const std::string& file, absl::string_view key, const GgufValue& v,
                 absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": metadata key '", key, "' has type ",
                                                 DescribeType(v), ", expected ", expected));
}

// An integer value as int64, or an error naming `key` when it does not fit.
StatusOr<int64_t> IntOf(const std::string& file, absl::string_view key, const GgufValue& v) {
  if (IsSignedInt(v.type)) return v.i;
  if (IsUnsignedInt(v.type)) {
    if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": metadata key '", key, "' holds ", v.u, ", which does not fit in int64"));
    }
    return static_cast<int64_t>(v.u);
  }
  return WrongType(file, key, v, "an integer");
}

}  // namespace

StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (IsUnsignedInt(v->type)) return v->u;
  if (IsSignedInt(v->type)) {
    if (v->i < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": metadata key '", Sv(key), "' holds negative ",
                       Sv(GgufTypeName(v->type)), " ", v->i, ", expected an unsigned integer"));
    }
    return static_cast<uint64_t>(v->i);
  }
  return WrongType(name_, Sv(key), *v, "an unsigned integer");
}

StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  return IntOf(name_, Sv(key), *v);
}

StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (!IsFloat(v->type)) return WrongType(name_, Sv(key), *v, "float32 or float64");
  return v->f;
}

StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (v->type != GgufType::kBool) return WrongType(name_, Sv(key), *v, "bool");
  return v->u != 0;
}

StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (v->type != GgufType::kString) return WrongType(name_, Sv(key), *v, "string");
  return v->str;
}

StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return WrongType(name_, Sv(key), *v, "array[string]");
  }
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(e.str);
  return out;
}

StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (v->type != GgufType::kArray || !IsFloat(v->elem_type)) {
    return WrongType(name_, Sv(key), *v, "array[float32] or array[float64]");
  }
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) out.push_back(static_cast<float>(e.f));
  return out;
}

StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return NotFound(name_, Sv(key));
  if (v->type != GgufType::kArray ||
      !(IsSignedInt(v->elem_type) || IsUnsignedInt(v->elem_type))) {
    return WrongType(name_, Sv(key), *v, "an array of integers");
  }
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    ASSIGN_OR_RETURN(const int64_t x, IntOf(name_, Sv(key), e));
    out.push_back(x);
  }
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(Sv(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::TensorData(const GgufTensorInfo& info) const {
  return bytes_.subspan(data_offset_ + info.offset, info.num_bytes);
}

}  // namespace prefixd
