#include "model/llama_model.h"

#include <algorithm>
#include <cmath>

#include <xxhash.h>

namespace prefixd {

namespace {

// What each supported architecture adds to the llama forward pass (see llama_model.h).
struct ArchSpec {
  const char* name;
  RopeStyle rope_style;
  bool qkv_bias_required;  // qwen2 always has them
  bool qkv_bias_allowed;   // llama may have them (some fine-tunes), qwen3 never
  bool qk_norm;
  bool moe;     // a mixture of experts in place of the dense FFN
  bool hybrid;  // gated DeltaNet layers between gated attention layers (qwen35)
};

constexpr ArchSpec kArchitectures[] = {
    {"llama", RopeStyle::kNormal, false, true, false, false, false},
    {"qwen2", RopeStyle::kNeox, true, true, false, false, false},
    {"qwen3", RopeStyle::kNeox, false, false, true, false, false},
    {"qwen3moe", RopeStyle::kNeox, false, false, true, true, false},
    {"qwen35", RopeStyle::kNeox, false, false, true, false, true},
};

const ArchSpec* FindArch(const std::string& name) {
  for (const ArchSpec& a : kArchitectures) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

// The matrix types the CPU backend computes with (compute/cpu/quant_dequant.h).
constexpr TensorType kMatrixTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                       TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1,
                                       TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ4_K,
                                       TensorType::kQ5_K, TensorType::kQ6_K};

bool IsSupportedWeightType(TensorType t) {
  for (TensorType m : kMatrixTypes) {
    if (t == m) return true;
  }
  return false;
}

std::string SupportedWeightTypes() {
  std::string s;
  for (TensorType m : kMatrixTypes) {
    absl::StrAppend(&s, s.empty() ? "" : ", ", TensorTypeName(static_cast<uint32_t>(m)));
  }
  return s;
}

class Loader {
 public:
  Loader(const GgufFile& file, const std::string& arch) : file_(file), arch_(arch) {}

  Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("model '", file_.name(), "': ", what));
  }

  // `{arch}.key` as a positive int; `fallback` (when >= 0) if absent.
  StatusOr<int32_t> Int(const std::string& key, int64_t fallback = -1) const {
    const std::string full = arch_ + "." + key;
    auto v = file_.GetUint(full);
    if (!v.ok()) {
      if (absl::IsNotFound(v.status()) && fallback >= 0) return static_cast<int32_t>(fallback);
      if (absl::IsNotFound(v.status())) return Error(absl::StrCat("missing metadata key ", full));
      return Error(std::string(v.status().message()));
    }
    if (*v == 0 || *v > (1u << 30)) return Error(absl::StrCat(full, " = ", *v, " is out of range"));
    return static_cast<int32_t>(*v);
  }

  StatusOr<float> Float(const std::string& key, float fallback) const {
    const std::string full = arch_ + "." + key;
    auto v = file_.GetFloat(full);
    if (absl::IsNotFound(v.status())) return fallback;
    if (!v.ok()) return Error(std::string(v.status().message()));
    if (!std::isfinite(*v) || *v <= 0) return Error(absl::StrCat(full, " = ", *v, " is out of range"));
    return static_cast<float>(*v);
  }

  // The tensor `name` with exactly dims {cols, rows} (rows == 0: a 1-D tensor of `cols`), or
  // {cols, rows, experts} when `experts` > 0 (held as a matrix of experts * rows rows).
  StatusOr<Weight> Tensor(const std::string& name, int64_t cols, int64_t rows, bool matrix,
                          int64_t experts = 0) const {
    const GgufTensorInfo* info = file_.FindTensor(name);
    if (info == nullptr) return Error(absl::StrCat("missing tensor ", name));
    std::vector<uint64_t> want = {static_cast<uint64_t>(cols)};
    if (rows > 0) want.push_back(static_cast<uint64_t>(rows));
    if (experts > 0) want.push_back(static_cast<uint64_t>(experts));
    if (info->dims != want) {
      return Error(absl::StrCat("tensor ", name, " has shape ", ShapeString(info->dims),
                                " but the hyper-parameters need ", ShapeString(want)));
    }
    const bool ok_type = matrix ? IsSupportedWeightType(info->type)
                                : (info->type == TensorType::kF32 || info->type == TensorType::kF16);
    if (!ok_type) {
      return Error(absl::StrCat("tensor ", name, " has weight type ",
                                TensorTypeName(static_cast<uint32_t>(info->type)),
                                ", which this build cannot compute with (supported: ",
                                matrix ? SupportedWeightTypes() : "f32, f16",
                                matrix ? "" : " for norm weights", ")"));
    }
    // The reader checks this for every tensor; repeated here because the kernels rely on it.
    const int64_t block = GetTensorTypeTraits(static_cast<uint32_t>(info->type))->block_elements;
    if (cols % block != 0) {
      return Error(absl::StrCat("tensor ", name, " of type ",
                                TensorTypeName(static_cast<uint32_t>(info->type)), " has rows of ",
                                cols, " elements, not a multiple of the type's block of ", block));
    }
    Weight w;
    w.name = name;
    w.type = info->type;
    w.cols = cols;
    w.rows = (rows > 0 ? rows : 1) * (experts > 0 ? experts : 1);
    w.data = file_.TensorData(*info).data();
    w.row_bytes = static_cast<int64_t>(info->num_bytes / w.rows);
    return w;
  }

 private:
  static std::string ShapeString(const std::vector<uint64_t>& dims) {
    std::string s = "{";
    for (size_t i = 0; i < dims.size(); ++i) absl::StrAppend(&s, i ? ", " : "", dims[i]);
    return s + "}";
  }
  const GgufFile& file_;
  std::string arch_;
};


// RoPE frequency scaling from `{arch}.rope.scaling.*`, read the way llama.cpp reads it: the
// factor (or the older rope.scale_linear) divides every frequency; a missing or zero factor
// means none. YaRN and LongRoPE also change the attention scale and per-dimension mixing,
// which this build does not implement, so they are refused rather than run wrongly.
Status ReadRopeScaling(const GgufFile& file, const std::string& arch, const Loader& l,
                       Hparams* hp) {
  const std::string type_key = arch + ".rope.scaling.type";
  auto type = file.GetString(type_key);
  if (type.ok() && *type != "none" && *type != "linear") {
    return l.Error(absl::StrCat(type_key, " = '", *type,
                                "' is not supported; supported: none, linear, and Llama 3 ",
                                "frequency factors (rope_freqs.weight)"));
  }
  if (!type.ok() && !absl::IsNotFound(type.status())) {
    return l.Error(std::string(type.status().message()));
  }
  if (type.ok() && *type == "none") return absl::OkStatus();
  double factor = 0;
  for (const char* key : {".rope.scaling.factor", ".rope.scale_linear"}) {
    auto v = file.GetFloat(arch + key);
    if (v.ok()) {
      factor = *v;
      if (!std::isfinite(factor) || factor < 0) {
        return l.Error(absl::StrCat(arch, key, " = ", factor, " is out of range"));
      }
      break;
    }
    if (!absl::IsNotFound(v.status())) return l.Error(std::string(v.status().message()));
  }
  hp->rope_freq_scale = factor == 0 ? 1.0f : static_cast<float>(1.0 / factor);
  return absl::OkStatus();
}

// `{arch}.key` as a count that may be 0 (absent: `fallback`).
StatusOr<int32_t> CountOr(const GgufFile& file, const std::string& key, int32_t fallback,
                          const Loader& l) {
  auto v = file.GetUint(key);
  if (absl::IsNotFound(v.status())) return fallback;
  if (!v.ok()) return l.Error(std::string(v.status().message()));
  if (*v > (1u << 30)) return l.Error(absl::StrCat(key, " = ", *v, " is out of range"));
  return static_cast<int32_t>(*v);
}

// Which layers are DeltaNet layers: `attention.recurrent_layers` (one bool or integer per
// block, MTP blocks included) when present, else every layer but each
// `full_attention_interval`-th (default 4), as llama.cpp decides it.
Status ReadLayerPattern(const GgufFile& file, const std::string& arch, const Loader& l,
                        int32_t num_blocks, Hparams* hp) {
  hp->recurrent.assign(hp->num_layers, false);
  const std::string list_key = arch + ".attention.recurrent_layers";
  if (const GgufValue* v = file.Find(list_key); v != nullptr) {
    const GgufType e = v->elem_type;
    const bool flags = e != GgufType::kString && e != GgufType::kArray &&
                       e != GgufType::kFloat32 && e != GgufType::kFloat64;
    if (v->type != GgufType::kArray || !flags ||
        v->array.size() != static_cast<size_t>(num_blocks)) {
      return l.Error(absl::StrCat(list_key, " must be an array of ", num_blocks,
                                  " booleans (one per block)"));
    }
    for (int i = 0; i < hp->num_layers; ++i) {
      const GgufValue& e = v->array[i];
      hp->recurrent[i] = e.u != 0 || e.i != 0;
    }
  } else {
    ASSIGN_OR_RETURN(const int32_t interval, l.Int("full_attention_interval", 4));
    for (int i = 0; i < hp->num_layers; ++i) hp->recurrent[i] = (i + 1) % interval != 0;
  }
  if (hp->num_attention_layers() == 0) {
    return l.Error("no layer is a full-attention layer; prefixd needs at least one (its KV "
                   "pool holds attention K/V): lower full_attention_interval");
  }
  return absl::OkStatus();
}

// The pairs of RoPE dims that interleaved M-RoPE (llama.cpp's IMROPE) rotates with the fourth
// position, which is 0 for text: pair i has sector s = i % sum(sections) and takes the
// height/width/time position (all equal to the token's) when s % 3 is 1, 2, 0 and
// s < 3 * sections[1], 3 * sections[2], 3 * sections[0]; otherwise the fourth.
Status ReadRopeSections(const GgufFile& file, const std::string& arch, const Loader& l,
                        Hparams* hp) {
  const std::string key = arch + ".rope.dimension_sections";
  auto sections = file.GetIntArray(key);
  if (!sections.ok()) {
    return l.Error(absl::StrCat(absl::IsNotFound(sections.status()) ? "missing metadata key "
                                                                     : "bad metadata key ",
                                key, " (the M-RoPE sections, e.g. [11, 11, 10, 0])"));
  }
  std::array<int64_t, 4> s = {0, 0, 0, 0};
  int64_t total = 0;
  for (size_t i = 0; i < sections->size() && i < 4; ++i) {
    if ((*sections)[i] < 0) return l.Error(absl::StrCat(key, " has a negative section"));
    s[i] = (*sections)[i];
    total += s[i];
  }
  if (total == 0 || total > hp->head_dim) {
    return l.Error(absl::StrCat(key, " sums to ", total, "; it must be in [1, head size ",
                                hp->head_dim, "]"));
  }
  const int half = hp->rope_dims / 2;
  hp->rope_pair_static.assign(half, false);
  bool any = false;
  for (int i = 0; i < half; ++i) {
    const int64_t sector = i % total;
    const bool positional = (sector % 3 == 1 && sector < 3 * s[1]) ||
                            (sector % 3 == 2 && sector < 3 * s[2]) ||
                            (sector % 3 == 0 && sector < 3 * s[0]);
    hp->rope_pair_static[i] = !positional;
    any = any || !positional;
  }
  if (!any) hp->rope_pair_static.clear();
  return absl::OkStatus();
}

// qwen35's DeltaNet sizes, layer pattern and RoPE sections.
Status ReadHybridHparams(const GgufFile& file, const std::string& arch, const Loader& l,
                         int32_t num_blocks, Hparams* hp) {
  DeltaNetShape& d = hp->delta_net;
  ASSIGN_OR_RETURN(d.conv_kernel, l.Int("ssm.conv_kernel"));
  ASSIGN_OR_RETURN(d.head_dim, l.Int("ssm.state_size"));
  ASSIGN_OR_RETURN(d.num_k_heads, l.Int("ssm.group_count"));
  ASSIGN_OR_RETURN(d.num_v_heads, l.Int("ssm.time_step_rank"));
  ASSIGN_OR_RETURN(const int32_t inner, l.Int("ssm.inner_size"));
  if (d.conv_kernel < 2) return l.Error("ssm.conv_kernel must be at least 2");
  if (d.num_v_heads % d.num_k_heads != 0) {
    return l.Error(absl::StrCat("ssm.time_step_rank (V heads, ", d.num_v_heads,
                                ") is not a multiple of ssm.group_count (K heads, ",
                                d.num_k_heads, ")"));
  }
  if (inner != d.value_dim()) {
    return l.Error(absl::StrCat("ssm.inner_size ", inner, " != ssm.state_size ", d.head_dim,
                                " * ssm.time_step_rank ", d.num_v_heads,
                                " (the DeltaNet state needs square heads)"));
  }
  RETURN_IF_ERROR(ReadLayerPattern(file, arch, l, num_blocks, hp));
  RETURN_IF_ERROR(ReadRopeSections(file, arch, l, hp));
  hp->attn_output_gate = true;
  hp->kv_slices_per_token = false;
  return absl::OkStatus();
}

StatusOr<Hparams> ReadHparams(const GgufFile& file, const ArchSpec& arch, const Loader& l) {
  Hparams hp;
  hp.arch = arch.name;
  hp.rope_style = arch.rope_style;
  hp.qk_norm = arch.qk_norm;
  ASSIGN_OR_RETURN(hp.embd, l.Int("embedding_length"));
  ASSIGN_OR_RETURN(hp.num_layers, l.Int("block_count"));
  const int32_t num_blocks = hp.num_layers;
  if (arch.hybrid) {
    // Multi-token-prediction blocks come last; the forward pass does not run them.
    ASSIGN_OR_RETURN(const int32_t nextn,
                     CountOr(file, absl::StrCat(arch.name, ".nextn_predict_layers"), 0, l));
    if (nextn >= num_blocks) {
      return l.Error(absl::StrCat("nextn_predict_layers ", nextn, " leaves none of the ",
                                  num_blocks, " blocks for the model itself"));
    }
    hp.num_layers = num_blocks - nextn;
  }
  ASSIGN_OR_RETURN(hp.num_heads, l.Int("attention.head_count"));
  ASSIGN_OR_RETURN(hp.num_kv_heads, l.Int("attention.head_count_kv", hp.num_heads));
  // A mixture of experts needs feed_forward_length only as the experts' default width.
  ASSIGN_OR_RETURN(hp.ff, l.Int("feed_forward_length", arch.moe ? 0 : -1));
  if (arch.moe) {
    ASSIGN_OR_RETURN(hp.num_experts, l.Int("expert_count"));
    ASSIGN_OR_RETURN(hp.num_experts_used, l.Int("expert_used_count"));
    if (hp.num_experts_used > hp.num_experts) {
      return l.Error(absl::StrCat("expert_used_count ", hp.num_experts_used,
                                  " exceeds expert_count ", hp.num_experts));
    }
    ASSIGN_OR_RETURN(hp.expert_ff,
                     l.Int("expert_feed_forward_length", hp.ff / hp.num_experts_used));
    if (hp.expert_ff == 0) {
      return l.Error(absl::StrCat("missing metadata key ", arch.name,
                                  ".expert_feed_forward_length (and no feed_forward_length)"));
    }
  }
  ASSIGN_OR_RETURN(hp.context_length, l.Int("context_length", 2048));
  // The head size is n_embd / n_head unless the file says otherwise (qwen3: 128 with n_embd
  // 1024 and 16 heads), so only a file without key_length needs the division to be exact.
  const bool has_key_length =
      file.Find(absl::StrCat(arch.name, ".attention.key_length")) != nullptr;
  if (!has_key_length && hp.embd % hp.num_heads != 0) {
    return l.Error(
        "embedding_length is not a multiple of head_count and attention.key_length is absent");
  }
  ASSIGN_OR_RETURN(hp.head_dim, l.Int("attention.key_length", hp.embd / std::max(1, hp.num_heads)));
  ASSIGN_OR_RETURN(int32_t value_len, l.Int("attention.value_length", hp.head_dim));
  if (value_len != hp.head_dim) return l.Error("attention.value_length differs from key_length");
  if (hp.num_heads % hp.num_kv_heads != 0) return l.Error("head_count is not a multiple of head_count_kv");
  ASSIGN_OR_RETURN(hp.rope_dims, l.Int("rope.dimension_count", hp.head_dim));
  if (hp.rope_dims > hp.head_dim || hp.rope_dims % 2 != 0) {
    return l.Error("rope.dimension_count must be even and at most the head dimension");
  }
  ASSIGN_OR_RETURN(hp.rope_freq_base, l.Float("rope.freq_base", 10000.0f));
  RETURN_IF_ERROR(ReadRopeScaling(file, arch.name, l, &hp));
  ASSIGN_OR_RETURN(hp.rms_eps, l.Float("attention.layer_norm_rms_epsilon", 1e-5f));
  if (arch.hybrid) RETURN_IF_ERROR(ReadHybridHparams(file, arch.name, l, num_blocks, &hp));
  return hp;
}

// Llama 3.1+ files carry RoPE scaling as rope_freqs.weight: one divisor per frequency,
// computed by the converter from rope_scaling (factor, low/high_freq_factor,
// original_max_position_embeddings); no metadata key describes it.
Status LoadRopeFreqs(const GgufFile& file, const Loader& l, Hparams* hp, ModelWeights* w) {
  if (file.FindTensor("rope_freqs.weight") == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(w->rope_freqs, l.Tensor("rope_freqs.weight", hp->rope_dims / 2, 0, false));
  if (w->rope_freqs.type != TensorType::kF32) {
    return l.Error("rope_freqs.weight must be f32");
  }
  const float* f = reinterpret_cast<const float*>(w->rope_freqs.data);
  for (int i = 0; i < hp->rope_dims / 2; ++i) {
    if (!std::isfinite(f[i]) || !(f[i] > 0)) {
      return l.Error(absl::StrCat("rope_freqs.weight[", i, "] = ", f[i],
                                  " is not a positive frequency divisor"));
    }
  }
  hp->rope_freq_factors = true;
  return absl::OkStatus();
}

// A qwen35 DeltaNet layer's own tensors (LayerWeights' ssm_*).
Status LoadDeltaNet(const std::string& p, const Hparams& h, const Loader& l, LayerWeights* lw) {
  const DeltaNetShape& d = h.delta_net;
  ASSIGN_OR_RETURN(lw->ssm_qkv, l.Tensor(p + "attn_qkv.weight", h.embd, d.conv_dim(), true));
  ASSIGN_OR_RETURN(lw->ssm_z, l.Tensor(p + "attn_gate.weight", h.embd, d.value_dim(), true));
  ASSIGN_OR_RETURN(lw->ssm_beta, l.Tensor(p + "ssm_beta.weight", h.embd, d.num_v_heads, true));
  ASSIGN_OR_RETURN(lw->ssm_alpha, l.Tensor(p + "ssm_alpha.weight", h.embd, d.num_v_heads, true));
  ASSIGN_OR_RETURN(lw->ssm_conv1d,
                   l.Tensor(p + "ssm_conv1d.weight", d.conv_kernel, d.conv_dim(), false));
  ASSIGN_OR_RETURN(lw->ssm_dt, l.Tensor(p + "ssm_dt.bias", d.num_v_heads, 0, false));
  ASSIGN_OR_RETURN(lw->ssm_a, l.Tensor(p + "ssm_a", d.num_v_heads, 0, false));
  ASSIGN_OR_RETURN(lw->ssm_norm, l.Tensor(p + "ssm_norm.weight", d.head_dim, 0, false));
  ASSIGN_OR_RETURN(lw->ssm_out, l.Tensor(p + "ssm_out.weight", d.value_dim(), h.embd, true));
  return absl::OkStatus();
}

// A qwen35 layer: attention norm, then DeltaNet or gated attention (Q projection of 2 * q_dim
// rows, Q/K norms), then post_attention_norm and the dense FFN.
StatusOr<LayerWeights> LoadHybridLayer(const Loader& l, int i, const Hparams& h) {
  LayerWeights lw;
  const std::string p = absl::StrCat("blk.", i, ".");
  ASSIGN_OR_RETURN(lw.attn_norm, l.Tensor(p + "attn_norm.weight", h.embd, 0, false));
  if (h.IsRecurrent(i)) {
    RETURN_IF_ERROR(LoadDeltaNet(p, h, l, &lw));
  } else {
    ASSIGN_OR_RETURN(lw.wq, l.Tensor(p + "attn_q.weight", h.embd, 2 * h.q_dim(), true));
    ASSIGN_OR_RETURN(lw.wk, l.Tensor(p + "attn_k.weight", h.embd, h.kv_dim(), true));
    ASSIGN_OR_RETURN(lw.wv, l.Tensor(p + "attn_v.weight", h.embd, h.kv_dim(), true));
    ASSIGN_OR_RETURN(lw.wo, l.Tensor(p + "attn_output.weight", h.q_dim(), h.embd, true));
    ASSIGN_OR_RETURN(lw.q_norm, l.Tensor(p + "attn_q_norm.weight", h.head_dim, 0, false));
    ASSIGN_OR_RETURN(lw.k_norm, l.Tensor(p + "attn_k_norm.weight", h.head_dim, 0, false));
  }
  ASSIGN_OR_RETURN(lw.ffn_norm, l.Tensor(p + "post_attention_norm.weight", h.embd, 0, false));
  ASSIGN_OR_RETURN(lw.ffn_gate, l.Tensor(p + "ffn_gate.weight", h.embd, h.ff, true));
  ASSIGN_OR_RETURN(lw.ffn_up, l.Tensor(p + "ffn_up.weight", h.embd, h.ff, true));
  ASSIGN_OR_RETURN(lw.ffn_down, l.Tensor(p + "ffn_down.weight", h.ff, h.embd, true));
  return lw;
}

StatusOr<LayerWeights> LoadLayer(const GgufFile& file, const ArchSpec& arch, const Loader& l,
                                 int i, Hparams* hp) {
  if (arch.hybrid) return LoadHybridLayer(l, i, *hp);
  const Hparams& h = *hp;
  LayerWeights lw;
  const std::string p = absl::StrCat("blk.", i, ".");
  ASSIGN_OR_RETURN(lw.attn_norm, l.Tensor(p + "attn_norm.weight", h.embd, 0, false));
  ASSIGN_OR_RETURN(lw.wq, l.Tensor(p + "attn_q.weight", h.embd, h.q_dim(), true));
  ASSIGN_OR_RETURN(lw.wk, l.Tensor(p + "attn_k.weight", h.embd, h.kv_dim(), true));
  ASSIGN_OR_RETURN(lw.wv, l.Tensor(p + "attn_v.weight", h.embd, h.kv_dim(), true));
  ASSIGN_OR_RETURN(lw.wo, l.Tensor(p + "attn_output.weight", h.q_dim(), h.embd, true));
  // Biases come as a set: the first layer decides whether the model has them, every other
  // layer must agree (a half-biased model would be silently wrong).
  const bool has_bias = file.FindTensor(p + "attn_q.bias") != nullptr;
  if (i == 0) hp->qkv_bias = has_bias;
  if (has_bias && !arch.qkv_bias_allowed) {
    return l.Error(
        absl::StrCat("tensor ", p, "attn_q.bias is not part of architecture ", arch.name));
  }
  if (arch.qkv_bias_required || h.qkv_bias) {
    ASSIGN_OR_RETURN(lw.bq, l.Tensor(p + "attn_q.bias", h.q_dim(), 0, false));
    ASSIGN_OR_RETURN(lw.bk, l.Tensor(p + "attn_k.bias", h.kv_dim(), 0, false));
    ASSIGN_OR_RETURN(lw.bv, l.Tensor(p + "attn_v.bias", h.kv_dim(), 0, false));
  } else if (has_bias) {
    return l.Error(absl::StrCat("tensor ", p, "attn_q.bias is present but blk.0 has no biases"));
  }
  if (h.qk_norm) {
    ASSIGN_OR_RETURN(lw.q_norm, l.Tensor(p + "attn_q_norm.weight", h.head_dim, 0, false));
    ASSIGN_OR_RETURN(lw.k_norm, l.Tensor(p + "attn_k_norm.weight", h.head_dim, 0, false));
  }
  ASSIGN_OR_RETURN(lw.ffn_norm, l.Tensor(p + "ffn_norm.weight", h.embd, 0, false));
  if (arch.moe) {
    const int64_t e = h.num_experts;
    ASSIGN_OR_RETURN(lw.ffn_gate_inp, l.Tensor(p + "ffn_gate_inp.weight", h.embd, e, true));
    ASSIGN_OR_RETURN(lw.ffn_gate_exps,
                     l.Tensor(p + "ffn_gate_exps.weight", h.embd, h.expert_ff, true, e));
    ASSIGN_OR_RETURN(lw.ffn_up_exps,
                     l.Tensor(p + "ffn_up_exps.weight", h.embd, h.expert_ff, true, e));
    ASSIGN_OR_RETURN(lw.ffn_down_exps,
                     l.Tensor(p + "ffn_down_exps.weight", h.expert_ff, h.embd, true, e));
    return lw;
  }
  ASSIGN_OR_RETURN(lw.ffn_gate, l.Tensor(p + "ffn_gate.weight", h.embd, h.ff, true));
  ASSIGN_OR_RETURN(lw.ffn_up, l.Tensor(p + "ffn_up.weight", h.embd, h.ff, true));
  ASSIGN_OR_RETURN(lw.ffn_down, l.Tensor(p + "ffn_down.weight", h.ff, h.embd, true));
  return lw;
}

// XXH3-128 over every tensor's name and bytes. Reading every tensor once also pages the
// weights in, so the progress bar shows the real cost of loading.
std::array<uint64_t, 2> DigestTensors(const GgufFile& file, const Model::ProgressFn& progress,
                                      int64_t* num_params) {
  int64_t params = 0;
  size_t done = 0;
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  for (const auto& t : file.tensors()) {
    params += static_cast<int64_t>(t.num_elements);
    XXH3_128bits_update(state, t.name.data(), t.name.size());
    auto bytes = file.TensorData(t);
    XXH3_128bits_update(state, bytes.data(), bytes.size());
    if (progress) progress(++done, file.tensors().size());
  }
  const XXH128_hash_t digest = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  *num_params = params;
  return {digest.low64, digest.high64};
}

}  // namespace

Weight ExpertSlice(const Weight& w, int64_t num_experts, int64_t e) {
  Weight s = w;
  s.rows = w.rows / num_experts;
  s.data = w.data + e * s.rows * w.row_bytes;
  return s;
}

std::string SupportedArchitectures() {
  std::string s;
  for (const ArchSpec& a : kArchitectures) absl::StrAppend(&s, s.empty() ? "" : ", ", a.name);
  return s;
}

StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path, const ProgressFn& progress,
                                             Residence residence) {
  ASSIGN_OR_RETURN(auto file, GgufFile::Open(path, residence));
  return FromGguf(std::move(file), progress);
}

StatusOr<std::unique_ptr<Model>> Model::FromGguf(std::unique_ptr<GgufFile> file,
                                                 const ProgressFn& progress) {
  auto arch_name = file->GetString("general.architecture");
  if (!arch_name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model '", file->name(),
                                                   "': no general.architecture string: ",
                                                   arch_name.status().message()));
  }
  const ArchSpec* arch = FindArch(*arch_name);
  if (arch == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture '", *arch_name,
                                                   "' in ", file->name(),
                                                   "; supported: ", SupportedArchitectures()));
  }
  Loader l(*file, *arch_name);
  ASSIGN_OR_RETURN(Hparams hp, ReadHparams(*file, *arch, l));

  const GgufTensorInfo* embd_info = file->FindTensor("token_embd.weight");
  if (embd_info == nullptr) return l.Error("missing tensor token_embd.weight");
  if (embd_info->dims.size() != 2) return l.Error("token_embd.weight is not a matrix");
  hp.vocab_size = static_cast<int32_t>(embd_info->dims[1]);

  auto model = std::unique_ptr<Model>(new Model());
  ModelWeights& w = model->weights_;
  ASSIGN_OR_RETURN(w.token_embd, l.Tensor("token_embd.weight", hp.embd, hp.vocab_size, true));
  ASSIGN_OR_RETURN(w.output_norm, l.Tensor("output_norm.weight", hp.embd, 0, false));
  if (file->FindTensor("output.weight") != nullptr) {
    ASSIGN_OR_RETURN(w.output, l.Tensor("output.weight", hp.embd, hp.vocab_size, true));
  } else {
    w.output = w.token_embd;
    w.output_tied = true;
  }
  RETURN_IF_ERROR(LoadRopeFreqs(*file, l, &hp, &w));
  for (int i = 0; i < hp.num_layers; ++i) {
    ASSIGN_OR_RETURN(LayerWeights lw, LoadLayer(*file, *arch, l, i, &hp));
    w.layers.push_back(std::move(lw));
  }
  model->weights_digest_ = DigestTensors(*file, progress, &model->num_params_);
  model->hparams_ = hp;
  model->gguf_ = std::move(file);
  return model;
}

}  // namespace prefixd
