// What the CPU can do, detected once at run time (never assumed at build time).
#pragma once

namespace prefixd {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;
};

// Detected on first call; PREFIXD_CPU=generic in the environment forces the portable paths
// (for tests that compare them with the vector ones), PREFIXD_CPU=avx2 hides AVX-512 (what an
// AVX2-only core such as Zen 3 runs, measured on a CPU that has more).
const CpuFeatures& GetCpuFeatures();

}  // namespace prefixd
