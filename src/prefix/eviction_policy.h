// EvictionPolicy: ranks the prefix tree's evictable leaves; the tree does the freeing.
// Policy is kept apart from mechanism so a deployment can change what goes first (LRU, LFU,
// cost-aware) without touching the tree.
//
// Contract: Priority() is a pure function of the NodeStats it is given (no clock, no global
// state). The tree computes it when a leaf becomes evictable or its stats change and keeps
// leaves ordered by it; lower priority is evicted sooner; ties go to the lower node slot.
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
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // Lower is evicted sooner.
  virtual double Priority(const NodeStats& stats) const = 0;
};

// Least recently used first. Exact for ticks below 2^53.
class LruPolicy final : public EvictionPolicy {
 public:
  double Priority(const NodeStats& stats) const override {
    return static_cast<double>(stats.last_access_tick);
  }
};

}  // namespace prefixd
