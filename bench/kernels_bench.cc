// Micro-benchmarks of the CPU kernels on the ~100M model's shapes (n_embd 768, n_ff 2048),
// F16 and then every weight type.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/kernels.h"
#include "compute/cpu/quant_dequant.h"
#include "compute/cpu/quant_int_kquant.h"
#include "model/quantize.h"

namespace prefixd {
namespace {

struct Matrix {
  std::vector<uint16_t> data16;
  std::vector<float> data32;
  Weight w;
};

Matrix MakeMatrix(int64_t rows, int64_t cols, TensorType type) {
  Matrix m;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.02f);
  m.w.type = type;
  m.w.rows = rows;
  m.w.cols = cols;
  if (type == TensorType::kF16) {
    m.data16.resize(rows * cols);
    for (auto& v : m.data16) v = FloatToHalf(d(rng));
    m.w.data = reinterpret_cast<const uint8_t*>(m.data16.data());
    m.w.row_bytes = cols * 2;
  } else {
    m.data32.resize(rows * cols);
    for (auto& v : m.data32) v = d(rng);
    m.w.data = reinterpret_cast<const uint8_t*>(m.data32.data());
    m.w.row_bytes = cols * 4;
  }
  return m;
}

// args: tokens, threads
void BM_MatMulF16_768x2048(benchmark::State& state) {
  const int64_t tokens = state.range(0);
  ThreadPool pool(static_cast<int>(state.range(1)));
  Matrix m = MakeMatrix(2048, 768, TensorType::kF16);
  std::vector<float> x(tokens * 768, 0.5f), y(tokens * 2048);
  for (auto _ : state) {
    cpu::MatMul(m.w, x.data(), tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 2048 * 768 * tokens * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_MatMulF16_768x2048)->Args({1, 1})->Args({1, 2})->Args({512, 1})->Args({512, 2})
    ->UseRealTime();

// The same product over every weight type, quantised with make-model's quantisers.
// args: type (index into kTypes), tokens, threads, integer dot (1: --quant-dot int8, for the
// types that have integer tiles; 0: dequantise + F32, the reference)
constexpr TensorType kTypes[] = {TensorType::kF16,  TensorType::kBF16, TensorType::kQ8_0,
                                 TensorType::kQ4_0, TensorType::kQ4_K, TensorType::kQ5_K,
                                 TensorType::kQ6_K};

void BM_MatMulTyped_768x2048(benchmark::State& state) {
  const TensorType type = kTypes[state.range(0)];
  const int64_t tokens = state.range(1), rows = 2048, cols = 768;
  ThreadPool pool(static_cast<int>(state.range(2)));
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.02f);
  std::vector<float> values(rows * cols);
  for (auto& v : values) v = d(rng);
  std::vector<uint8_t> bytes(*TensorBytes(type, rows * cols));
  QuantizeRow(type, values.data(), rows * cols, bytes.data());
  Weight w;
  w.type = type;
  w.rows = rows;
  w.cols = cols;
  w.data = bytes.data();
  w.row_bytes = static_cast<int64_t>(*TensorBytes(type, cols));
  std::vector<float> x(tokens * cols, 0.5f), y(tokens * rows);
  for (auto _ : state) {
    cpu::MatMul(w, x.data(), tokens, y.data(), pool, nullptr, state.range(3) != 0);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(TensorTypeName(static_cast<uint32_t>(type))) +
                 (state.range(3) != 0 && cpu::UsesIntDot(w) ? " int8" : ""));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * cols * tokens * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_MatMulTyped_768x2048)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {1, 512}, {1}, {0, 1}})
    ->UseRealTime();

// Decode (one token) over K-quant weights, one thread: the integer tile (issue 15, the fastest
// path this CPU runs) against dequantise-then-F32-dot (the fused quant dot where the CPU has
// one, else GetDequantRow + GetDotF32, as MatMul's decode does). GB/s counts weight bytes.
// The activation quantisation (once per token and matrix) is outside the timed loop. Rates are
// per CPU second (the build machine is shared; real time there includes other jobs).
// args: type (0 q4_K, 1 q5_K, 2 q6_K), shape (0: 2048 rows x 768, 1: 8192 rows x 2048),
// method (0 integer tile, 1 dequantise + F32 dot)
void BM_KQuantDecode(benchmark::State& state) {
  constexpr TensorType kKTypes[] = {TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K};
  const TensorType type = kKTypes[state.range(0)];
  const int64_t rows = state.range(1) == 0 ? 2048 : 8192, cols = state.range(1) == 0 ? 768 : 2048;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.02f);
  std::vector<float> values(rows * cols);
  for (auto& v : values) v = d(rng);
  const int64_t row_bytes = static_cast<int64_t>(*TensorBytes(type, cols));
  std::vector<uint8_t> bytes(rows * row_bytes);
  QuantizeRow(type, values.data(), rows * cols, bytes.data());
  std::vector<float> x(cols), y(rows), scratch(cols);
  for (auto& v : x) v = d(rng) * 50;
  std::vector<cpu::Q8x256Block> xq(cols / 256);
  cpu::QuantizeQ8x256Portable(x.data(), cols, xq.data());
  const auto paths = state.range(0) == 0   ? cpu::IntTilePathsQ4K()
                     : state.range(0) == 1 ? cpu::IntTilePathsQ5K()
                                           : cpu::IntTilePathsQ6K();
  const cpu::IntTileFn tile = paths.back().second;
  const cpu::QuantDotFn fused = cpu::GetQuantDot(type);
  const cpu::DequantRowFn deq = cpu::GetDequantRow(type);
  const cpu::DotF32Fn dot = cpu::GetDotF32();
  for (auto _ : state) {
    if (state.range(2) == 0) {
      tile(bytes.data(), row_bytes, static_cast<int>(rows), reinterpret_cast<const uint8_t*>(xq.data()),
           static_cast<int64_t>(xq.size() * sizeof(cpu::Q8x256Block)), 1, cols, y.data(), rows);
    } else {
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = bytes.data() + r * row_bytes;
        if (fused != nullptr) {
          y[r] = fused(row, x.data(), cols);
        } else {
          deq(row, cols, scratch.data());
          y[r] = dot(scratch.data(), x.data(), cols);
        }
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes"] = static_cast<double>(rows * row_bytes);
  state.SetLabel(std::string(TensorTypeName(static_cast<uint32_t>(type))) + " " +
                 (state.range(2) == 0 ? std::string("int ") + paths.back().first
                                      : fused != nullptr ? "fused-f32" : "dequant+f32"));
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(rows * row_bytes) * state.iterations(),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
// With --benchmark_repetitions, "min" is the least contended run (the fairest on a shared machine).
BENCHMARK(BM_KQuantDecode)
    ->ArgsProduct({{0, 1, 2}, {0, 1}, {0, 1}})
    ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });

// Prefill over K-quant weights, one thread, 2048 rows x 768: the integer tile (fastest path)
// against MatMul (dequantised panels into the packed F32 GEMM). Activation quantisation for the
// integer tile is outside the timed loop. args: type (0 q4_K, 2 q6_K), tokens, method (0
// integer tile, 1 MatMul)
void BM_KQuantPrefill(benchmark::State& state) {
  constexpr TensorType kKTypes[] = {TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K};
  const TensorType type = kKTypes[state.range(0)];
  const int64_t rows = 2048, cols = 768, tokens = state.range(1);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 0.02f);
  std::vector<float> values(rows * cols);
  for (auto& v : values) v = d(rng);
  const int64_t row_bytes = static_cast<int64_t>(*TensorBytes(type, cols));
  std::vector<uint8_t> bytes(rows * row_bytes);
  QuantizeRow(type, values.data(), rows * cols, bytes.data());
  std::vector<float> x(tokens * cols), y(tokens * rows);
  for (auto& v : x) v = d(rng) * 50;
  const int64_t nb = cols / 256;
  std::vector<cpu::Q8x256Block> xq(tokens * nb);
  for (int64_t t = 0; t < tokens; ++t) cpu::QuantizeQ8x256Portable(x.data() + t * cols, cols, xq.data() + t * nb);
  const auto paths = state.range(0) == 0 ? cpu::IntTilePathsQ4K() : cpu::IntTilePathsQ6K();
  Weight w;
  w.type = type;
  w.rows = rows;
  w.cols = cols;
  w.data = bytes.data();
  w.row_bytes = row_bytes;
  ThreadPool pool(1);
  for (auto _ : state) {
    if (state.range(2) == 0) {
      paths.back().second(bytes.data(), row_bytes, static_cast<int>(rows),
                          reinterpret_cast<const uint8_t*>(xq.data()),
                          static_cast<int64_t>(nb * sizeof(cpu::Q8x256Block)), static_cast<int>(tokens),
                          cols, y.data(), rows);
    } else {
      cpu::MatMul(w, x.data(), tokens, y.data(), pool);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(TensorTypeName(static_cast<uint32_t>(type))) + " " +
                 (state.range(2) == 0 ? std::string("int ") + paths.back().first : "MatMul"));
  state.counters["GOP/s"] = benchmark::Counter(2.0 * rows * cols * tokens * state.iterations(),
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_KQuantPrefill)->ArgsProduct({{0, 2}, {64}, {0, 1}});

}  // namespace
}  // namespace prefixd
