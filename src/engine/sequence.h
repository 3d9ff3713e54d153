// Sequence: one request's tokens, KV blocks and progress through the engine.
//
//   tokens:  [ prompt ............................ | generated ...... ]
//            0                    num_computed ^    num_prompt ^
//   KV (and, for a hybrid model, the recurrent state) exists for tokens [0, num_computed);
//   the next step computes from num_computed.
//
// Thread safety: owned by the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/typed_id.h"
#include "cache/prefix_cache.h"
#include "engine/request_scope.h"
#include "engine/sampler.h"
#include "engine/token_constraint.h"
#include "kv/block_table.h"

namespace prefixd {

using SequenceId = TypedId<struct SequenceIdTag, int64_t>;

enum class FinishReason { kNone, kEos, kLength, kContext, kCancelled };
const char* FinishReasonName(FinishReason r);

struct GenerateRequest {
  std::vector<int32_t> prompt;
  // A tenant's key: requests with different salts never share cached prefixes.
  std::string cache_salt;
  // Return the chosen token's logprob and this many top alternatives (0: none).
  int32_t logprobs = 0;
  SamplingParams sampling;
  int32_t max_tokens = 16;
  bool ignore_eos = false;
  // Keep the logits of every prompt token and every sampling step (tests of exactness).
  bool record_logits = false;
  // Where each chat message starts (token index), for the scope policy; empty for a plain
  // prompt. And the request's own scope (`prefix_cache.scope`), overriding the server's.
  std::vector<int64_t> message_starts;
  std::optional<RequestScope> scope;
  // Ranges of the prompt to keep (cache_control breakpoints, prompt_cache_retention,
  // prefix_cache.retention): ranked last for eviction until their time is up.
  RequestRetention retention;
  // What the output must be (a forced tool call: token_constraint.h), or null. Per request,
  // never shared; the sequence ends (kEos) once the constraint is complete, and with kLength
  // if it allows no token at all. The cache never sees it: the KV of a prompt is the same.
  std::shared_ptr<TokenConstraint> constraint;
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
};

struct Sequence {
  SequenceId id;
  GenerateRequest request;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t num_prompt = 0;
  int64_t num_computed = 0;
  BlockTable table;
  std::unique_ptr<Sampler> sampler;
  FinishReason finish = FinishReason::kNone;
  // Logits rows recorded when request.record_logits: one per prompt token, then one per
  // generated token (the row it was sampled from), each vocab_size floats.
  std::vector<float> logits;
  int64_t logits_start = -1;  // position of the first recorded row (-1: none yet)
  // Hybrid models: the recurrent state after [0, num_computed) (Backend::
  // recurrent_state_floats() floats, zeros at admission); empty otherwise and once finished.
  std::vector<float> recurrent_state;

  // Prefix cache state: the request's ticket (what the cache keeps for it between Admit and
  // Release; ticket.hit() is what the last admission reused, locked while running), and the
  // prompt tokens served from cache at the first admission.
  CacheTicket ticket;
  int64_t cached_tokens = -1;  // -1 until first admitted
  TierHit tier_hit;            // of cached_tokens, those brought in from below the pool

  int32_t num_generated() const { return static_cast<int32_t>(tokens.size()) - num_prompt; }
  bool prefilling_prompt() const { return num_computed < num_prompt; }
};

}  // namespace prefixd
