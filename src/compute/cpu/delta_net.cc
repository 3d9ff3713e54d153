#include "compute/cpu/delta_net.h"

#include <cmath>

#include "base/check.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/kernels.h"

namespace prefixd::cpu {

namespace {

float Sigmoid(float x) { return 1.0f / (1.0f + ExpPoly(-x)); }
float Silu(float x) { return x / (1.0f + ExpPoly(-x)); }

// x / sqrt(sum of squares + eps), in place (llama.cpp: rms_norm(x, eps / n) / sqrt(n)). The
// sum in double, in order, as RmsNorm's.
void L2Normalize(float* x, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float scale = static_cast<float>(1.0 / std::sqrt(sum + eps));
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * scale;
}

// exp(softplus(alpha + dt) * a): llama.cpp's gate, exponentiated. libm in double, rounded to
// float: one scalar routine on every path, so the bits do not depend on the instruction set
// the rest of the kernel takes.
float Decay(float alpha, float dt, float a) {
  const float x = alpha + dt;
  const float softplus = x > 20.0f ? x : static_cast<float>(std::log1p(std::exp(double{x})));
  return static_cast<float>(std::exp(double{softplus * a}));
}

}  // namespace

void DeltaNet::Run(const DeltaNetWeights& w, const float* x, int64_t n,
                   std::span<const DeltaNetRun> runs, float* out, ThreadPool& pool, bool int_dot) {
  const DeltaNetShape& s = shape_;
  PREFIXD_CHECK(w.qkv.w->rows == s.conv_dim() && w.out.w->cols == s.value_dim(),
                "DeltaNet weights do not fit the layer's shape");
  if (n <= 0) return;
  mixed_.resize(n * s.conv_dim());
  conv_.resize(n * s.conv_dim());
  z_.resize(n * s.value_dim());
  beta_.resize(n * s.num_v_heads);
  alpha_.resize(n * s.num_v_heads);
  o_.resize(n * s.value_dim());
  const MatMulProduct products[] = {{w.qkv.w, mixed_.data(), w.qkv.packed},
                                    {w.z.w, z_.data(), w.z.packed},
                                    {w.beta.w, beta_.data(), w.beta.packed},
                                    {w.alpha.w, alpha_.data(), w.alpha.packed}};
  MatMulShared(products, x, n, pool, int_dot);
  Convolve(*w.conv, runs, pool);
  PrepareHeads(w, n, pool);
  Recur(runs, pool);
  GateOutput(*w.norm, n, pool);
  MatMul(*w.out.w, z_.data(), n, out, pool, w.out.packed, int_dot);
}

void DeltaNet::Convolve(const Weight& taps, std::span<const DeltaNetRun> runs, ThreadPool& pool) {
  const int64_t channels = shape_.conv_dim();
  const int k = shape_.conv_kernel;
  // Work items are (run, channel): each walks its run's tokens in order, so a channel's window
  // is the state's k - 1 inputs followed by the tokens, as if the sequence had never been cut.
  pool.ParallelFor(static_cast<int64_t>(runs.size()) * channels, [&](int64_t b, int64_t e, int) {
    std::vector<float> tap(k), window(k);
    for (int64_t item = b; item < e; ++item) {
      const DeltaNetRun& run = runs[item / channels];
      const int64_t c = item % channels;
      RowToFloat(taps, c, tap.data());
      float* state = run.conv_state + c * (k - 1);
      for (int j = 0; j < k - 1; ++j) window[j] = state[j];
      for (int64_t t = 0; t < run.count; ++t) {
        const int64_t g = run.first + t;
        window[k - 1] = mixed_[g * channels + c];
        float sum = 0.0f;  // taps in order, oldest input first (ggml_ssm_conv's order)
        for (int j = 0; j < k; ++j) sum += window[j] * tap[j];
        conv_[g * channels + c] = Silu(sum);
        for (int j = 0; j + 1 < k; ++j) window[j] = window[j + 1];
      }
      for (int j = 0; j < k - 1; ++j) state[j] = window[j];
    }
  });
}

void DeltaNet::PrepareHeads(const DeltaNetWeights& w, int64_t n, ThreadPool& pool) {
  const DeltaNetShape& s = shape_;
  const int hv = s.num_v_heads, hd = s.head_dim;
  std::vector<float> dt(hv), a(hv);
  RowToFloat(*w.dt, 0, dt.data());
  RowToFloat(*w.a, 0, a.data());
  pool.ParallelFor(n, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      float* qk = &conv_[g * s.conv_dim()];  // Q heads, then K heads
      for (int h = 0; h < 2 * s.num_k_heads; ++h) L2Normalize(qk + int64_t{h} * hd, hd, eps_);
      for (int h = 0; h < hv; ++h) {
        beta_[g * hv + h] = Sigmoid(beta_[g * hv + h]);
        alpha_[g * hv + h] = Decay(alpha_[g * hv + h], dt[h], a[h]);  // now the decay
      }
    }
  });
}

void DeltaNet::Recur(std::span<const DeltaNetRun> runs, ThreadPool& pool) {
  const DeltaNetShape& s = shape_;
  const int hv = s.num_v_heads, hd = s.head_dim;
  const int64_t channels = s.conv_dim(), key_dim = s.key_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const DotF32Fn dot = GetDotF32();
  pool.ParallelFor(static_cast<int64_t>(runs.size()) * hv, [&](int64_t b, int64_t e, int) {
    std::vector<float> delta(hd);
    for (int64_t item = b; item < e; ++item) {
      const DeltaNetRun& run = runs[item / hv];
      const int h = static_cast<int>(item % hv);
      const int kh = h % s.num_k_heads;
      float* state = run.ssm_state + int64_t{h} * hd * hd;
      for (int64_t t = 0; t < run.count; ++t) {
        const int64_t g = run.first + t;
        const float* q = &conv_[g * channels + int64_t{kh} * hd];
        const float* k = q + key_dim;
        const float* v = &conv_[g * channels + 2 * key_dim + int64_t{h} * hd];
        const float decay = alpha_[g * hv + h], beta = beta_[g * hv + h];
        for (int64_t i = 0; i < int64_t{hd} * hd; ++i) state[i] = state[i] * decay;
        for (int j = 0; j < hd; ++j) delta[j] = (v[j] - dot(state + int64_t{j} * hd, k, hd)) * beta;
        for (int j = 0; j < hd; ++j) {
          float* row = state + int64_t{j} * hd;
          for (int i = 0; i < hd; ++i) row[i] = row[i] + k[i] * delta[j];
        }
        float* o = &o_[g * s.value_dim() + int64_t{h} * hd];
        for (int j = 0; j < hd; ++j) o[j] = dot(state + int64_t{j} * hd, q, hd) * scale;
      }
    }
  });
}

void DeltaNet::GateOutput(const Weight& norm, int64_t n, ThreadPool& pool) {
  const int hd = shape_.head_dim;
  const int64_t heads = n * shape_.num_v_heads;
  pool.ParallelFor(heads, [&](int64_t b, int64_t e, int) {
    std::vector<float> normed(hd);
    for (int64_t i = b; i < e; ++i) {
      RmsNorm(&o_[i * hd], norm, hd, eps_, normed.data());
      float* z = &z_[i * hd];
      for (int j = 0; j < hd; ++j) z[j] = Silu(z[j]) * normed[j];
    }
  });
}

}  // namespace prefixd::cpu
