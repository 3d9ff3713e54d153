// Models for engine tests: the shared real ones, and random-weight ones written on demand.
#pragma once

#include <memory>
#include <string>

#include "model/llama_model.h"

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

// The absolute path of the shared folder (../shared beside the project).
std::string SharedDir();

}  // namespace prefixd
