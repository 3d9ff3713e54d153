// EvictionPolicy: ranks the prefix tree's evictable leaves; the tree does the freeing.
// Policy is kept apart from mechanism so a deployment can change what goes first (LRU, LFU,
// cost-aware) without touching the tree.
//
// A leaf's rank is (Level, Priority), compared in that order; lower is evicted sooner; ties go
// to the lower node slot. Level is the coarse class retention works through (ARCHITECTURE.md
// invariant 9: retention ranks, never blocks): by default
//   0  generated (decode) tokens that no prompt has sent back yet
//   1  prompt tokens
//   1 + p  tokens a client asked to keep (a live retention mark of priority p, 1..100)
// so every retained leaf goes after every other one, and retention never makes a leaf
// unevictable. Priority orders leaves within a level (recency, by default).
//
// Contract: Level() and Priority() are pure functions of the NodeStats they are given (no
// clock, no global state): a mark's expiry is applied by the tree (ExpireRetention), which
// then re-ranks the leaf. The tree computes the rank when a leaf becomes evictable or its
// stats change and keeps leaves ordered by it.
//
// Thread safety: called only from the thread that owns the tree; implementations should be
// stateless or immutable.
#pragma once

#include <cstdint>

namespace prefixd {

// What the tree knows about one node, as the policy sees it.
struct NodeStats {
  // Logical clock value of the last Match(touch = true) or Insert whose path went through the
  // node (a counter, not wall time, so tests are deterministic). A parent's tick is never
  // older than its children's.
  uint64_t last_access_tick = 0;
  // Number of Match(touch = true) / Insert calls whose path went through the node.
  uint64_t num_hits = 0;
  int64_t start = 0;       // first token position the node covers (its depth in tokens)
  int64_t num_tokens = 0;  // length of its edge
  int num_blocks = 0;      // pool blocks it lists
  // Priority (1..100) of the retention mark the node carries; 0: none (see RetentionMark).
  int retention_priority = 0;
  // The node holds only tokens that a sequence generated and no prompt has sent back.
  bool generated = false;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // Lower is evicted sooner, within a level.
  virtual double Priority(const NodeStats& stats) const = 0;
  // Lower is evicted sooner, before Priority is looked at. The default is the ladder above.
  virtual int Level(const NodeStats& stats) const {
    if (stats.retention_priority > 0) return 1 + stats.retention_priority;
    return stats.generated ? 0 : 1;
  }
};

// Least recently used first, within a level. Exact for ticks below 2^53.
class LruPolicy final : public EvictionPolicy {
 public:
  double Priority(const NodeStats& stats) const override {
    return static_cast<double>(stats.last_access_tick);
  }
};

}  // namespace prefixd
