// Causal attention of one query token over its sequence's paged K/V, for every query head of
// one KV head group (grouped-query attention: the group's heads share each K/V row, which is
// read and converted once).
//
// One pass over positions 0..pos with a running max and sum (the online softmax), in tiles of
// kAttentionTile positions fixed by position, not by KV block size or prefill chunk, so a
// token's result depends only on its own query and the stored K/V (ARCHITECTURE.md invariant
// 1). Scores sum head dims in order (keys transposed into vector lanes), exp is one
// polynomial, and the value accumulation element-wise FMAs, each written portably and once per
// vector instruction set (AVX-512, AVX2) with the same operations, so every path gives the same
// bits.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kv/block_pool.h"
#include "kv/kv_layout.h"

namespace prefixd::cpu {

inline constexpr int kAttentionTile = 32;

struct AttentionArgs {
  const KvLayout* layout;
  const uint8_t* kv_base;          // the pool: block b starts at kv_base + b * BlockBytes()
  std::span<const BlockId> blocks;  // the sequence's block table
  int layer = 0;
  int kv_head = 0;
  int head_dim = 0;
  int group = 1;        // query heads per KV head
  int64_t pos = 0;      // the query's position: it attends to 0..pos
  float scale = 1.0f;   // 1 / sqrt(head_dim)
  const float* q = nullptr;  // group * head_dim floats, the group's heads in order
  float* out = nullptr;      // group * head_dim floats
};

// Scratch sized for one call; reuse it across calls on the same thread.
struct AttentionScratch {
  std::vector<float> acc;               // query heads * head_dim
  std::vector<float> scores;            // kAttentionTile
  std::vector<float> running_max, sum;  // query heads each
  std::vector<float> new_max, correction;  // query heads each, for the current tile
  std::vector<float> keys;              // head_dim x kAttentionTile, the tile's K transposed
  std::vector<float> values;            // kAttentionTile * head_dim, the tile's V as floats
  std::vector<const float*> q_ptrs;     // per query head
  std::vector<float*> score_ptrs;       // per query head
};

void Attend(const AttentionArgs& args, AttentionScratch* scratch);

// Several queries at once: `count` tokens of one sequence at increasing positions, all for the
// same layer and KV head. Each gets exactly what Attend would give it alone (same operations in
// the same order); the block only shares the gathering and conversion of K/V rows.
void AttendQueries(const AttentionArgs* args, int count, AttentionScratch* scratch);

// AttendQueries on every instruction-set path this CPU can run, named (the portable one
// first), for tests that compare whole attention results, gathering and tails included.
using AttendQueriesFn = void (*)(const AttentionArgs* args, int count, AttentionScratch* scratch);
std::vector<std::pair<const char*, AttendQueriesFn>> RunnableAttendPaths();

// out[i] = scale * dot(key i, q) for n <= kAttentionTile keys of head_dim elements (row i at
// keys + i * head_dim; floats, or halves when `f16`), in attention's own reduction order
// (attention.cc), for tests: every path, named.
using AttentionScoreFn = void (*)(const void* keys, int n, const float* q, int head_dim,
                                  float scale, float* out);
std::vector<std::pair<const char*, AttentionScoreFn>> RunnableAttentionScorePaths(int head_dim,
                                                                                  bool f16);

// acc = acc * correction, then acc = fma(p[i], row i, acc) for i < n over head_dim floats (rows
// contiguous at values + i * head_dim): attention's value accumulation, every path, named.
using AttentionAccumulateFn = void (*)(float* acc, float correction, const float* p,
                                       const float* values, int n, int head_dim);
std::vector<std::pair<const char*, AttentionAccumulateFn>> RunnableAttentionAccumulatePaths(
    int head_dim);

// The max / the sum of a tile's n <= kAttentionTile scores in attention's fixed tree, every
// path, named.
using AttentionTileFoldFn = float (*)(const float* s, int n);
std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileMaxPaths();
std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileSumPaths();

// s[i] = exp(s[i] - max) for i < n, as the softmax computes it (arguments <= 0; below -87, 0).
using SoftmaxExpFn = void (*)(float* s, float max, int n);
// Every path this CPU can run, named, for tests that compare them with the portable one.
std::vector<std::pair<const char*, SoftmaxExpFn>> RunnableSoftmaxExpPaths();

}  // namespace prefixd::cpu
