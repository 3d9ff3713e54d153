// Micro-benchmarks of the CPU kernels on the ~100M model's shapes (n_embd 768, n_ff 2048),
// F16 and then every weight type.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "compute/cpu/kernels.h"
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
// args: type (index into kTypes), tokens, threads
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
    cpu::MatMul(w, x.data(), tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(TensorTypeName(static_cast<uint32_t>(type)));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * cols * tokens * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_MatMulTyped_768x2048)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {1, 512}, {1}})
    ->UseRealTime();

}  // namespace
}  // namespace prefixd
