#include "compute/cpu/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "base/check.h"
#include "base/fp16.h"
#include "base/log.h"
#include "compute/cpu/attention.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/gemm.h"
#include "compute/cpu/kernels.h"
#include "compute/cpu/moe.h"
#include "compute/forward_batch_check.h"

namespace prefixd {

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const Model& model,
                                                    const CpuBackendOptions& options) {
  const Hparams& hp = model.hparams();
  KvLayout layout;
  layout.num_layers = hp.num_attention_layers();  // DeltaNet layers keep no K/V
  layout.kv_dim = hp.kv_dim();
  layout.block_size = options.block_size;
  layout.dtype = options.kv_dtype;
  if (options.block_size < 1 || options.block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", options.block_size, " is out of range [1, 4096]"));
  }
  if (options.num_kv_blocks < 1) {
    return absl::InvalidArgumentError("the KV pool needs at least one block");
  }
  const int64_t bytes = layout.BlockBytes() * options.num_kv_blocks;
  // calloc: a large pool comes from fresh zero pages that cost nothing until first written.
  KvBuffer kv(static_cast<uint8_t*>(std::calloc(bytes, 1)));
  if (!kv) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes for ", options.num_kv_blocks,
                     " KV blocks; lower the KV budget"));
  }
  CpuBackendOptions opts = options;
  if (opts.num_threads <= 0) opts.num_threads = ThreadPool::HardwareThreads();
  return std::unique_ptr<Backend>(
      new CpuBackend(model, opts, layout, std::move(kv), options.num_kv_blocks));
}

CpuBackend::CpuBackend(const Model& model, const CpuBackendOptions& options, KvLayout layout,
                       KvBuffer kv, int num_blocks)
    : model_(model),
      hp_(model.hparams()),
      layout_(layout),
      pool_(options.num_threads),
      kv_(std::move(kv)),
      num_blocks_(num_blocks) {
  if (hp_.moe()) moe_ = std::make_unique<cpu::MoeFfn>();
  for (int l = 0, kv = 0, rec = 0; l < hp_.num_layers; ++l) {
    kv_layer_.push_back(hp_.IsRecurrent(l) ? -1 : kv++);
    recurrent_index_.push_back(hp_.IsRecurrent(l) ? rec++ : -1);
  }
  if (hp_.hybrid()) delta_net_ = std::make_unique<cpu::DeltaNet>(hp_.delta_net, hp_.rms_eps);
  if (hp_.rope_freq_factors) {
    rope_factors_.resize(hp_.rope_dims / 2);
    cpu::RowToFloat(model.weights().rope_freqs, 0, rope_factors_.data());
  }
  PackF16Weights();
  if (options.quant_dot == QuantDot::kInt8) {
    const ModelWeights& mw = model.weights();
    int_dot_ = cpu::UsesIntDot(mw.output);
    for (const LayerWeights& lw : mw.layers) {
      for (const Weight* w : LayerMatrices(lw, /*experts=*/true)) {
        int_dot_ = int_dot_ || cpu::UsesIntDot(*w);
      }
    }
  }
}

std::vector<const Weight*> CpuBackend::LayerMatrices(const LayerWeights& lw, bool experts) const {
  std::vector<const Weight*> m = {&lw.wq, &lw.wk, &lw.wv, &lw.wo};
  if (lw.ssm_qkv.data != nullptr) {  // a DeltaNet layer
    m = {&lw.ssm_qkv, &lw.ssm_z, &lw.ssm_beta, &lw.ssm_alpha, &lw.ssm_out};
  }
  if (!hp_.moe()) {
    m.insert(m.end(), {&lw.ffn_gate, &lw.ffn_up, &lw.ffn_down});
  } else {
    m.push_back(&lw.ffn_gate_inp);
    if (experts) m.insert(m.end(), {&lw.ffn_gate_exps, &lw.ffn_up_exps, &lw.ffn_down_exps});
  }
  return m;
}

Status CpuBackend::Validate(const ForwardBatch& batch) const {
  RETURN_IF_ERROR(CheckForwardBatch(batch, hp_.vocab_size, layout_.block_size, num_blocks_));
  const int64_t state = recurrent_state_floats();
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    if (static_cast<int64_t>(batch.sequences[s].recurrent_state.size()) != state) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", s, " brings a recurrent state of ",
          batch.sequences[s].recurrent_state.size(), " floats; this model needs ", state));
    }
  }
  return absl::OkStatus();
}

void CpuBackend::StoreKv(int kv_layer, const ForwardBatch& batch) {
  // Every token writes its own slot: the threads never touch the same bytes.
  pool_.ParallelFor(static_cast<int64_t>(slots_.size()), [&](int64_t begin, int64_t end, int) {
    for (int64_t g = begin; g < end; ++g) StoreTokenKv(kv_layer, batch, g);
  });
}

void CpuBackend::StoreTokenKv(int kv_layer, const ForwardBatch& batch, int64_t g) {
  const int kv_dim = hp_.kv_dim();
  const TokenSlot& ts = slots_[g];
  const ForwardSequence& seq = batch.sequences[ts.seq];
  const BlockId b = seq.blocks[ts.pos / layout_.block_size];
  const int slot = static_cast<int>(ts.pos % layout_.block_size);
  uint8_t* block = BlockData(b);
  for (int v = 0; v < 2; ++v) {
    const float* src = (v == 0 ? k_.data() : v_.data()) + g * kv_dim;
    uint8_t* dst = block + layout_.RowOffset(kv_layer, v, slot);
    if (layout_.dtype == KvDtype::kF16) {
      cpu::ConvertF32ToF16(src, reinterpret_cast<uint16_t*>(dst), kv_dim);
    } else {
      std::memcpy(dst, src, kv_dim * sizeof(float));
    }
  }
}

void CpuBackend::PackF16Weights() {
  if (!cpu::HasBlockedGemm()) return;  // no packed kernels for this CPU (neither AVX-512 nor AVX2)
  const ModelWeights& mw = model_.weights();
  std::vector<const Weight*> matrices;
  for (const LayerWeights& lw : mw.layers) {
    // Expert tensors are used through per-expert slices (moe.h), row by row: not packed.
    for (const Weight* w : LayerMatrices(lw, /*experts=*/false)) matrices.push_back(w);
  }
  matrices.push_back(&mw.output);
  std::erase_if(matrices, [](const Weight* w) { return w->type != TensorType::kF16; });
  if (matrices.empty()) return;
  // Offsets in halves, and the (matrix, panel) work items end to end.
  std::vector<int64_t> offset(matrices.size() + 1, 0), first_panel(matrices.size() + 1, 0);
  for (size_t i = 0; i < matrices.size(); ++i) {
    offset[i + 1] = offset[i] + cpu::PackedF16Halves(matrices[i]->rows, matrices[i]->cols);
    first_panel[i + 1] = first_panel[i] + (matrices[i]->rows + cpu::kGemmPanelRows - 1) / cpu::kGemmPanelRows;
  }
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t bytes = (offset.back() * sizeof(uint16_t) + kHugePage - 1) / kHugePage * kHugePage;
  packed_buffer_.reset(static_cast<uint8_t*>(std::aligned_alloc(kHugePage, bytes)));
  if (!packed_buffer_) {
    spdlog::warn("no memory for the {} MiB of packed F16 weights: decode reads them row by row",
                 bytes >> 20);
    return;
  }
  ::madvise(packed_buffer_.get(), bytes, MADV_HUGEPAGE);  // a hint; works without THP too
  uint16_t* base = reinterpret_cast<uint16_t*>(packed_buffer_.get());
  const auto start = std::chrono::steady_clock::now();
  pool_.ParallelFor(first_panel.back(), [&](int64_t begin, int64_t end, int) {
    size_t i = 0;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= first_panel[i + 1]) ++i;
      const Weight& w = *matrices[i];
      const int64_t p = item - first_panel[i];
      cpu::PackF16Panel(reinterpret_cast<const uint16_t*>(w.data), w.row_bytes / 2, w.rows, w.cols,
                        p, base + offset[i] + p * cpu::GemmPanelFloats(w.cols));
    }
  });
  for (size_t i = 0; i < matrices.size(); ++i) packed_[matrices[i]] = base + offset[i];
  spdlog::info("packed {} F16 matrices for the CPU kernels: {} MiB in {:.2f} s", matrices.size(),
               bytes >> 20,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// Causal attention for every token of the batch. A work item is a run of up to
// kQueryBlock consecutive tokens of one sequence and one KV head: the run gathers each tile
// of K/V once for all its queries (AttendQueries gives each query the bits it would get alone).
void CpuBackend::Attention(int kv_layer, const ForwardBatch& batch) {
  constexpr int kQueryBlock = 16;
  const int hd = hp_.head_dim;
  const int group = hp_.num_heads / hp_.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t q_dim = hp_.q_dim();
  query_blocks_.clear();
  for (int64_t g = 0; g < static_cast<int64_t>(slots_.size());) {
    int64_t end = g + 1;
    while (end < static_cast<int64_t>(slots_.size()) && end - g < kQueryBlock &&
           slots_[end].seq == slots_[g].seq && slots_[end].pos > slots_[end - 1].pos) {
      ++end;
    }
    query_blocks_.push_back({g, static_cast<int>(end - g)});
    g = end;
  }
  const int64_t work = static_cast<int64_t>(query_blocks_.size()) * hp_.num_kv_heads;
  // Later tokens attend to more positions: dynamic chunks keep both threads busy to the end.
  pool_.ParallelForDynamic(work, /*chunk=*/1, [&](int64_t begin, int64_t end, int) {
    thread_local cpu::AttentionScratch scratch;
    cpu::AttentionArgs args[kQueryBlock];
    for (int64_t item = begin; item < end; ++item) {
      const auto [first, count] = query_blocks_[item / hp_.num_kv_heads];
      const int kv_head = static_cast<int>(item % hp_.num_kv_heads);
      for (int i = 0; i < count; ++i) {
        const int64_t g = first + i;
        const TokenSlot& ts = slots_[g];
        cpu::AttentionArgs& a = args[i];
        a.layout = &layout_;
        a.kv_base = kv_.get();
        a.blocks = batch.sequences[ts.seq].blocks;
        a.layer = kv_layer;
        a.kv_head = kv_head;
        a.head_dim = hd;
        a.group = group;
        a.pos = ts.pos;
        a.scale = scale;
        a.q = q_.data() + g * q_dim + int64_t{kv_head} * group * hd;
        a.out = attn_.data() + g * q_dim + int64_t{kv_head} * group * hd;
      }
      cpu::AttendQueries(args, count, &scratch);
    }
  });
}

// Q, K, V of every token from the normed activations h_, with what the architecture adds:
// biases (qwen2), per-head RMS norms of Q and K (qwen3), then RoPE (with Llama 3 frequency
// factors when the model has them). Every step is per token, so batch invariance holds.
void CpuBackend::ProjectQkv(const LayerWeights& lw, int64_t n) {
  const int64_t q_dim = hp_.q_dim(), kv_dim = hp_.kv_dim();
  const int hd = hp_.head_dim;
  float* q_out = hp_.attn_output_gate ? qg_.data() : q_.data();
  const cpu::MatMulProduct qkv[] = {{&lw.wq, q_out, Packed(lw.wq)},
                                     {&lw.wk, k_.data(), Packed(lw.wk)},
                                     {&lw.wv, v_.data(), Packed(lw.wv)}};
  cpu::MatMulShared(qkv, h_.data(), n, pool_, int_dot_);
  if (hp_.attn_output_gate) SplitQueryGate(n);
  if (hp_.qkv_bias) {
    cpu::AddBias(lw.bq, n, q_.data());
    cpu::AddBias(lw.bk, n, k_.data());
    cpu::AddBias(lw.bv, n, v_.data());
  }
  const int64_t half = hp_.rope_dims / 2;
  pool_.ParallelFor(n, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      const float* c = &rope_cos_[g * half];
      const float* s = &rope_sin_[g * half];
      for (int hh = 0; hh < hp_.num_heads; ++hh) {
        float* head = &q_[g * q_dim + hh * hd];
        if (hp_.qk_norm) cpu::RmsNorm(head, lw.q_norm, hd, hp_.rms_eps, head);
        cpu::ApplyRope(head, hp_.rope_dims, hp_.rope_style, c, s);
      }
      for (int hh = 0; hh < hp_.num_kv_heads; ++hh) {
        float* head = &k_[g * kv_dim + hh * hd];
        if (hp_.qk_norm) cpu::RmsNorm(head, lw.k_norm, hd, hp_.rms_eps, head);
        cpu::ApplyRope(head, hp_.rope_dims, hp_.rope_style, c, s);
      }
    }
  });
}

// qwen35's Q projection gives, per head, head_dim of Q then head_dim of gate.
void CpuBackend::SplitQueryGate(int64_t n) {
  const int64_t q_dim = hp_.q_dim();
  const int hd = hp_.head_dim;
  for (int64_t g = 0; g < n; ++g) {
    for (int hh = 0; hh < hp_.num_heads; ++hh) {
      const float* src = &qg_[g * 2 * q_dim + int64_t{hh} * 2 * hd];
      std::memcpy(&q_[g * q_dim + int64_t{hh} * hd], src, hd * sizeof(float));
      std::memcpy(&attn_gate_[g * q_dim + int64_t{hh} * hd], src + hd, hd * sizeof(float));
    }
  }
}

void CpuBackend::ComputeRopeAngles(int64_t n) {
  // RoPE angles depend on the position only: once per token for every head and layer.
  const int64_t half = hp_.rope_dims / 2;
  rope_cos_.resize(n * half);
  rope_sin_.resize(n * half);
  const float* factors = rope_factors_.empty() ? nullptr : rope_factors_.data();
  pool_.ParallelFor(n, [&](int64_t b, int64_t e, int) {
    for (int64_t g = b; g < e; ++g) {
      cpu::RopeAngles(hp_.rope_dims, slots_[g].pos, hp_.rope_freq_base, hp_.rope_freq_scale,
                      factors, &rope_cos_[g * half], &rope_sin_[g * half]);
      // Pairs of M-RoPE's fourth section turn by position 0 (text): not at all.
      for (size_t i = 0; i < hp_.rope_pair_static.size(); ++i) {
        if (!hp_.rope_pair_static[i]) continue;
        rope_cos_[g * half + i] = 1.0f;
        rope_sin_[g * half + i] = 0.0f;
      }
    }
  });
}

void CpuBackend::AttentionMix(int layer, const LayerWeights& lw, const ForwardBatch& batch,
                              int64_t n) {
  ProjectQkv(lw, n);
  StoreKv(kv_layer_[layer], batch);
  Attention(kv_layer_[layer], batch);
  if (hp_.attn_output_gate) {
    const int64_t total = n * hp_.q_dim();
    pool_.ParallelFor(total, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        attn_[i] = attn_[i] * (1.0f / (1.0f + cpu::ExpPoly(-attn_gate_[i])));
      }
    });
  }
  cpu::MatMul(lw.wo, attn_.data(), n, h_.data(), pool_, Packed(lw.wo), int_dot_);
}

void CpuBackend::DeltaNetMix(int layer, const LayerWeights& lw, const ForwardBatch& batch,
                             int64_t n) {
  const DeltaNetShape& d = hp_.delta_net;
  const int64_t offset = recurrent_index_[layer] * d.state_floats();
  delta_runs_.clear();
  delta_captures_.clear();
  for (const ForwardSequence& seq : batch.sequences) {
    for (const ForwardSequence::StateCapture& c : seq.state_captures) {
      float* state = c.dest + offset;
      delta_captures_.push_back({c.after, state, state + d.conv_state_floats()});
    }
  }
  int64_t g = 0;
  size_t first_capture = 0;
  for (const ForwardSequence& seq : batch.sequences) {
    const int64_t len = static_cast<int64_t>(seq.tokens.size());
    const size_t captures = seq.state_captures.size();
    if (len > 0) {
      float* state = seq.recurrent_state.data() + offset;
      delta_runs_.push_back({g, len, state, state + d.conv_state_floats(),
                             std::span(delta_captures_).subspan(first_capture, captures)});
    }
    first_capture += captures;
    g += len;
  }
  cpu::DeltaNetWeights w;
  w.qkv = {&lw.ssm_qkv, Packed(lw.ssm_qkv)};
  w.z = {&lw.ssm_z, Packed(lw.ssm_z)};
  w.beta = {&lw.ssm_beta, Packed(lw.ssm_beta)};
  w.alpha = {&lw.ssm_alpha, Packed(lw.ssm_alpha)};
  w.out = {&lw.ssm_out, Packed(lw.ssm_out)};
  w.conv = &lw.ssm_conv1d;
  w.dt = &lw.ssm_dt;
  w.a = &lw.ssm_a;
  w.norm = &lw.ssm_norm;
  // DeltaNet::Run's output must not overlap its input: it goes to moe_out_ (idle scratch in
  // a dense model), then swaps into h_.
  moe_out_.resize(n * hp_.embd);
  delta_net_->Run(w, h_.data(), n, delta_runs_, moe_out_.data(), pool_, int_dot_);
  std::swap(h_, moe_out_);
}

void CpuBackend::Ffn(const LayerWeights& lw, int64_t n) {
  const int64_t embd = hp_.embd, ff = hp_.moe() ? 0 : hp_.ff;
  if (hp_.moe()) {
    moe_out_.resize(n * embd);
    moe_->Run(cpu::MoeWeights::Of(lw, hp_), h_.data(), n, moe_out_.data(), pool_, int_dot_);
    std::swap(h_, moe_out_);
    return;
  }
  const cpu::MatMulProduct gate_up[] = {{&lw.ffn_gate, gate_.data(), Packed(lw.ffn_gate)},
                                        {&lw.ffn_up, up_.data(), Packed(lw.ffn_up)}};
  cpu::MatMulShared(gate_up, h_.data(), n, pool_, int_dot_);
  pool_.ParallelFor(n, [&](int64_t b, int64_t e, int) {
    cpu::SwiGlu(&gate_[b * ff], &up_[b * ff], (e - b) * ff);
  });
  cpu::MatMul(lw.ffn_down, gate_.data(), n, h_.data(), pool_, Packed(lw.ffn_down), int_dot_);
}

Status CpuBackend::Forward(const ForwardBatch& batch, ForwardOutput* out) {
  RETURN_IF_ERROR(Validate(batch));
  const ModelWeights& w = model_.weights();
  const int64_t embd = hp_.embd, q_dim = hp_.q_dim(), kv_dim = hp_.kv_dim();
  const int64_t ff = hp_.moe() ? 0 : hp_.ff;  // the MoE FFN keeps its own scratch

  slots_.clear();
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const ForwardSequence& seq = batch.sequences[s];
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      slots_.push_back({seq.tokens[i], seq.start_pos + static_cast<int64_t>(i),
                        static_cast<int32_t>(s)});
    }
  }
  const int64_t n = static_cast<int64_t>(slots_.size());
  x_.resize(n * embd);
  h_.resize(n * embd);
  q_.resize(n * q_dim);
  k_.resize(n * kv_dim);
  v_.resize(n * kv_dim);
  attn_.resize(n * q_dim);
  gate_.resize(n * ff);
  up_.resize(n * ff);
  if (hp_.attn_output_gate) {
    qg_.resize(n * 2 * q_dim);
    attn_gate_.resize(n * q_dim);
  }
  for (int64_t g = 0; g < n; ++g) cpu::RowToFloat(w.token_embd, slots_[g].token, &x_[g * embd]);
  ComputeRopeAngles(n);

  for (int layer = 0; layer < hp_.num_layers; ++layer) {
    const LayerWeights& lw = w.layers[layer];
    pool_.ParallelFor(n, [&](int64_t b, int64_t e, int) {
      for (int64_t g = b; g < e; ++g) {
        cpu::RmsNorm(&x_[g * embd], lw.attn_norm, embd, hp_.rms_eps, &h_[g * embd]);
      }
    });
    if (hp_.IsRecurrent(layer)) {
      DeltaNetMix(layer, lw, batch, n);
    } else {
      AttentionMix(layer, lw, batch, n);
    }
    for (int64_t i = 0; i < n * embd; ++i) x_[i] = x_[i] + h_[i];

    pool_.ParallelFor(n, [&](int64_t b, int64_t e, int) {
      for (int64_t g = b; g < e; ++g) {
        cpu::RmsNorm(&x_[g * embd], lw.ffn_norm, embd, hp_.rms_eps, &h_[g * embd]);
      }
    });
    Ffn(lw, n);
    for (int64_t i = 0; i < n * embd; ++i) x_[i] = x_[i] + h_[i];
  }
  ComputeLogits(batch, out);
  return absl::OkStatus();
}

void CpuBackend::ComputeLogits(const ForwardBatch& batch, ForwardOutput* out) {
  // Logits only for the rows asked for: gather them, normalise, project.
  const ModelWeights& w = model_.weights();
  const int64_t embd = hp_.embd;
  out->vocab_size = hp_.vocab_size;
  out->first_row.assign(batch.sequences.size(), -1);
  std::vector<int64_t> rows;
  int64_t g = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const ForwardSequence& seq = batch.sequences[s];
    const int64_t len = static_cast<int64_t>(seq.tokens.size());
    if (seq.want_logits && len > 0) {
      out->first_row[s] = static_cast<int32_t>(rows.size());
      for (int64_t i = seq.all_logits ? 0 : len - 1; i < len; ++i) rows.push_back(g + i);
    }
    g += len;
  }
  const int64_t num_rows = static_cast<int64_t>(rows.size());
  std::vector<float> normed(num_rows * embd);
  for (int64_t r = 0; r < num_rows; ++r) {
    cpu::RmsNorm(&x_[rows[r] * embd], w.output_norm, embd, hp_.rms_eps, &normed[r * embd]);
  }
  out->logits.resize(num_rows * hp_.vocab_size);
  cpu::MatMul(w.output, normed.data(), num_rows, out->logits.data(), pool_, Packed(w.output), int_dot_);
}

void CpuBackend::CopyBlocks(std::span<const BlockCopy> copies) {
  for (const BlockCopy& c : copies) {
    std::memcpy(BlockData(c.dst), BlockData(c.src), layout_.BlockBytes());
  }
}

void CpuBackend::ReadBlock(BlockId block, std::span<uint8_t> out) const {
  PREFIXD_CHECK(static_cast<int64_t>(out.size()) == layout_.BlockBytes(), "ReadBlock size");
  std::memcpy(out.data(), BlockData(block), out.size());
}

void CpuBackend::WriteBlock(BlockId block, std::span<const uint8_t> in) {
  PREFIXD_CHECK(static_cast<int64_t>(in.size()) == layout_.BlockBytes(), "WriteBlock size");
  std::memcpy(BlockData(block), in.data(), in.size());
}

}  // namespace prefixd
