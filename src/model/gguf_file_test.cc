#include "model/gguf_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/gguf_writer.h"

namespace prefixd {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr char kName[] = "test.gguf";

// The result points into `b`, which must outlive it (hence no temporaries).
StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const Bytes& b) {
  return GgufFile::Parse(std::span<const uint8_t>(b.data(), b.size()), kName);
}
StatusOr<std::unique_ptr<GgufFile>> ParseBytes(Bytes&& b) = delete;

// Parsing `b` fails with InvalidArgument naming the file and containing `problem`.
void ExpectRejected(const Bytes& b, const std::string& problem) {
  auto r = ParseBytes(b);
  ASSERT_FALSE(r.ok()) << "expected rejection for: " << problem;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find(kName), std::string::npos) << msg;
  EXPECT_NE(msg.find(problem), std::string::npos) << "message: " << msg << "\nwanted: " << problem;
}

// Offset of the first occurrence of `needle` in `b` (the test fails when absent).
size_t Find(const Bytes& b, const std::string& needle) {
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  EXPECT_NE(it, b.end()) << needle;
  return static_cast<size_t>(it - b.begin());
}

template <typename T>
void Poke(Bytes& b, size_t at, T v) {
  ASSERT_LE(at + sizeof(T), b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

template <typename T>
T Peek(const Bytes& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

Bytes Iota(size_t n, uint8_t start = 1) {
  Bytes b(n);
  for (size_t k = 0; k < n; ++k) b[k] = static_cast<uint8_t>(start + k);
  return b;
}

// Field offsets of a tensor info, found from its (unique) name.
struct InfoAt {
  size_t n_dims, dims, type, offset;
};
InfoAt LocateInfo(const Bytes& b, const std::string& name, int n_dims) {
  const size_t at = Find(b, name) + name.size();
  return InfoAt{at, at + 4, at + 4 + 8 * n_dims, at + 4 + 8 * n_dims + 4};
}

// A small valid file: a few keys and three tensors; the last tensor is 32 bytes, so the file
// ends exactly at the end of its data (no trailing padding) and every strict prefix is broken.
GgufWriter SmallWriter() {
  GgufWriter w;
  w.Set("general.architecture", GgufValue::String("llama"));
  w.Set("dup.a", GgufValue::U32(7));
  w.Set("dup.b", GgufValue::U32(8));
  w.Set("flag", GgufValue::Bool(true));
  w.Set("words", GgufValue::StringArray({"alpha", "beta", "gamma"}));
  w.Set("scores", GgufValue::F32Array({0.5f, -1.25f}));
  EXPECT_TRUE(w.AddTensor("first.weight", {4, 2}, TensorType::kF32, Iota(32)).ok());
  EXPECT_TRUE(w.AddTensor("second.weight", {3}, TensorType::kF16, Iota(6, 100)).ok());
  EXPECT_TRUE(w.AddTensor("third.weight", {8}, TensorType::kF32, Iota(32, 50)).ok());
  return w;
}

TEST(GgufValueTest, TypeNames) {
  EXPECT_EQ(GgufTypeName(GgufType::kUint8), "uint8");
  EXPECT_EQ(GgufTypeName(GgufType::kFloat64), "float64");
  EXPECT_EQ(GgufTypeName(static_cast<GgufType>(77)), "unknown");
}

TEST(GgufRoundTripTest, EveryScalarType) {
  std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"u8", GgufValue::U8(255)},
      {"i8", GgufValue::I8(-128)},
      {"u16", GgufValue::U16(65535)},
      {"i16", GgufValue::I16(-32768)},
      {"u32", GgufValue::U32(std::numeric_limits<uint32_t>::max())},
      {"i32", GgufValue::I32(std::numeric_limits<int32_t>::min())},
      {"u64", GgufValue::U64(std::numeric_limits<uint64_t>::max())},
      {"i64", GgufValue::I64(std::numeric_limits<int64_t>::min())},
      {"f32", GgufValue::F32(-1.5e-3f)},
      {"f64", GgufValue::F64(3.141592653589793)},
      {"true", GgufValue::Bool(true)},
      {"false", GgufValue::Bool(false)},
      {"str", GgufValue::String("h\xc3\xa9llo \xe2\x96\x81world")},
      {"str.nul", GgufValue::String(std::string("a\0b", 3))},
      {"str.empty", GgufValue::String("")},
  };
  GgufWriter w;
  for (const auto& [k, v] : kvs) w.Set(k, v);
  const Bytes bytes = w.Serialize();
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 3u);
  EXPECT_EQ((*file)->alignment(), 32u);
  EXPECT_EQ((*file)->name(), kName);
  EXPECT_EQ((*file)->metadata(), kvs);  // same values, same order
  EXPECT_TRUE((*file)->tensors().empty());
  for (const auto& [k, v] : kvs) {
    const GgufValue* got = (*file)->Find(k);
    ASSERT_NE(got, nullptr) << k;
    EXPECT_EQ(*got, v) << k;
  }
  EXPECT_EQ((*file)->Find("absent"), nullptr);
}

TEST(GgufRoundTripTest, SetReplacesInPlace) {
  GgufWriter w;
  w.Set("a", GgufValue::U32(1));
  w.Set("b", GgufValue::U32(2));
  w.Set("a", GgufValue::String("x"));
  const Bytes bytes = w.Serialize();
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->metadata().size(), 2u);
  EXPECT_EQ((*file)->metadata()[0].first, "a");
  EXPECT_EQ((*file)->metadata()[0].second, GgufValue::String("x"));
}

TEST(GgufRoundTripTest, Arrays) {
  auto nested = [](int depth) {
    GgufValue v = GgufValue::I32Array({1, 2, 3});
    for (int d = 1; d < depth; ++d) v = GgufValue::Array(GgufType::kArray, {v, v});
    return v;
  };
  std::vector<std::pair<std::string, GgufValue>> kvs = {
      {"a.u8", GgufValue::Array(GgufType::kUint8, {GgufValue::U8(0), GgufValue::U8(255)})},
      {"a.i8", GgufValue::Array(GgufType::kInt8, {GgufValue::I8(-1)})},
      {"a.u16", GgufValue::Array(GgufType::kUint16, {GgufValue::U16(9)})},
      {"a.i16", GgufValue::Array(GgufType::kInt16, {GgufValue::I16(-9)})},
      {"a.u32", GgufValue::Array(GgufType::kUint32, {GgufValue::U32(4000000000u)})},
      {"a.i32", GgufValue::I32Array({-5, 0, 5})},
      {"a.u64", GgufValue::Array(GgufType::kUint64, {GgufValue::U64(1ull << 63)})},
      {"a.i64", GgufValue::Array(GgufType::kInt64, {GgufValue::I64(-(1ll << 62))})},
      {"a.f32", GgufValue::F32Array({1.0f, -2.5f, 1e-30f})},
      {"a.f64", GgufValue::Array(GgufType::kFloat64, {GgufValue::F64(1e300)})},
      {"a.bool", GgufValue::Array(GgufType::kBool, {GgufValue::Bool(true), GgufValue::Bool(false)})},
      {"a.str", GgufValue::StringArray({"x", "", "\xe2\x96\x81the"})},
      {"a.empty", GgufValue::Array(GgufType::kUint32, {})},
      {"a.empty_str", GgufValue::StringArray({})},
      {"a.nested", nested(2)},
      {"a.nested_str", GgufValue::Array(GgufType::kArray, {GgufValue::StringArray({"p", "q"}),
                                                           GgufValue::StringArray({})})},
      {"a.deepest", nested(kGgufMaxArrayDepth)},
  };
  GgufWriter w;
  for (const auto& [k, v] : kvs) w.Set(k, v);
  const Bytes bytes = w.Serialize();
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), kvs);
  EXPECT_EQ((*file)->GetStringArray("a.str").value(),
            (std::vector<std::string>{"x", "", "\xe2\x96\x81the"}));
  EXPECT_EQ((*file)->GetFloatArray("a.f32").value(), (std::vector<float>{1.0f, -2.5f, 1e-30f}));
  EXPECT_EQ((*file)->GetIntArray("a.i32").value(), (std::vector<int64_t>{-5, 0, 5}));
  EXPECT_EQ((*file)->GetIntArray("a.u8").value(), (std::vector<int64_t>{0, 255}));
  EXPECT_TRUE((*file)->GetIntArray("a.empty").value().empty());
}

TEST(GgufRoundTripTest, TensorsOfSeveralTypes) {
  struct Case {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    size_t bytes;
  };
  const std::vector<Case> cases = {
      {"f32", {4, 3}, TensorType::kF32, 48},
      {"f16", {5}, TensorType::kF16, 10},
      {"bf16", {2, 2}, TensorType::kBF16, 8},
      {"q8_0", {64, 2}, TensorType::kQ8_0, 4 * 34},
      {"q4_0", {32}, TensorType::kQ4_0, 18},
      {"q4_K", {256, 1, 1}, TensorType::kQ4_K, 144},
      {"i32", {3}, TensorType::kI32, 12},
      {"four_d", {2, 3, 4, 5}, TensorType::kI8, 120},
  };
  GgufWriter w;
  w.Set("general.architecture", GgufValue::String("test"));
  for (size_t c = 0; c < cases.size(); ++c) {
    ASSERT_TRUE(w.AddTensor(cases[c].name, cases[c].dims, cases[c].type,
                            Iota(cases[c].bytes, static_cast<uint8_t>(c * 10)))
                    .ok());
  }
  const Bytes bytes = w.Serialize();
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), cases.size());
  for (size_t c = 0; c < cases.size(); ++c) {
    const GgufTensorInfo& info = (*file)->tensors()[c];
    EXPECT_EQ(info.name, cases[c].name);
    EXPECT_EQ(info.dims, cases[c].dims);
    EXPECT_EQ(info.type, cases[c].type);
    EXPECT_EQ(info.num_bytes, cases[c].bytes);
    EXPECT_EQ(info.offset % 32, 0u);
    uint64_t n = 1;
    for (uint64_t d : cases[c].dims) n *= d;
    EXPECT_EQ(info.num_elements, n);
    const auto data = (*file)->TensorData(info);
    const Bytes expected = Iota(cases[c].bytes, static_cast<uint8_t>(c * 10));
    EXPECT_EQ(Bytes(data.begin(), data.end()), expected) << info.name;
    EXPECT_EQ((*file)->FindTensor(cases[c].name), &info);
  }
  EXPECT_EQ((*file)->FindTensor("nope"), nullptr);
}

TEST(GgufRoundTripTest, CustomAlignment) {
  GgufWriter w;
  w.Set("general.alignment", GgufValue::U32(64));
  ASSERT_TRUE(w.AddTensor("a", {3}, TensorType::kF32, Iota(12)).ok());
  ASSERT_TRUE(w.AddTensor("b", {3}, TensorType::kF32, Iota(12, 77)).ok());
  const Bytes bytes = w.Serialize();
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->alignment(), 64u);
  EXPECT_EQ((*file)->tensors()[1].offset, 64u);
  const auto data = (*file)->TensorData((*file)->tensors()[1]);
  EXPECT_EQ(static_cast<size_t>(data.data() - bytes.data()) % 64, 0u);
  EXPECT_EQ(data[0], 77);
}

TEST(GgufRoundTripTest, ReadsVersion2) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint32_t>(bytes, 4, 2);
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 2u);
}

TEST(GgufRoundTripTest, MetadataOnlyFileNeedsNoPadding) {
  GgufWriter w;
  w.Set("k", GgufValue::U8(1));
  Bytes bytes = w.Serialize();
  const size_t end = 4 + 4 + 8 + 8 + (8 + 1) + 4 + 1;
  EXPECT_EQ(bytes.size(), 64u);
  bytes.resize(end);
  auto file = ParseBytes(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("k").value(), 1u);
}

TEST(GgufGetterTest, IntegerWidthsConvertWhenTheValueFits) {
  GgufWriter w;
  w.Set("u8", GgufValue::U8(200));
  w.Set("i8.neg", GgufValue::I8(-3));
  w.Set("i32.pos", GgufValue::I32(12));
  w.Set("u64.max", GgufValue::U64(std::numeric_limits<uint64_t>::max()));
  w.Set("i64.min", GgufValue::I64(std::numeric_limits<int64_t>::min()));
  w.Set("f32", GgufValue::F32(0.25f));
  w.Set("f64", GgufValue::F64(-2.5));
  w.Set("b", GgufValue::Bool(true));
  w.Set("s", GgufValue::String("text"));
  w.Set("neg.arr", GgufValue::I32Array({1, -1}));
  w.Set("big.arr", GgufValue::Array(GgufType::kUint64, {GgufValue::U64(1ull << 63)}));
  const Bytes bytes = w.Serialize();
  auto parsed = ParseBytes(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const GgufFile& f = **parsed;

  EXPECT_EQ(f.GetUint("u8").value(), 200u);
  EXPECT_EQ(f.GetInt("u8").value(), 200);
  EXPECT_EQ(f.GetInt("i8.neg").value(), -3);
  EXPECT_EQ(f.GetUint("i32.pos").value(), 12u);
  EXPECT_EQ(f.GetUint("u64.max").value(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.GetInt("i64.min").value(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.GetFloat("f32").value(), 0.25);
  EXPECT_EQ(f.GetFloat("f64").value(), -2.5);
  EXPECT_EQ(f.GetBool("b").value(), true);
  EXPECT_EQ(f.GetString("s").value(), "text");
  EXPECT_EQ(f.GetIntArray("neg.arr").value(), (std::vector<int64_t>{1, -1}));

  auto neg = f.GetUint("i8.neg");
  ASSERT_FALSE(neg.ok());
  EXPECT_EQ(neg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("negative"), absl::string_view::npos) << neg.status();
  EXPECT_NE(neg.status().message().find("i8.neg"), absl::string_view::npos);

  auto big = f.GetInt("u64.max");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("does not fit"), absl::string_view::npos) << big.status();
  EXPECT_FALSE(f.GetIntArray("big.arr").ok());

  auto wrong = f.GetString("u8");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("'u8' has type uint8, expected string"),
            absl::string_view::npos)
      << wrong.status();
  EXPECT_FALSE(f.GetUint("s").ok());
  EXPECT_FALSE(f.GetFloat("u8").ok());  // integers are not floats
  EXPECT_FALSE(f.GetBool("u8").ok());
  EXPECT_FALSE(f.GetStringArray("neg.arr").ok());
  EXPECT_FALSE(f.GetFloatArray("neg.arr").ok());
  EXPECT_FALSE(f.GetIntArray("s").ok());
  auto arr_type = f.GetString("neg.arr");
  EXPECT_NE(arr_type.status().message().find("array[int32]"), absl::string_view::npos)
      << arr_type.status();

  auto missing = f.GetUint("missing.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing.key"), absl::string_view::npos);
}

TEST(GgufWriterTest, AddTensorValidates) {
  GgufWriter w;
  EXPECT_FALSE(w.AddTensor("a", {4}, TensorType::kF32, Bytes(15)).ok());  // wrong size
  EXPECT_FALSE(w.AddTensor("a", {4, 0}, TensorType::kF32, Bytes(0)).ok());
  EXPECT_FALSE(w.AddTensor("a", {}, TensorType::kF32, Bytes(4)).ok());
  EXPECT_FALSE(w.AddTensor("a", {1, 1, 1, 1, 1}, TensorType::kF32, Bytes(4)).ok());
  EXPECT_FALSE(w.AddTensor("a", {16}, TensorType::kQ4_0, Bytes(9)).ok());  // half a block
  EXPECT_FALSE(w.AddTensor("a", {4}, static_cast<TensorType>(99), Bytes(4)).ok());
  EXPECT_TRUE(w.AddTensor("a", {4}, TensorType::kF32, Bytes(16)).ok());
  const Status dup = w.AddTensor("a", {4}, TensorType::kF32, Bytes(16));
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("duplicate"), absl::string_view::npos);
}

class GgufFileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gguf_file_test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(GgufFileIoTest, WriteThenOpen) {
  const GgufWriter w = SmallWriter();
  const std::string path = (dir_ / "small.gguf").string();
  ASSERT_TRUE(w.Write(path).ok());
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->name(), path);
  EXPECT_EQ((*file)->GetString("general.architecture").value(), "llama");
  const GgufTensorInfo* t = (*file)->FindTensor("third.weight");
  ASSERT_NE(t, nullptr);
  const auto data = (*file)->TensorData(*t);
  EXPECT_EQ(Bytes(data.begin(), data.end()), Iota(32, 50));
  // Write and Serialize agree, and no temporary file is left behind.
  const Bytes serialized = w.Serialize();
  EXPECT_EQ(std::filesystem::file_size(path), serialized.size());
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(GgufFileIoTest, OpenMissingFileIsNotFound) {
  auto file = GgufFile::Open((dir_ / "absent.gguf").string());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GgufFileIoTest, OpenEmptyFileIsTruncated) {
  const std::string path = (dir_ / "empty.gguf").string();
  { std::ofstream(path).flush(); }
  auto file = GgufFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(file.status().message().find(path), absl::string_view::npos);
  EXPECT_NE(file.status().message().find("truncated"), absl::string_view::npos);
}

TEST_F(GgufFileIoTest, WriteRejectsInvalidAlignment) {
  GgufWriter w;
  w.Set("general.alignment", GgufValue::U32(24));
  const Status s = w.Write((dir_ / "bad.gguf").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "bad.gguf"));
}

TEST_F(GgufFileIoTest, WriteToMissingDirectoryFails) {
  const Status s = SmallWriter().Write((dir_ / "no" / "such" / "x.gguf").string());
  EXPECT_FALSE(s.ok());
}

// --- Malformed input -------------------------------------------------------------------------

TEST(GgufMalformedTest, EveryTruncationFails) {
  const Bytes bytes = SmallWriter().Serialize();
  {
    auto full = ParseBytes(bytes);
    ASSERT_TRUE(full.ok()) << full.status();
    const GgufTensorInfo& last = (*full)->tensors().back();
    const auto data = (*full)->TensorData(last);
    ASSERT_EQ(data.data() + data.size(), bytes.data() + bytes.size()) << "test needs no tail pad";
  }
  for (size_t len = 0; len < bytes.size(); ++len) {
    const Bytes prefix(bytes.begin(), bytes.begin() + len);
    auto r = ParseBytes(prefix);
    ASSERT_FALSE(r.ok()) << "prefix of " << len << " bytes parsed";
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    const std::string msg(r.status().message());
    ASSERT_NE(msg.find(kName), std::string::npos) << msg;
    ASSERT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("out of bounds") != std::string::npos ||
                msg.find("cannot fit") != std::string::npos ||
                msg.find("exceeds") != std::string::npos ||
                msg.find("is impossible") != std::string::npos)
        << "len " << len << ": " << msg;
  }
}

TEST(GgufMalformedTest, BadMagic) {
  Bytes bytes = SmallWriter().Serialize();
  bytes[3] = 'L';
  ExpectRejected(bytes, "bad magic");
  ExpectRejected(Bytes{'g', 'g', 'u', 'f', 3, 0, 0, 0}, "bad magic");
}

TEST(GgufMalformedTest, Version1IsUnsupported) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint32_t>(bytes, 4, 1);
  ExpectRejected(bytes, "unsupported GGUF version 1");
}

TEST(GgufMalformedTest, Version4IsUnsupported) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint32_t>(bytes, 4, 4);
  ExpectRejected(bytes, "unsupported GGUF version 4");
  Poke<uint32_t>(bytes, 4, 0);
  ExpectRejected(bytes, "unsupported GGUF version 0");
}

TEST(GgufMalformedTest, BigEndianIsUnsupported) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint32_t>(bytes, 4, 0x03000000u);
  ExpectRejected(bytes, "big-endian");
}

TEST(GgufMalformedTest, HugeTensorCount) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint64_t>(bytes, 8, uint64_t{1} << 60);
  ExpectRejected(bytes, "tensor_count 1152921504606846976 is impossible");
  Poke<uint64_t>(bytes, 8, std::numeric_limits<uint64_t>::max());
  ExpectRejected(bytes, "is impossible");
}

TEST(GgufMalformedTest, HugeKvCount) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint64_t>(bytes, 16, std::numeric_limits<uint64_t>::max());
  ExpectRejected(bytes, "kv_count 18446744073709551615 is impossible");
}

TEST(GgufMalformedTest, KvCountOneTooMany) {
  Bytes bytes = SmallWriter().Serialize();
  Poke<uint64_t>(bytes, 16, Peek<uint64_t>(bytes, 16) + 1);
  // The tensor infos are read as one more key/value; whatever breaks, it must be an error.
  auto r = ParseBytes(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GgufMalformedTest, HugeArrayLength) {
  Bytes bytes = SmallWriter().Serialize();
  // "words": key, type (4), element type (4), count (8).
  const size_t count_at = Find(bytes, "words") + 5 + 4 + 4;
  ASSERT_EQ(Peek<uint64_t>(bytes, count_at), 3u);
  Poke<uint64_t>(bytes, count_at, uint64_t{1} << 62);
  ExpectRejected(bytes, "array length 4611686018427387904 of key 'words'");
  // A count that passes the per-element minimum but not the actual contents.
  Poke<uint64_t>(bytes, count_at, 4);
  auto r = ParseBytes(bytes);
  EXPECT_FALSE(r.ok());
}

TEST(GgufMalformedTest, HugeFloatArrayLength) {
  Bytes bytes = SmallWriter().Serialize();
  const size_t count_at = Find(bytes, "scores") + 6 + 4 + 4;
  ASSERT_EQ(Peek<uint64_t>(bytes, count_at), 2u);
  Poke<uint64_t>(bytes, count_at, bytes.size() / 4 + 1);
  ExpectRejected(bytes, "cannot fit");
}

TEST(GgufMalformedTest, HugeStringLength) {
  Bytes bytes = SmallWriter().Serialize();
  const size_t len_at = Find(bytes, "llama") - 8;
  ASSERT_EQ(Peek<uint64_t>(bytes, len_at), 5u);
  Poke<uint64_t>(bytes, len_at, std::numeric_limits<uint64_t>::max());
  ExpectRejected(bytes, "string length 18446744073709551615");
  // Key length too.
  Bytes bytes2 = SmallWriter().Serialize();
  Poke<uint64_t>(bytes2, Find(bytes2, "flag") - 8, uint64_t{1} << 40);
  ExpectRejected(bytes2, "string length 1099511627776 of the key of metadata entry 3");
}

TEST(GgufMalformedTest, DuplicateKey) {
  Bytes bytes = SmallWriter().Serialize();
  bytes[Find(bytes, "dup.b") + 4] = 'a';
  ExpectRejected(bytes, "duplicate metadata key 'dup.a'");
}

TEST(GgufMalformedTest, DuplicateTensorName) {
  Bytes bytes = SmallWriter().Serialize();
  const size_t at = Find(bytes, "third.weight");
  const std::string first = "first";
  std::memcpy(bytes.data() + at, "first", 5);
  // "first.weight" is 12 bytes like "third.weight", so the layout is unchanged.
  ExpectRejected(bytes, "duplicate tensor name 'first.weight'");
}

TEST(GgufMalformedTest, NDimsZero) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  ASSERT_EQ(Peek<uint32_t>(bytes, info.n_dims), 1u);
  Poke<uint32_t>(bytes, info.n_dims, 0);
  ExpectRejected(bytes, "tensor 'second.weight' has n_dims 0");
}

TEST(GgufMalformedTest, NDimsFive) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  Poke<uint32_t>(bytes, info.n_dims, 5);
  ExpectRejected(bytes, "tensor 'second.weight' has n_dims 5");
}

TEST(GgufMalformedTest, ZeroDimension) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "first.weight", 2);
  ASSERT_EQ(Peek<uint64_t>(bytes, info.dims + 8), 2u);
  Poke<uint64_t>(bytes, info.dims + 8, 0);
  ExpectRejected(bytes, "tensor 'first.weight' has dimension 1 equal to 0");
}

TEST(GgufMalformedTest, ElementCountOverflow) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "first.weight", 2);
  Poke<uint64_t>(bytes, info.dims, uint64_t{1} << 32);
  Poke<uint64_t>(bytes, info.dims + 8, uint64_t{1} << 32);
  ExpectRejected(bytes, "tensor 'first.weight' element count overflows");
  // Within int64 elements, but the F32 byte size wraps around uint64.
  Poke<uint64_t>(bytes, info.dims, uint64_t{1} << 31);
  Poke<uint64_t>(bytes, info.dims + 8, uint64_t{1} << 31);
  ExpectRejected(bytes, "tensor 'first.weight' byte size overflows");
  // Fits everything but the file.
  Poke<uint64_t>(bytes, info.dims + 8, uint64_t{1} << 20);
  ExpectRejected(bytes, "tensor 'first.weight' data is out of bounds");
}

TEST(GgufMalformedTest, UnknownTensorType) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  ASSERT_EQ(Peek<uint32_t>(bytes, info.type), 1u);
  Poke<uint32_t>(bytes, info.type, 99);
  ExpectRejected(bytes, "tensor 'second.weight' has unknown tensor type 99");
  Poke<uint32_t>(bytes, info.type, 4);  // a hole in the numbering (removed Q4_2)
  ExpectRejected(bytes, "unknown tensor type 4");
}

TEST(GgufMalformedTest, RowNotWholeBlocks) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  Poke<uint32_t>(bytes, info.type, static_cast<uint32_t>(TensorType::kQ8_0));
  ExpectRejected(bytes, "not a multiple of the block size 32");
}

TEST(GgufMalformedTest, MisalignedOffset) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  ASSERT_EQ(Peek<uint64_t>(bytes, info.offset), 32u);
  Poke<uint64_t>(bytes, info.offset, 33);
  ExpectRejected(bytes, "tensor 'second.weight' has offset 33, not aligned");
}

TEST(GgufMalformedTest, TensorOutOfBounds) {
  Bytes bytes = SmallWriter().Serialize();
  const InfoAt info = LocateInfo(bytes, "second.weight", 1);
  Poke<uint64_t>(bytes, info.offset, uint64_t{1} << 20);
  ExpectRejected(bytes, "tensor 'second.weight' data is out of bounds");
  Poke<uint64_t>(bytes, info.offset, std::numeric_limits<uint64_t>::max() & ~uint64_t{31});
  ExpectRejected(bytes, "out of bounds");
  // Just past the end: the last tensor shifted by one alignment unit.
  Bytes bytes2 = SmallWriter().Serialize();
  const InfoAt third = LocateInfo(bytes2, "third.weight", 1);
  Poke<uint64_t>(bytes2, third.offset, Peek<uint64_t>(bytes2, third.offset) + 32);
  ExpectRejected(bytes2, "tensor 'third.weight' data is out of bounds");
}

TEST(GgufMalformedTest, AlignmentWrongType) {
  GgufWriter w = SmallWriter();
  w.Set("general.alignment", GgufValue::U64(32));
  ExpectRejected(w.Serialize(), "'general.alignment' has type uint64; it must be uint32");
  w.Set("general.alignment", GgufValue::String("32"));
  ExpectRejected(w.Serialize(), "'general.alignment' has type string");
}

TEST(GgufMalformedTest, AlignmentNotPowerOfTwo) {
  GgufWriter w = SmallWriter();
  w.Set("general.alignment", GgufValue::U32(48));
  ExpectRejected(w.Serialize(), "'general.alignment' is 48; it must be a nonzero power of two");
  w.Set("general.alignment", GgufValue::U32(0));
  ExpectRejected(w.Serialize(), "'general.alignment' is 0");
}

TEST(GgufMalformedTest, ArraysNestedTooDeep) {
  GgufValue v = GgufValue::I32Array({1});
  for (int d = 1; d <= kGgufMaxArrayDepth; ++d) v = GgufValue::Array(GgufType::kArray, {v});
  GgufWriter w;
  w.Set("deep", v);
  ExpectRejected(w.Serialize(), "arrays nested more than 4 deep in key 'deep'");
}

TEST(GgufMalformedTest, InvalidBool) {
  Bytes bytes = SmallWriter().Serialize();
  const size_t value_at = Find(bytes, "flag") + 4 + 4;
  ASSERT_EQ(bytes[value_at], 1);
  bytes[value_at] = 2;
  ExpectRejected(bytes, "invalid bool value 2");
}

TEST(GgufMalformedTest, UnknownValueType) {
  Bytes bytes = SmallWriter().Serialize();
  const size_t type_at = Find(bytes, "flag") + 4;
  ASSERT_EQ(Peek<uint32_t>(bytes, type_at), static_cast<uint32_t>(GgufType::kBool));
  Poke<uint32_t>(bytes, type_at, 13);
  ExpectRejected(bytes, "unknown value type 13");
  Bytes bytes2 = SmallWriter().Serialize();
  Poke<uint32_t>(bytes2, Find(bytes2, "words") + 5 + 4, 42);
  ExpectRejected(bytes2, "unknown array element type 42");
}

TEST(GgufMalformedTest, DataSectionPastEndOfFile) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("t", {1}, TensorType::kI8, Bytes{9}).ok());
  Bytes bytes = w.Serialize();
  // Cut inside the padding after the tensor infos.
  bytes.resize(4 + 4 + 8 + 8 + (8 + 1) + 4 + 8 + 4 + 8 + 2);
  ExpectRejected(bytes, "the tensor data section starts at offset 64");
}

// --- Real files ------------------------------------------------------------------------------

std::string SharedModel(const std::string& file) {
  return std::string(PREFIXD_SHARED_DIR) + "/models/" + file;
}

TEST(GgufRealFileTest, Stories260K) {
  const std::string path = SharedModel("stories260K.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetString("general.architecture").value(), "llama");
  EXPECT_EQ(f.GetUint("llama.embedding_length").value(), 64u);
  EXPECT_EQ(f.GetUint("llama.block_count").value(), 5u);
  EXPECT_EQ(f.GetStringArray("tokenizer.ggml.tokens").value().size(), 512u);
  const GgufTensorInfo* emb = f.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(emb->type, TensorType::kF32);
  EXPECT_EQ(f.TensorData(*emb).size(), 64u * 512 * 4);
  EXPECT_EQ(f.tensors().size(), 3u + 9u * 5u);
  ASSERT_NE(f.FindTensor("output.weight"), nullptr);
  EXPECT_EQ(f.FindTensor("blk.4.ffn_norm.weight")->dims, (std::vector<uint64_t>{64}));
}

TEST(GgufRealFileTest, LlamaTinyRandom) {
  const std::string path = SharedModel("llama-2-tiny-random.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetString("general.architecture").value(), "llama");
  const uint64_t embd = f.GetUint("llama.embedding_length").value();
  const size_t vocab = f.GetStringArray("tokenizer.ggml.tokens").value().size();
  const GgufTensorInfo* emb = f.FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dims, (std::vector<uint64_t>{embd, vocab}));
  for (const GgufTensorInfo& t : f.tensors()) {
    EXPECT_EQ(f.TensorData(t).size(), t.num_bytes) << t.name;
  }
}

}  // namespace
}  // namespace prefixd
