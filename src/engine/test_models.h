// Models for engine tests: the shared real ones, and random-weight ones written on demand.
#pragma once

#include <memory>
#include <string>

#include "model/llama_model.h"
#include "model/model_maker.h"

namespace prefixd {

enum class TestModelShape {
  kTiny,    // 2 layers, n_embd 64, 4 heads, 2 KV heads, synthetic vocab of 320
  kGqa256,  // 4 layers, n_embd 256, 8 heads, 2 KV heads, n_ff 688, synthetic vocab of 512
  kRows256,  // 1 layer, n_embd 256, 4 heads, 2 KV heads, n_ff 256, vocab 320: every row a
             // whole number of 256-element blocks, so each weight type applies to every matrix
};

// Loads ../shared/models/NAME, or returns nullptr when the file is absent.
std::unique_ptr<Model> LoadSharedModel(const std::string& name);

// Writes (once per process, in a temp dir) and loads a random-weight model of `shape`.
std::unique_ptr<Model> MakeTestModel(TestModelShape shape, TensorType type, uint64_t seed = 1);

// Writes (once per process, in a temp dir, as NAME.gguf) and loads the model `spec` describes;
// for architecture tests, whose shapes vary more than TestModelShape's.
std::unique_ptr<Model> MakeTestModel(const ModelSpec& spec, const std::string& name);

// A small random model of `arch` ("llama", "qwen2", "qwen3", "qwen3moe", "qwen35" or "llama3", a llama
// with Llama 3.1 RoPE scaling): 2 layers, n_embd 64, 4 heads, 2 KV heads, F32 weights,
// synthetic vocab of 320. qwen2 ties its output (as the small Qwen2 models do) and uses RoPE
// base 1e6; qwen3 has a head size of 32 (n_head * head size = 128 != n_embd); qwen3moe is
// qwen3 with 8 experts of width 64, 2 per token; qwen35 has 4 layers (3 DeltaNet with 2 Q/K
// and 4 V heads of 32, then gated attention with heads of 32 and RoPE over 8 dims).
ModelSpec SmallArchSpec(const std::string& arch);

// The absolute path of the shared folder (../shared beside the project).
std::string SharedDir();

}  // namespace prefixd
