#include "model/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

namespace prefixd {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

constexpr uint32_t kVersion = 3;

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void PutString(std::vector<uint8_t>& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

// Encodes `v` as `type` (for array elements `type` is the array's element type, which takes
// precedence over the element's own `type` field).
void PutValue(std::vector<uint8_t>& out, GgufType type, const GgufValue& v) {
  switch (type) {
    case GgufType::kUint8: Put<uint8_t>(out, static_cast<uint8_t>(v.u)); break;
    case GgufType::kInt8: Put<int8_t>(out, static_cast<int8_t>(v.i)); break;
    case GgufType::kUint16: Put<uint16_t>(out, static_cast<uint16_t>(v.u)); break;
    case GgufType::kInt16: Put<int16_t>(out, static_cast<int16_t>(v.i)); break;
    case GgufType::kUint32: Put<uint32_t>(out, static_cast<uint32_t>(v.u)); break;
    case GgufType::kInt32: Put<int32_t>(out, static_cast<int32_t>(v.i)); break;
    case GgufType::kUint64: Put<uint64_t>(out, v.u); break;
    case GgufType::kInt64: Put<int64_t>(out, v.i); break;
    case GgufType::kFloat32: Put<float>(out, static_cast<float>(v.f)); break;
    case GgufType::kFloat64: Put<double>(out, v.f); break;
    case GgufType::kBool: Put<uint8_t>(out, v.u != 0 ? 1 : 0); break;
    case GgufType::kString: PutString(out, v.str); break;
    case GgufType::kArray:
      Put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      Put<uint64_t>(out, v.array.size());
      for (const GgufValue& e : v.array) PutValue(out, v.elem_type, e);
      break;
  }
}

uint64_t AlignUp(uint64_t x, uint64_t alignment) { return (x + alignment - 1) & ~(alignment - 1); }

// Writes all of `data` to `fd`, retrying short writes and EINTR.
Status WriteAll(int fd, const uint8_t* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("cannot write '", path, "': ", std::strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

Status GgufWriter::AddTensor(const std::string& name, std::vector<uint64_t> dims, TensorType type,
                             std::vector<uint8_t> data) {
  for (const Tensor& t : tensors_) {
    if (t.name == name) return absl::InvalidArgumentError(absl::StrCat("duplicate tensor '", name, "'"));
  }
  if (dims.empty() || dims.size() > static_cast<size_t>(kGgufMaxDims)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has ", dims.size(),
                                                   " dimensions; 1 to ", kGgufMaxDims, " allowed"));
  }
  uint64_t num_elements = 1;
  for (uint64_t d : dims) {
    if (d == 0 || num_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / d) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' has a zero dimension or too many elements"));
    }
    num_elements *= d;
  }
  const auto traits = GetTensorTypeTraits(static_cast<uint32_t>(type));
  if (!traits) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has unknown type ",
                                                   static_cast<uint32_t>(type)));
  }
  if (dims[0] % static_cast<uint64_t>(traits->block_elements) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' row length ", dims[0],
                                                   " is not a multiple of the ", absl::string_view(traits->name.data(), traits->name.size()),
                                                   " block size ", traits->block_elements));
  }
  const std::optional<uint64_t> bytes = TensorBytes(type, num_elements);
  if (!bytes || *bytes != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' of type ", absl::string_view(traits->name.data(), traits->name.size()), " with ", num_elements, " elements needs ",
        bytes.value_or(0), " bytes, got ", data.size()));
  }
  tensors_.push_back(Tensor{name, std::move(dims), type, std::move(data)});
  return absl::OkStatus();
}

uint64_t GgufWriter::Alignment() const {
  for (const auto& [k, v] : metadata_) {
    if (k == "general.alignment" && v.type == GgufType::kUint32 && v.u != 0 &&
        std::has_single_bit(v.u)) {
      return v.u;
    }
  }
  return kGgufDefaultAlignment;
}

std::vector<uint8_t> GgufWriter::SerializeHeader() const {
  const uint64_t alignment = Alignment();
  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  Put<uint32_t>(out, kVersion);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    PutString(out, key);
    Put<uint32_t>(out, static_cast<uint32_t>(value.type));
    PutValue(out, value.type, value);
  }
  // Every tensor, the last included, is padded to the alignment: ggml's reader reads the data
  // section with the padding of the last tensor included and fails on a file without it.
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) Put<uint64_t>(out, d);
    Put<uint32_t>(out, static_cast<uint32_t>(t.type));
    Put<uint64_t>(out, offset);
    offset += AlignUp(t.data.size(), alignment);
  }
  out.resize(AlignUp(out.size(), alignment), 0);
  return out;
}

std::vector<uint8_t> GgufWriter::Serialize() const {
  const uint64_t alignment = Alignment();
  std::vector<uint8_t> out = SerializeHeader();
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize(AlignUp(out.size(), alignment), 0);
  }
  return out;
}

Status GgufWriter::Write(const std::string& path) const {
  if (const auto it = std::find_if(metadata_.begin(), metadata_.end(),
                                   [](const auto& kv) { return kv.first == "general.alignment"; });
      it != metadata_.end()) {
    const GgufValue& a = it->second;
    if (a.type != GgufType::kUint32 || a.u == 0 || !std::has_single_bit(a.u)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot write '", path, "': general.alignment must be a uint32 power of two"));
    }
  }
  const uint64_t alignment = Alignment();

  // A unique temporary name in the same directory, so the rename is atomic and a reader never
  // sees a half-written model.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create '", tmp, "': ", std::strerror(errno)));
  }
  auto fail = [&](Status s) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  // Tensor data goes straight from the tensors to the file; only the header is assembled in
  // memory, so writing does not double the memory a large model needs.
  const std::vector<uint8_t> header = SerializeHeader();
  if (Status s = WriteAll(fd, header.data(), header.size(), tmp); !s.ok()) return fail(s);
  static constexpr uint8_t kZeros[4096] = {};
  for (const Tensor& t : tensors_) {
    if (Status s = WriteAll(fd, t.data.data(), t.data.size(), tmp); !s.ok()) return fail(s);
    for (uint64_t pad = AlignUp(t.data.size(), alignment) - t.data.size(); pad > 0;) {
      const uint64_t n = std::min<uint64_t>(pad, sizeof(kZeros));
      if (Status s = WriteAll(fd, kZeros, n, tmp); !s.ok()) return fail(s);
      pad -= n;
    }
  }
  if (::fsync(fd) != 0) {
    return fail(absl::InternalError(absl::StrCat("cannot fsync '", tmp, "': ", std::strerror(errno))));
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot close '", tmp, "': ", std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace prefixd
