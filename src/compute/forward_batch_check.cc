#include "compute/forward_batch_check.h"

#include "absl/strings/str_cat.h"

namespace prefixd {

Status CheckForwardBatch(const ForwardBatch& batch, int32_t vocab_size, int block_size,
                         int num_blocks) {
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const ForwardSequence& seq = batch.sequences[s];
    for (int32_t t : seq.tokens) {
      if (t < 0 || t >= vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", vocab_size, ")"));
      }
    }
    const int64_t end = seq.start_pos + static_cast<int64_t>(seq.tokens.size());
    if (seq.start_pos < 0 || end > int64_t{block_size} * static_cast<int64_t>(seq.blocks.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", s, ": positions up to ", end, " do not fit its ", seq.blocks.size(),
          " KV blocks"));
    }
    for (BlockId b : seq.blocks) {
      if (b.value() < 0 || b.value() >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("KV block id ", b.value(), " out of range"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace prefixd
