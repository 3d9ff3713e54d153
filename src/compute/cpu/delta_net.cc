#include "compute/cpu/delta_net.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/check.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/kernels.h"

namespace prefixd::cpu {

namespace {

float Sigmoid(float x) { return 1.0f / (1.0f + ExpPoly(-x)); }

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
  // The taps transposed (tap j of every channel side by side), so that one token's convolution
  // runs across channels in vector registers.
  std::vector<float> tap(k), taps_t(k * channels);
  for (int64_t c = 0; c < channels; ++c) {
    RowToFloat(taps, c, tap.data());
    for (int j = 0; j < k; ++j) taps_t[j * channels + c] = tap[j];
  }
  // Work items are (run, chunk of channels): each walks its run's tokens in order, so a
  // channel's window is the state's k - 1 inputs followed by the tokens, as if the sequence had
  // never been cut. Per channel the sum is the taps in order, oldest input first, from 0
  // (ggml_ssm_conv's order), each product rounded before its sum: the bits of a scalar loop.
  constexpr int64_t kChunk = 64;
  const int64_t chunks = (channels + kChunk - 1) / kChunk;
  pool.ParallelFor(static_cast<int64_t>(runs.size()) * chunks, [&](int64_t b, int64_t e, int) {
    std::vector<float> history((k - 1) * kChunk);
    std::vector<const float*> window(k);
    for (int64_t item = b; item < e; ++item) {
      const DeltaNetRun& run = runs[item / chunks];
      const int64_t c0 = (item % chunks) * kChunk, w = std::min(kChunk, channels - c0);
      float* state = run.conv_state + c0 * (k - 1);  // channel c's k - 1 inputs, oldest first
      for (int j = 0; j < k - 1; ++j) {
        for (int64_t c = 0; c < w; ++c) history[j * kChunk + c] = state[c * (k - 1) + j];
        window[j] = &history[j * kChunk];
      }
      // The last k - 1 inputs as a state (rows of `history`, or mixed_'s token rows).
      const auto save = [&](float* to) {
        for (int j = 0; j < k - 1; ++j) {
          for (int64_t c = 0; c < w; ++c) to[c * (k - 1) + j] = window[j][c];
        }
      };
      size_t capture = 0;
      for (int64_t t = 0; t < run.count; ++t) {
        const int64_t g = run.first + t;
        window[k - 1] = &mixed_[g * channels + c0];
        float* out = &conv_[g * channels + c0];
        std::fill(out, out + w, 0.0f);
        for (int j = 0; j < k; ++j) AddProductRow(out, window[j], &taps_t[j * channels + c0], w);
        Silu(out, w);
        for (int j = 0; j + 1 < k; ++j) window[j] = window[j + 1];
        if (capture < run.captures.size() && run.captures[capture].after == t + 1) {
          save(run.captures[capture++].conv_state + c0 * (k - 1));
        }
      }
      save(state);
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
    for (int64_t item = b; item < e; ++item) {
      const DeltaNetRun& run = runs[item / hv];
      const int h = static_cast<int>(item % hv);
      const int kh = h % s.num_k_heads;
      float* state = run.ssm_state + int64_t{h} * hd * hd;
      size_t capture = 0;
      for (int64_t t = 0; t < run.count; ++t) {
        const int64_t g = run.first + t;
        const float* q = &conv_[g * channels + int64_t{kh} * hd];
        const float* k = q + key_dim;
        const float* v = &conv_[g * channels + 2 * key_dim + int64_t{h} * hd];
        const float decay = alpha_[g * hv + h], beta = beta_[g * hv + h];
        float* o = &o_[g * s.value_dim() + int64_t{h} * hd];
        // Row j of the state (value channel j) depends on no other row: decay it, read its
        // error against v, correct it and read the output from it while it is in L1 (one pass
        // over the head's state per token, not four). Same operations per element as four
        // passes would do, so the same bits.
        for (int j = 0; j < hd; ++j) {
          float* row = state + int64_t{j} * hd;
          ScaleRow(row, decay, hd);
          const float delta = (v[j] - dot(row, k, hd)) * beta;
          AddScaledRow(row, k, delta, hd);
          o[j] = dot(row, q, hd) * scale;
        }
        if (capture < run.captures.size() && run.captures[capture].after == t + 1) {
          std::copy(state, state + int64_t{hd} * hd,
                    run.captures[capture++].ssm_state + int64_t{h} * hd * hd);
        }
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
      SwiGlu(&z_[i * hd], normed.data(), hd);  // SiLU(z) * normed
    }
  });
}

}  // namespace prefixd::cpu
