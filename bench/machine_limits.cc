// What this machine's cores can do at most, the ceilings the kernels are judged against:
// F32 FMA (AVX-512, or AVX2 without it) and BF16 dot-product throughput (12 independent
// chains per thread) and the
// read bandwidth of a buffer far larger than the caches, on 4 KiB and on 2 MiB pages.
//
//   build/bench/machine_limits [threads=2]
//
// Prints one line per figure. Skips (saying so) what the CPU lacks.
#include <immintrin.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "base/cpu_features.h"

namespace {

using MonoClock = std::chrono::steady_clock;

template <typename Fn>
double TimeThreads(int threads, Fn fn) {
  const auto start = MonoClock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&fn, t] { fn(t); });
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(MonoClock::now() - start).count();
}

volatile float g_sink;

__attribute__((target("avx512f,fma"))) void FmaChains(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) a[k] = _mm512_fmadd_ps(a[k], b, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  g_sink = _mm512_reduce_add_ps(s);
}

// The same on AVX2 (8 lanes, 12 chains: Zen 3's two FMA pipes need 8 in flight).
__attribute__((target("avx2,fma"))) void FmaChainsAvx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) a[k] = _mm256_fmadd_ps(a[k], b, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  g_sink = lanes[0] + lanes[7];
}

__attribute__((target("avx512f,avx512bf16"))) void Bf16Chains(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3a80);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) a[k] = _mm512_dpbf16_ps(a[k], b, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  g_sink = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2"))) float SumFloatsAvx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return lanes[0] + lanes[7];
}

__attribute__((target("avx512f"))) float SumFloats(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

void ReadBandwidth(int threads, bool huge) {
  const size_t bytes = size_t{1} << 30;  // far past the 32 MiB L3
  void* raw = std::aligned_alloc(size_t{2} << 20, bytes);
  if (raw == nullptr) {
    std::printf("read bandwidth: skipped (no 1 GiB to allocate)\n");
    return;
  }
  ::madvise(raw, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  // Distinct contents per page: nothing for the hypervisor to merge.
  uint32_t* words = static_cast<uint32_t*>(raw);
  for (size_t i = 0; i < bytes / 4; ++i) words[i] = 0x3f800000u ^ static_cast<uint32_t>(i & 0xffff);
  const float* p = static_cast<const float*>(raw);
  const size_t per = bytes / sizeof(float) / threads;
  for (int rep = 0; rep < 3; ++rep) {
    const double s = TimeThreads(threads, [&](int t) {
      float sum = 0;
      for (int pass = 0; pass < 2; ++pass) {
        sum += prefixd::GetCpuFeatures().avx512f ? SumFloats(p + t * per, per)
                                                 : SumFloatsAvx2(p + t * per, per);
        // The compiler may not merge the passes into one call: memory may have changed.
        asm volatile("" ::: "memory");
      }
      g_sink = sum;
    });
    std::printf("read bandwidth, %d threads, %s pages: %.1f GB/s\n", threads,
                huge ? "2 MiB" : "4 KiB", 2.0 * bytes / s / 1e9);
  }
  std::free(raw);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const prefixd::CpuFeatures& f = prefixd::GetCpuFeatures();
  const int64_t iters = 200'000'000;
  if (f.avx512f && f.fma) {
    const double s = TimeThreads(threads, [&](int) { FmaChains(iters); });
    std::printf("F32 FMA (vfmadd231ps zmm), %d threads: %.1f GFLOP/s\n", threads,
                threads * iters * 12.0 * 32 / s / 1e9);
  } else if (f.avx2 && f.fma) {
    const double s = TimeThreads(threads, [&](int) { FmaChainsAvx2(iters); });
    std::printf("F32 FMA (vfmadd231ps ymm), %d threads: %.1f GFLOP/s\n", threads,
                threads * iters * 12.0 * 16 / s / 1e9);
  } else {
    std::printf("F32 FMA: skipped (no AVX-512F or AVX2/FMA)\n");
  }
  if (f.avx512f && f.avx512bf16) {
    const double s = TimeThreads(threads, [&](int) { Bf16Chains(iters); });
    std::printf("BF16 dot (vdpbf16ps zmm), %d threads: %.1f GFLOP/s\n", threads,
                threads * iters * 12.0 * 64 / s / 1e9);
  } else {
    std::printf("BF16 dot: skipped (no AVX512_BF16)\n");
  }
  if (f.avx512f || f.avx2) {
    ReadBandwidth(threads, /*huge=*/false);
    ReadBandwidth(threads, /*huge=*/true);
  }
  return 0;
}
