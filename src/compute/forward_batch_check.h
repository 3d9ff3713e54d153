// The checks every backend makes on a ForwardBatch before touching its KV pool, so that a bad
// batch is refused the same way (and with the same message) on the CPU and on a GPU.
#pragma once

#include "base/status.h"
#include "compute/backend.h"

namespace prefixd {

// InvalidArgument when a token id is outside [0, vocab_size), a sequence's positions do not
// fit the blocks it brought, or a block id is outside [0, num_blocks).
Status CheckForwardBatch(const ForwardBatch& batch, int32_t vocab_size, int block_size,
                         int num_blocks);

}  // namespace prefixd
