// The engine's logits against an independent, straightforward forward pass: double
// precision, plain loops, no paging, no SIMD, hyper-parameters and weights read from the GGUF
// with the reader alone (not through Model). It pins what each architecture adds to llama:
// qwen2's Q/K/V biases and NeoX RoPE, qwen3's per-head Q/K norms and independent head size,
// Llama 3.1's RoPE frequency divisors, qwen3moe's routed experts (softmax over the experts,
// top-k, weights normalised to sum 1, only the chosen experts' SwiGLU FFNs), qwen35's gated
// DeltaNet layers (causal convolution, L2-normed Q/K, the gated delta rule over a
// head_dim x head_dim state per V head, gated RMS norm) and gated attention layers (Q/K norms,
// partial RoPE, sigmoid output gate), written from the formulas in llama.cpp's qwen35.cpp and
// delta-net-base.cpp.
//
// Metric, per position: max_j |engine_j - ref_j| / max_j |ref_j| over the vocabulary, at most
// 1e-4. F32 weights and F32 KV, so the only differences are float-vs-double rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "engine/engine.h"
#include "engine/test_models.h"
#include "model/gguf_file.h"

namespace prefixd {
namespace {

using Vec = std::vector<double>;

// What the reference may leave out, for the negative controls.
enum class Drop { kNothing, kBiases, kQkNorms, kRopeFactors, kTopkNorm, kConvolution };

// A matrix or vector of the GGUF as doubles, row-major: rows() rows of cols() each.
struct Tensor {
  std::vector<double> v;
  int64_t cols = 0;
  bool present = false;
  int64_t rows() const { return cols ? static_cast<int64_t>(v.size()) / cols : 0; }
  const double* Row(int64_t r) const { return v.data() + r * cols; }
};

Tensor Read(const GgufFile& f, const std::string& name) {
  Tensor t;
  const GgufTensorInfo* info = f.FindTensor(name);
  if (info == nullptr) return t;
  t.present = true;
  t.cols = static_cast<int64_t>(info->dims[0]);
  auto bytes = f.TensorData(*info);
  const size_t n = info->num_elements;
  t.v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (info->type == TensorType::kF32) {
      float x;
      std::memcpy(&x, bytes.data() + 4 * i, 4);
      t.v[i] = x;
    } else {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      t.v[i] = HalfToFloat(h);
    }
  }
  return t;
}

Vec MatVec(const Tensor& w, const Vec& x) {
  Vec y(w.rows(), 0.0);
  for (int64_t r = 0; r < w.rows(); ++r) {
    for (int64_t c = 0; c < w.cols; ++c) y[r] += w.Row(r)[c] * x[c];
  }
  return y;
}

// RMS norm of x[off, off + n) in place, times weight.
void RmsNorm(Vec& x, size_t off, size_t n, const Tensor& weight, double eps) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double scale = 1.0 / std::sqrt(ss / n + eps);
  for (size_t i = 0; i < n; ++i) x[off + i] = x[off + i] * scale * weight.v[i];
}

class Reference {
 public:
  explicit Reference(const GgufFile& f) : f_(f) {
    arch_ = *f.GetString("general.architecture");
    embd_ = Uint("embedding_length");
    layers_ = Uint("block_count");
    heads_ = Uint("attention.head_count");
    kv_heads_ = Uint("attention.head_count_kv");
    head_dim_ =
        f.Find(arch_ + ".attention.key_length") ? Uint("attention.key_length") : embd_ / heads_;
    rope_dims_ = Uint("rope.dimension_count");
    base_ = *f.GetFloat(arch_ + ".rope.freq_base");
    eps_ = *f.GetFloat(arch_ + ".attention.layer_norm_rms_epsilon");
    neox_ = arch_ != "llama";
    if (f.Find(arch_ + ".expert_count")) {
      experts_ = Uint("expert_count");
      experts_used_ = Uint("expert_used_count");
    }
    rope_freqs_ = Read(f, "rope_freqs.weight");
    if (f.Find(arch_ + ".ssm.conv_kernel")) ReadHybrid();
  }

  // Logits of every position of `tokens`, computed from scratch, leaving out `drop` (the
  // negative controls showing that the metric notices a missing piece).
  std::vector<Vec> Logits(const std::vector<int32_t>& tokens, Drop drop = Drop::kNothing) const {
    const Tensor embd = Read(f_, "token_embd.weight");
    const size_t n = tokens.size();
    std::vector<Vec> x(n);
    for (size_t t = 0; t < n; ++t) x[t].assign(embd.Row(tokens[t]), embd.Row(tokens[t]) + embd_);
    for (int l = 0; l < layers_; ++l) Layer(l, drop, x);
    const Tensor norm = Read(f_, "output_norm.weight");
    Tensor out = Read(f_, "output.weight");
    if (!out.present) out = embd;
    std::vector<Vec> logits;
    for (size_t t = 0; t < n; ++t) {
      Vec h = x[t];
      RmsNorm(h, 0, embd_, norm, eps_);
      logits.push_back(MatVec(out, h));
    }
    return logits;
  }

 private:
  int Uint(const std::string& key) const {
    return static_cast<int>(*f_.GetUint(arch_ + "." + key));
  }

  // qwen35: DeltaNet sizes, which layers are DeltaNet (every layer but each
  // full_attention_interval-th), MTP layers left out, and the RoPE pairs of M-RoPE's fourth
  // section (position 0 for text: not rotated).
  void ReadHybrid() {
    conv_kernel_ = Uint("ssm.conv_kernel");
    delta_hd_ = Uint("ssm.state_size");
    delta_hk_ = Uint("ssm.group_count");
    delta_hv_ = Uint("ssm.time_step_rank");
    if (f_.Find(arch_ + ".nextn_predict_layers")) layers_ -= Uint("nextn_predict_layers");
    const int interval =
        f_.Find(arch_ + ".full_attention_interval") ? Uint("full_attention_interval") : 4;
    for (int l = 0; l < layers_; ++l) recurrent_.push_back((l + 1) % interval != 0);
    const std::vector<int64_t> sec = *f_.GetIntArray(arch_ + ".rope.dimension_sections");
    const int64_t total = sec[0] + sec[1] + sec[2] + sec[3];
    for (int i = 0; i < rope_dims_ / 2; ++i) {
      const int64_t s = i % total;
      const bool t = s % 3 == 0 && s < 3 * sec[0], h = s % 3 == 1 && s < 3 * sec[1],
                 w = s % 3 == 2 && s < 3 * sec[2];
      rope_static_.push_back(!(t || h || w));
    }
  }
  bool IsRecurrent(int l) const { return !recurrent_.empty() && recurrent_[l]; }
  Tensor Blk(int l, const std::string& name) const {
    return Read(f_, "blk." + std::to_string(l) + "." + name);
  }

  void Rope(double* head, int64_t pos, Drop drop) const {
    const int half = rope_dims_ / 2;
    for (int i = 0; i < half; ++i) {
      if (!rope_static_.empty() && rope_static_[i]) continue;
      double theta = pos * std::pow(base_, -2.0 * i / rope_dims_);
      if (rope_freqs_.present && drop != Drop::kRopeFactors) theta /= rope_freqs_.v[i];
      const int a = neox_ ? i : 2 * i, b = neox_ ? i + half : 2 * i + 1;
      const double x0 = head[a], x1 = head[b];
      head[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      head[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
  }

  void Layer(int l, Drop drop, std::vector<Vec>& x) const {
    const size_t n = x.size();
    std::vector<Vec> h(n);
    for (size_t t = 0; t < n; ++t) {
      h[t] = x[t];
      RmsNorm(h[t], 0, embd_, Blk(l, "attn_norm.weight"), eps_);
    }
    const std::vector<Vec> mixed = IsRecurrent(l) ? DeltaNet(l, drop, h) : Attention(l, drop, h);
    const Tensor ffn_norm = recurrent_.empty() ? Blk(l, "ffn_norm.weight")
                                               : Blk(l, "post_attention_norm.weight");
    for (size_t t = 0; t < n; ++t) {
      for (int i = 0; i < embd_; ++i) x[t][i] += mixed[t][i];
      Vec hf = x[t];
      RmsNorm(hf, 0, embd_, ffn_norm, eps_);
      const Vec d = FfnOrExperts(l, drop, hf);
      for (int i = 0; i < embd_; ++i) x[t][i] += d[i];
    }
  }

  // Causal attention over the normed inputs h. qwen35: the Q projection's rows per head are
  // [Q | gate], and the output is multiplied by sigmoid(gate) before attn_output.
  std::vector<Vec> Attention(int l, Drop drop, const std::vector<Vec>& h) const {
    const size_t n = h.size();
    const Tensor wq = Blk(l, "attn_q.weight"), wk = Blk(l, "attn_k.weight"),
                 wv = Blk(l, "attn_v.weight"), wo = Blk(l, "attn_output.weight");
    const Tensor bq = Blk(l, "attn_q.bias"), bk = Blk(l, "attn_k.bias"), bv = Blk(l, "attn_v.bias");
    const Tensor qn = Blk(l, "attn_q_norm.weight"), kn = Blk(l, "attn_k_norm.weight");
    const bool gated = !recurrent_.empty();
    std::vector<Vec> q(n), k(n), v(n), gate(n);
    for (size_t t = 0; t < n; ++t) {
      q[t] = MatVec(wq, h[t]);
      k[t] = MatVec(wk, h[t]);
      v[t] = MatVec(wv, h[t]);
      if (gated) {
        const Vec qg = q[t];
        q[t].assign(heads_ * head_dim_, 0.0);
        gate[t].assign(heads_ * head_dim_, 0.0);
        for (int hh = 0; hh < heads_; ++hh) {
          for (int d = 0; d < head_dim_; ++d) {
            q[t][hh * head_dim_ + d] = qg[2 * hh * head_dim_ + d];
            gate[t][hh * head_dim_ + d] = qg[2 * hh * head_dim_ + head_dim_ + d];
          }
        }
      }
      if (bq.present && drop != Drop::kBiases) {
        for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += bq.v[i];
        for (size_t i = 0; i < k[t].size(); ++i) k[t][i] += bk.v[i];
        for (size_t i = 0; i < v[t].size(); ++i) v[t][i] += bv.v[i];
      }
      for (int hh = 0; hh < heads_; ++hh) {
        if (qn.present && drop != Drop::kQkNorms) {
          RmsNorm(q[t], hh * head_dim_, head_dim_, qn, eps_);
        }
        Rope(&q[t][hh * head_dim_], static_cast<int64_t>(t), drop);
      }
      for (int hh = 0; hh < kv_heads_; ++hh) {
        if (kn.present && drop != Drop::kQkNorms) {
          RmsNorm(k[t], hh * head_dim_, head_dim_, kn, eps_);
        }
        Rope(&k[t][hh * head_dim_], static_cast<int64_t>(t), drop);
      }
    }
    std::vector<Vec> out(n);
    for (size_t t = 0; t < n; ++t) {
      Vec attn(heads_ * head_dim_, 0.0);
      for (int hh = 0; hh < heads_; ++hh) {
        const int kvh = hh / (heads_ / kv_heads_);
        std::vector<double> p(t + 1);
        double max_s = -1e300, sum = 0;
        for (size_t j = 0; j <= t; ++j) {
          double s = 0;
          for (int d = 0; d < head_dim_; ++d) {
            s += q[t][hh * head_dim_ + d] * k[j][kvh * head_dim_ + d];
          }
          p[j] = s / std::sqrt(static_cast<double>(head_dim_));
          max_s = std::max(max_s, p[j]);
        }
        for (double& s : p) sum += (s = std::exp(s - max_s));
        for (size_t j = 0; j <= t; ++j) {
          for (int d = 0; d < head_dim_; ++d) {
            attn[hh * head_dim_ + d] += p[j] / sum * v[j][kvh * head_dim_ + d];
          }
        }
      }
      if (gated) {
        for (size_t i = 0; i < attn.size(); ++i) attn[i] *= 1.0 / (1.0 + std::exp(-gate[t][i]));
      }
      out[t] = MatVec(wo, attn);
    }
    return out;
  }

  // A gated DeltaNet layer over the normed inputs h, from a zero state (see the file comment
  // of compute/cpu/delta_net.h for the formulas). kConvolution keeps only the newest tap.
  std::vector<Vec> DeltaNet(int l, Drop drop, const std::vector<Vec>& h) const {
    const size_t n = h.size();
    const Tensor qkv = Blk(l, "attn_qkv.weight"), z = Blk(l, "attn_gate.weight"),
                 conv = Blk(l, "ssm_conv1d.weight"), dt = Blk(l, "ssm_dt.bias"),
                 a = Blk(l, "ssm_a"), beta = Blk(l, "ssm_beta.weight"),
                 alpha = Blk(l, "ssm_alpha.weight"), norm = Blk(l, "ssm_norm.weight"),
                 out = Blk(l, "ssm_out.weight");
    const int hd = delta_hd_, key_dim = delta_hd_ * delta_hk_;
    std::vector<Vec> mixed(n), c(n);
    for (size_t t = 0; t < n; ++t) mixed[t] = MatVec(qkv, h[t]);
    const int64_t channels = qkv.rows();
    for (size_t t = 0; t < n; ++t) {
      c[t].assign(channels, 0.0);
      for (int64_t ch = 0; ch < channels; ++ch) {
        double sum = 0;
        for (int j = drop == Drop::kConvolution ? conv_kernel_ - 1 : 0; j < conv_kernel_; ++j) {
          const int64_t src = static_cast<int64_t>(t) - (conv_kernel_ - 1) + j;
          if (src >= 0) sum += conv.Row(ch)[j] * mixed[src][ch];
        }
        c[t][ch] = sum / (1 + std::exp(-sum));
      }
    }
    std::vector<Vec> state(delta_hv_, Vec(hd * hd, 0.0));  // [i * hd + j]: key i, value j
    std::vector<Vec> y(n);
    for (size_t t = 0; t < n; ++t) {
      Vec qk = c[t];
      for (int hh = 0; hh < 2 * delta_hk_; ++hh) {
        double ss = 0;
        for (int i = 0; i < hd; ++i) ss += qk[hh * hd + i] * qk[hh * hd + i];
        for (int i = 0; i < hd; ++i) qk[hh * hd + i] /= std::sqrt(ss + eps_);
      }
      const Vec bt = MatVec(beta, h[t]), al = MatVec(alpha, h[t]), zt = MatVec(z, h[t]);
      Vec gated(delta_hd_ * delta_hv_);
      for (int hh = 0; hh < delta_hv_; ++hh) {
        const double* q = &qk[(hh % delta_hk_) * hd];
        const double* k = q + key_dim;
        const double* v = &c[t][2 * key_dim + hh * hd];
        const double b = 1 / (1 + std::exp(-bt[hh]));
        const double decay = std::exp(std::log1p(std::exp(al[hh] + dt.v[hh])) * a.v[hh]);
        Vec& S = state[hh];
        for (double& s : S) s *= decay;
        Vec o(hd, 0.0);
        for (int j = 0; j < hd; ++j) {
          double sk = 0;
          for (int i = 0; i < hd; ++i) sk += S[i * hd + j] * k[i];
          const double d = b * (v[j] - sk);
          for (int i = 0; i < hd; ++i) S[i * hd + j] += k[i] * d;
        }
        for (int j = 0; j < hd; ++j) {
          for (int i = 0; i < hd; ++i) o[j] += S[i * hd + j] * q[i];
          o[j] /= std::sqrt(static_cast<double>(hd));
        }
        RmsNorm(o, 0, hd, norm, eps_);
        for (int j = 0; j < hd; ++j) {
          const double zz = zt[hh * hd + j];
          gated[hh * hd + j] = o[j] * zz / (1 + std::exp(-zz));
        }
      }
      y[t] = MatVec(out, gated);
    }
    return y;
  }

  // The layer's FFN for one normed token: dense, or the routed experts.
  Vec FfnOrExperts(int l, Drop drop, const Vec& h) const {
    const Tensor gate = Blk(l, "ffn_gate.weight"), up = Blk(l, "ffn_up.weight"),
                 down = Blk(l, "ffn_down.weight");
    if (experts_ == 0) return Ffn(gate, up, down, 0, h);
    const Tensor router = Blk(l, "ffn_gate_inp.weight"), gate_exps = Blk(l, "ffn_gate_exps.weight"),
                 up_exps = Blk(l, "ffn_up_exps.weight"), down_exps = Blk(l, "ffn_down_exps.weight");
    // Softmax over the experts, the top k, their probabilities normalised to sum 1.
    Vec p = MatVec(router, h);
    const double max_logit = *std::max_element(p.begin(), p.end());
    double sum = 0;
    for (double& z : p) sum += (z = std::exp(z - max_logit));
    std::vector<int> chosen;
    double picked = 0;
    for (int j = 0; j < experts_used_; ++j) {
      int best = -1;
      for (int e = 0; e < experts_; ++e) {
        if (std::find(chosen.begin(), chosen.end(), e) != chosen.end()) continue;
        if (best < 0 || p[e] > p[best]) best = e;
      }
      chosen.push_back(best);
      picked += p[best];
    }
    Vec out(embd_, 0.0);
    for (int e : chosen) {
      const Vec d = Ffn(gate_exps, up_exps, down_exps, e, h);
      const double weight = drop == Drop::kTopkNorm ? p[e] / sum : p[e] / picked;
      for (int i = 0; i < embd_; ++i) out[i] += weight * d[i];
    }
    return out;
  }

  // The SwiGLU FFN of expert `e` (0 for a dense FFN): rows [e * R, (e + 1) * R) of each
  // matrix, R its rows per expert.
  Vec Ffn(const Tensor& gate, const Tensor& up, const Tensor& down, int e, const Vec& h) const {
    const int n = std::max(experts_, 1);
    const int64_t ff = gate.rows() / n;
    Vec g(ff), u(ff), d(embd_, 0.0);
    for (int64_t r = 0; r < ff; ++r) {
      const double *gr = gate.Row(e * ff + r), *ur = up.Row(e * ff + r);
      double a = 0, b = 0;
      for (int64_t c = 0; c < gate.cols; ++c) {
        a += gr[c] * h[c];
        b += ur[c] * h[c];
      }
      g[r] = a / (1 + std::exp(-a)) * b;
    }
    for (int r = 0; r < embd_; ++r) {
      const double* dr = down.Row(e * embd_ + r);
      for (int64_t c = 0; c < ff; ++c) d[r] += dr[c] * g[c];
    }
    return d;
  }

  const GgufFile& f_;
  std::string arch_;
  int experts_ = 0, experts_used_ = 0;
  int conv_kernel_ = 0, delta_hd_ = 0, delta_hk_ = 0, delta_hv_ = 0;  // qwen35 only
  std::vector<bool> recurrent_, rope_static_;                         // qwen35 only
  int embd_, layers_, heads_, kv_heads_, head_dim_, rope_dims_;
  double base_, eps_;
  bool neox_;
  Tensor rope_freqs_;
};

// Logits of every prompt position from the engine (F32 KV, prefill chunks of 16).
std::vector<float> EngineLogits(const Model& model, const std::vector<int32_t>& tokens) {
  EngineOptions eo;
  eo.kv_dtype = KvDtype::kF32;
  eo.max_chunk_tokens = 16;
  eo.context_length = 128;
  auto engine = Engine::Create(model, -1, eo);
  EXPECT_TRUE(engine.ok()) << engine.status();
  GenerateRequest req;
  req.prompt = tokens;
  req.max_tokens = 1;
  req.record_logits = true;
  auto id = (*engine)->Add(req);
  EXPECT_TRUE(id.ok()) << id.status();
  while ((*engine)->HasWork()) EXPECT_TRUE((*engine)->Step().ok());
  auto seq = (*engine)->TakeFinished(*id);
  EXPECT_NE(seq, nullptr);
  return seq->logits;
}

// The largest per-position error, max_j |a_j - ref_j| / max_j |ref_j|.
double MaxRelativeError(const std::vector<float>& engine, const std::vector<Vec>& ref) {
  double worst = 0;
  const size_t vocab = ref[0].size();
  for (size_t t = 0; t < ref.size(); ++t) {
    double diff = 0, scale = 0;
    for (size_t j = 0; j < vocab; ++j) {
      diff = std::max(diff, std::abs(engine[t * vocab + j] - ref[t][j]));
      scale = std::max(scale, std::abs(ref[t][j]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

ModelSpec ReferenceSpec(const std::string& arch) {
  ModelSpec spec = SmallArchSpec(arch);
  spec.embd = 128;  // 4 heads of 32 (qwen3: of 64), 2 KV heads
  spec.ff = 256;
  if (arch == "qwen3" || arch == "qwen3moe") spec.head_dim = 64;
  // qwen35 keeps its small heads (32): 3 DeltaNet layers then attention, as SmallArchSpec.
  if (arch == "llama3") spec.rope_original_ctx = 32;  // divisors matter within 40 positions
  return spec;
}

std::vector<int32_t> Prompt() {
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(40);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % 320);
  return tokens;
}

class ArchitectureReference : public ::testing::TestWithParam<const char*> {};

TEST_P(ArchitectureReference, EngineLogitsMatchADoublePrecisionForwardPass) {
  const std::string arch = GetParam();
  auto model = MakeTestModel(ReferenceSpec(arch), "ref-" + arch);
  const std::vector<int32_t> tokens = Prompt();
  const std::vector<float> got = EngineLogits(*model, tokens);
  ASSERT_EQ(got.size(), tokens.size() * 320);
  const Reference ref(model->gguf());
  const double err = MaxRelativeError(got, ref.Logits(tokens));
  EXPECT_LE(err, 1e-4) << arch;
  std::printf("%s: max relative error %.3g\n", arch.c_str(), err);
  // Negative control: without the architecture's own piece the reference is far off, so the
  // bound above would catch a forward pass that ignored it.
  const Drop piece = arch == "qwen2"    ? Drop::kBiases
                     : arch == "qwen3"  ? Drop::kQkNorms
                     : arch == "llama3" ? Drop::kRopeFactors
                     : arch == "qwen3moe" ? Drop::kTopkNorm
                     : arch == "qwen35"   ? Drop::kConvolution
                                          : Drop::kNothing;
  if (piece != Drop::kNothing) {
    const double without = MaxRelativeError(got, ref.Logits(tokens, piece));
    std::printf("%s: without its own piece %.3g\n", arch.c_str(), without);
    EXPECT_GT(without, 1e-2) << arch;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ArchitectureReference,
                         ::testing::Values("qwen2", "qwen3", "qwen3moe", "qwen35", "llama3",
                                           "llama"));

}  // namespace
}  // namespace prefixd
