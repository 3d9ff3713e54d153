// libFuzzer target for the GGUF reader. Any input must either parse or be rejected with
// InvalidArgument; a parsed file must have every tensor's data inside the input, answer every
// getter without crashing, and survive a write/re-read round trip unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "model/gguf_file.h"
#include "model/gguf_writer.h"

namespace {

using prefixd::GgufFile;
using prefixd::GgufType;
using prefixd::GgufValue;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "gguf_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

// Reads every byte of every string and element, so ASan sees any dangling or short buffer.
uint64_t Touch(const GgufValue& v) {
  uint64_t h = static_cast<uint64_t>(v.type) + v.u + static_cast<uint64_t>(v.i);
  for (char c : v.str) h = h * 31 + static_cast<unsigned char>(c);
  for (const GgufValue& e : v.array) h = h * 31 + Touch(e);
  return h;
}

// Writes `f` back out and parses the result.
std::vector<uint8_t> Reserialize(const GgufFile& f) {
  prefixd::GgufWriter w;
  for (const auto& [key, value] : f.metadata()) w.Set(key, value);
  for (const prefixd::GgufTensorInfo& t : f.tensors()) {
    const auto data = f.TensorData(t);
    Check(w.AddTensor(t.name, t.dims, t.type, std::vector<uint8_t>(data.begin(), data.end())).ok(),
          "a parsed tensor is rejected by the writer");
  }
  return w.Serialize();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  auto parsed = GgufFile::Parse(bytes, "fuzz-input");
  if (!parsed.ok()) {
    Check(parsed.status().code() == absl::StatusCode::kInvalidArgument,
          "rejection is not InvalidArgument");
    Check(parsed.status().message().find("fuzz-input") != absl::string_view::npos,
          "rejection does not name the file");
    return 0;
  }
  const GgufFile& f = **parsed;
  volatile uint64_t sink = 0;
  for (const auto& [key, value] : f.metadata()) {
    sink = sink + Touch(value);
    Check(f.Find(key) == &value, "Find does not return the entry");
    // Every getter on every key: each must return a value or a status, never crash.
    sink = sink + f.GetUint(key).ok() + f.GetInt(key).ok() + f.GetFloat(key).ok() +
           f.GetBool(key).ok() + f.GetString(key).ok() + f.GetStringArray(key).ok() +
           f.GetFloatArray(key).ok() + f.GetIntArray(key).ok();
  }
  for (const prefixd::GgufTensorInfo& t : f.tensors()) {
    const auto d = f.TensorData(t);
    Check(d.size() == t.num_bytes, "tensor data size");
    Check(d.empty() || (d.data() >= data && d.data() + d.size() <= data + size),
          "tensor data outside the input");
    Check(f.FindTensor(t.name) == &t, "FindTensor does not return the tensor");
    uint64_t h = 0;
    for (uint8_t b : d) h += b;
    sink = sink + h;
  }
  // Round trip. The first rewrite may normalise (signalling NaNs quieten when float32 goes
  // through double), so compare the second rewrite with the first.
  const std::vector<uint8_t> once = Reserialize(f);
  auto reparsed = GgufFile::Parse(once, "rewritten");
  Check(reparsed.ok(), "a rewritten file does not parse");
  Check((*reparsed)->metadata().size() == f.metadata().size(), "metadata count changed");
  Check((*reparsed)->tensors().size() == f.tensors().size(), "tensor count changed");
  Check(Reserialize(**reparsed) == once, "round trip is not stable");
  return 0;
}
