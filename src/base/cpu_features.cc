#include "base/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace prefixd {

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
    const char* force = std::getenv("PREFIXD_CPU");
    if (force != nullptr && std::strcmp(force, "generic") == 0) return f;
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = f.avx2;  // every AVX2 CPU has F16C; gcc 12 cannot query f16c directly
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    f.avx512vnni = __builtin_cpu_supports("avx512vnni");
    if (force != nullptr && std::strcmp(force, "avx2") == 0) {
      // What an AVX2-only core (Zen 3) runs, on a CPU that has more: for tests and benchmarks.
      f.avx512f = f.avx512bw = f.avx512vl = f.avx512bf16 = f.avx512vnni = false;
    }
    return f;
  }();
  return features;
}

}  // namespace prefixd
