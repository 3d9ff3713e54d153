// RadixTree: the token-granular prefix index of the L1 cache (ARCHITECTURE.md, "The cache").
// A PATRICIA tree per cache salt; each edge holds a run of token ids, and each node lists the
// pool blocks that hold the KV of the token positions it covers.
//
//   positions:   0 1 2 3 | 4 5 6 7 | 8 9 10 11        block size 4, block index = pos / 4
//   root("salt") ── A [0, 6) ──┬── B [6, 11)    "...7 8 9 10"
//                              └── C [6, 9)     "...x y z"
//   A lists blocks for indices 0, 1          (positions 0..5)
//   B lists blocks for indices 1, 2          (6..10): index 1 is a boundary block
//   C lists blocks for indices 1, 2          (6..8)
//
// Blocks and boundaries:
// - A node covers positions [start, end) of every sequence through it and lists the blocks of
//   indices start / bs .. (end - 1) / bs, holding one pool reference (BlockPool::Ref) for each
//   entry; it Unrefs them when it is removed.
// - A boundary may fall inside a block. Then the parent and each child list a block for the
//   boundary index. Children that diverge inside a block hold different physical blocks for
//   it (their contents differ after the divergence); the parent lists one of them, or another
//   block with the same contents before the boundary. Reading rule: the block for index i of a
//   matched prefix comes from the DEEPEST matched node covering index i.
// - The pool holds the KV bytes' bookkeeping and is owned by the engine; it must outlive the
//   tree. The tree never allocates blocks: Insert adopts (Refs) blocks from the caller's block
//   table, and Evict only drops the tree's own references.
//
// Node ids and splits:
// - A NodeId names one node. It stays valid until that node is removed, which only
//   Evict/EvictToBudget/Clear do, and never while the node is locked (Lock) or has a locked
//   descendant. A NodeId of a removed node is stale: IsValid() is false, and Lock/Unlock/
//   Inspect stop (Lock, Unlock) or return nullopt (Inspect); slots carry a generation so a
//   stale id never names a newer node.
// - Insert may split a node N covering [s, e) at p (s < p < e). The NodeId of N keeps naming
//   the LOWER part [p, e); a new node with a new id takes [s, p) and becomes N's parent. So a
//   NodeId always denotes the same root-to-node token path [0, e) and the same blocks, before
//   and after any number of splits. The new upper node inherits N's lock count, so everything
//   locked stays locked and Unlock(N) stays balanced.
//
// Locks: Lock(n) adds one to the lock count of n and of every ancestor. A node whose lock count
// is above zero is never removed, so its blocks keep the tree's references. For every node,
//   lock_count = num_direct_locks (Lock calls on it, minus Unlocks) + sum over its children.
//
// Retention (ARCHITECTURE.md invariant 9): Retain puts a RetentionMark on the nodes covering a
// token range (splitting where the range ends inside an edge, so nothing past it is kept);
// the policy's Level ranks marked leaves after all others, so retention decides what goes
// LAST and never whether something can go. Marks end when ExpireRetention passes their
// until_ms, or when CapRetention trims the oldest beyond a share; a hit (RefreshRetention)
// makes them last their duration again. Nodes that Insert adds past the sequence's prompt
// (num_prompt) are `generated`: level 0, the first to go, until a prompt sends them back.
//
// Thread safety: none; the engine thread owns the tree (and the pool). Match(touch = false)
// and the const accessors change nothing (ARCHITECTURE.md invariant 5), so they may run
// concurrently with each other, but not with any mutating call.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "base/typed_id.h"
#include "kv/block_key.h"
#include "kv/block_pool.h"
#include "prefix/eviction_policy.h"
#include "kv/retention_mark.h"

namespace prefixd {

// Slot index in the low 32 bits, slot generation in the high bits (see "Node ids" above).
using NodeId = TypedId<struct NodeIdTag, int64_t>;

struct MatchResult {
  // Length of the longest prefix of the query present in the tree, in tokens. It may end
  // inside an edge and inside a block.
  int64_t num_tokens = 0;
  // Blocks covering positions [0, num_tokens): ceil(num_tokens / block_size) of them, index i
  // from the deepest matched node covering i. Not Ref'ed: the caller Refs what it adopts,
  // before the next mutating call on the tree.
  std::vector<BlockId> blocks;
  // Deepest node reached; the match may end inside its edge (num_tokens < its end). Invalid
  // when num_tokens == 0. Lock it to keep the matched blocks in the tree.
  NodeId node;
};

// A node as seen from outside, for tests, stats and debugging.
struct NodeInfo {
  NodeId parent;  // invalid for the children of a salt's root
  int64_t start = 0;
  int64_t end = 0;
  std::vector<int32_t> tokens;  // the edge, positions [start, end)
  std::vector<BlockId> blocks;  // indices start / bs .. (end - 1) / bs
  int lock_count = 0;
  int num_direct_locks = 0;
  int num_children = 0;
  NodeStats stats;
  RetentionMark retention;
  int64_t marked_ms = 0;  // when the mark was last set or refreshed
};

// A node that leaves the tree: passed to the removal observer just before (the node is still
// in the tree during the call: PathTokens(node) works; spans are valid during the call only),
// and listed by an EvictionPlan (spans valid until the tree next changes).
struct RemovedNode {
  NodeId node;
  std::string_view salt;
  int64_t start = 0;
  std::span<const int32_t> tokens;
  std::span<const BlockId> blocks;
  // Keys of the full blocks that END inside the edge, indices start / bs .. end / bs - 1, as
  // Insert was given them (empty when it was given none), and the key of the block before the
  // first of them (the chain's root for block 0).
  std::span<const BlockKey> keys;
  BlockKey parent_key;
  // The node's retention mark (none: priority 0), so a lower tier can keep ranking it.
  RetentionMark retention;
  // The node holds only tokens a sequence generated and no prompt has sent back: the lowest
  // rank, in a lower tier too.
  bool generated = false;
};

// What an eviction would remove, proposed by RadixTree::PrepareEviction* (the tree decides
// what goes, in policy order) and carried out by ApplyEviction, with nothing changing the tree
// in between. A parent follows its last child: each node is a leaf when its turn comes.
struct EvictionPlan {
  struct Entry {
    RemovedNode node;
    // Tokens [start - start % bs, start): the first block's part above the node, so a caller
    // can rebuild every full block the node holds without walking the path (empty when the
    // node starts on a block boundary or has no keys).
    std::vector<int32_t> lead;
  };
  std::vector<Entry> nodes;     // in removal order
  int num_freed_blocks = 0;     // pool blocks that become free (refcount 0)
  int num_uncached_blocks = 0;  // blocks the tree stops referencing (cached_blocks() drop)
  bool empty() const { return nodes.empty(); }
};

class RadixTree {
 public:
  // `pool` must outlive the tree. `block_size` >= 1 is the pool's tokens per block.
  // `policy` ranks eviction candidates; null means LruPolicy.
  RadixTree(BlockPool* pool, int block_size, std::unique_ptr<EvictionPolicy> policy = nullptr);
  // Drops every reference the tree holds, locked nodes included.
  ~RadixTree();
  RadixTree(const RadixTree&) = delete;
  RadixTree& operator=(const RadixTree&) = delete;

  // Longest prefix of `tokens` cached under `salt` (see MatchResult). Never splits a node.
  // touch = false: no side effect at all (probe, stats). touch = true and a hit: advances the
  // logical clock once and stamps every node on the matched path, the partially matched one
  // included. Cost: O(matched tokens + nodes on the path), memcmp-speed edge comparison, one
  // allocation (the block vector); nothing per token.
  MatchResult Match(std::string_view salt, std::span<const int32_t> tokens, bool touch);
  // Match(salt, tokens, /*touch=*/false), callable on a const tree.
  MatchResult Peek(std::string_view salt, std::span<const int32_t> tokens) const;

  // Indexes a sequence. `blocks` is its block table: block i holds positions [i*bs, (i+1)*bs)
  // of `tokens`; at least ceil(tokens.size() / bs) entries (extra ones are ignored), each with
  // refcount >= 1. The already-present part keeps the tree's existing blocks; for the new part
  // the tree Refs the caller's blocks (the caller keeps its own references). May split one
  // node where the sequence diverges (see "Node ids and splits"). A sequence already fully
  // present (possibly ending inside an edge) changes nothing but recency. Advances the clock
  // once and stamps the path like Match(touch = true).
  // Precondition (stops otherwise): where the new branch diverges inside a block from a node
  // that this call splits, its block for that index differs from the split node's (the caller
  // copied before writing, see BlockTable::PrepareWrite).
  // `keys`, when given, are the chain keys of (at least) every full block of `tokens`; each new
  // node stores those of the blocks that end inside it (see RemovedNode::keys), so eviction and
  // offload never rehash a path. Nodes already present keep what they have.
  // `num_prompt` (-1: all of `tokens`) is where the sequence's generated tokens start: a new
  // node that starts at or after it is `generated`, and a node of the path that ends at or
  // before it stops being so.
  void Insert(std::string_view salt, std::span<const int32_t> tokens,
              std::span<const BlockId> blocks, const BlockKeyChain* keys = nullptr,
              int64_t num_prompt = -1);

  // Marks the nodes that cover positions [begin, end) of `tokens`'s path under `salt` with
  // `mark` (merged with a mark already there: RetentionMark::Merge), as far as the path is in
  // the tree; where `end` falls inside an edge, the node is split there first, so that no
  // token past `end` is marked. `now_ms` is when the mark was set (CapRetention trims the
  // oldest first). Returns the number of tokens of the marked nodes (an edge marked twice
  // counts twice). A mark with priority 0 or an empty range changes nothing.
  int64_t Retain(std::string_view salt, std::span<const int32_t> tokens, int64_t begin,
                 int64_t end, const RetentionMark& mark, int64_t now_ms);
  // A hit on `node` (a MatchResult's): every mark on its path lasts its duration from
  // `now_ms` again. An invalid NodeId is a no-op.
  void RefreshRetention(NodeId node, int64_t now_ms);
  // Ends every mark whose until_ms <= now_ms (the leaf is ranked again without it). Returns
  // the number of tokens that stopped being retained.
  int64_t ExpireRetention(int64_t now_ms);
  // Ends the marks set or refreshed longest ago until retained_tokens() <= max_tokens.
  // Returns the number of tokens that stopped being retained. `demoted`, when given, gets each
  // node whose mark ended, as an eviction plan would list it, with the mark it had (spans
  // valid until the tree next changes): the cache copies them a tier down, still retained.
  int64_t CapRetention(int64_t max_tokens, std::vector<EvictionPlan::Entry>* demoted = nullptr);
  // Tokens on the path of `tokens` under `salt` that carry a mark (no side effect).
  int64_t RetainedPrefixTokens(std::string_view salt, std::span<const int32_t> tokens) const;

  // Lock/Unlock count on `node` and its ancestors. An invalid (default) NodeId is a no-op, so
  // the result of a Match with no hit can be locked and unlocked like any other. A stale id
  // stops. Unlock of a node without a matching Lock stops.
  void Lock(NodeId node);
  void Unlock(NodeId node);

  // Eviction is a plan, then its application (Prepare/Apply). The Prepare calls change
  // nothing; they list unlocked leaves, lowest policy priority first, repeatedly (a parent
  // left without children becomes a candidate), until the goal is met or nothing unlocked is
  // left:
  //   PrepareEviction(n):            at least n blocks become free in the pool (a block still
  //                                  held by a sequence or by the parent is not counted)
  //   PrepareEvictionToBudget(max):  cached_blocks() <= max
  //   PrepareClear():                every unlocked node
  EvictionPlan PrepareEviction(int num_blocks) const;
  EvictionPlan PrepareEvictionToBudget(int max_blocks) const;
  EvictionPlan PrepareClear() const;
  // Removes the plan's nodes in order. Returns the number of blocks that became free in the
  // pool (plan.num_freed_blocks). Precondition (stops otherwise): the tree did not change
  // since the plan was prepared.
  int ApplyEviction(const EvictionPlan& plan);
  // ApplyEviction(Prepare...(...)) in one call; each returns the blocks that became free.
  int Evict(int num_blocks) { return ApplyEviction(PrepareEviction(num_blocks)); }
  int EvictToBudget(int max_blocks) { return ApplyEviction(PrepareEvictionToBudget(max_blocks)); }
  int Clear() { return ApplyEviction(PrepareClear()); }

  // See RemovedNode. The observer must not call the tree's mutating methods.
  void SetRemovalObserver(std::function<void(const RemovedNode&)> observer) {
    removal_observer_ = std::move(observer);
  }

  bool IsValid(NodeId node) const;
  std::optional<NodeInfo> Inspect(NodeId node) const;
  // Tokens of the path from the salt's root to the end of `node`: positions [0, end).
  std::vector<int32_t> PathTokens(NodeId node) const;

  // Number of distinct pool blocks the tree references.
  int cached_blocks() const { return num_cached_blocks_; }
  // Number of token positions the tree covers (sum of edge lengths; shared prefixes once).
  int64_t cached_tokens() const { return num_cached_tokens_; }
  // Nodes other than the per-salt roots.
  int num_nodes() const { return num_nodes_; }
  int num_leaves() const { return num_leaves_; }
  int num_evictable() const { return static_cast<int>(evictable_.size()); }
  int num_salts() const { return static_cast<int>(roots_.size()); }
  // Token positions (edge lengths) of the nodes that carry a retention mark.
  int64_t retained_tokens() const { return num_retained_tokens_; }
  int num_retained_nodes() const { return static_cast<int>(retained_by_until_.size()); }
  // The earliest until_ms of any mark; INT64_MAX when none.
  int64_t next_retention_expiry() const;
  int block_size() const { return block_size_; }
  uint64_t clock() const { return clock_; }

  // Stops the process if any structural invariant is broken: empty or mis-keyed edge, children
  // not distinguished by first token, position discontinuity, block list length not matching
  // the covered range, siblings diverging inside a block sharing a physical block, lock counts
  // not equal to direct locks plus children's, a parent's tick older than a child's, tree
  // reference counts or the pool's refcounts (which must be >= the tree's references) out of
  // step, node/leaf/token/block counters wrong, or the eviction index out of date.
  // O(nodes + tokens + pool blocks): for tests.
  void CheckInvariants() const;

 private:
  struct Node {
    uint32_t generation = 0;  // bumped when the slot is freed
    bool in_use = false;
    bool is_root = false;
    int32_t parent = -1;          // slot index; -1 for roots
    int64_t start = 0;            // first position covered; the edge covers [start, start + size)
    std::vector<int32_t> tokens;  // the edge; empty only for roots
    std::vector<BlockId> blocks;  // indices start / bs .. (end - 1) / bs; empty for roots
    // Keys of indices start / bs .. end / bs - 1 and of the block before (see RemovedNode);
    // `keyed` says whether Insert gave them (else both are empty).
    bool keyed = false;
    std::vector<BlockKey> keys;
    BlockKey parent_key;
    absl::flat_hash_map<int32_t, int32_t> children;  // first edge token -> slot
    int32_t lock_count = 0;                          // direct locks + sum of children's lock counts
    int32_t num_direct_locks = 0;                    // Lock(this) minus Unlock(this)
    uint64_t last_access_tick = 0;
    uint64_t num_hits = 0;
    // In evictable_ (with evict_level, evict_priority) exactly when: not a root, no children,
    // unlocked.
    bool evictable = false;
    int evict_level = 0;
    double evict_priority = 0.0;
    // Retention: in retained_by_until_ and retained_by_age_ (keyed by until_ms and marked_ms)
    // exactly when retention.marked().
    RetentionMark retention;
    int64_t marked_ms = 0;  // when the mark was last set or refreshed
    bool generated = false;  // see Insert's num_prompt
    std::string salt;  // roots only

    int64_t end() const { return start + static_cast<int64_t>(tokens.size()); }
  };

  // What CheckInvariants counted by walking the tree, compared with the maintained counters.
  struct InvariantCounts {
    std::vector<int32_t> refs;  // per block: nodes listing it
    int num_nodes = 0;
    int num_leaves = 0;
    int num_evictable = 0;
    int num_reached = 0;  // roots included
    int64_t num_tokens = 0;
    int num_marked = 0;
    int64_t num_retained_tokens = 0;
  };

  // Result of walking a query down the tree, without side effects.
  struct Walk {
    int32_t deepest = -1;  // slot of the deepest node reached, -1 when nothing matched
    int64_t num_tokens = 0;
  };

  void CheckCounts(const InvariantCounts& counts) const;
  Walk WalkPath(std::string_view salt, std::span<const int32_t> tokens,
                std::vector<BlockId>* blocks) const;
  int32_t RootFor(std::string_view salt) const;
  int32_t NewNode();
  NodeId IdOf(int32_t slot) const;
  int32_t SlotOf(NodeId node) const;  // stops on a stale or malformed id
  int32_t FirstIndex(int64_t start) const { return static_cast<int32_t>(start / block_size_); }
  int NumBlocksFor(int64_t start, int64_t end) const {
    return static_cast<int>((end - 1) / block_size_ - start / block_size_ + 1);
  }
  NodeStats StatsOf(const Node& n) const;
  // Brings n's membership and priority in evictable_ up to date.
  void RefreshEvictable(int32_t slot);
  // Stamps slot and its ancestors with a new tick.
  void Touch(int32_t slot);
  // Splits `slot` after `offset` edge tokens; returns the new upper node's slot.
  int32_t Split(int32_t slot, int64_t offset);
  void AddTreeRef(BlockId block);
  // Returns true when the block became free in the pool.
  bool DropTreeRef(BlockId block);
  // Removes an evictable leaf (and its salt's root if that is left empty); returns the
  // number of blocks that became free.
  int RemoveLeaf(int32_t slot);
  // The plan of Prepare*: candidates in policy order until done(freed, cached) is true.
  template <typename Done>
  EvictionPlan PlanEviction(Done done) const;
  // The view of a node the observer and plans get.
  RemovedNode ViewOf(int32_t slot) const;
  // Tokens [start - start % bs, start) of `slot`'s path.
  std::vector<int32_t> LeadTokens(int32_t slot) const;
  // Keys of a new node over [start, end) from `keys` (nullptr: none).
  void AssignKeys(Node& node, const BlockKeyChain* keys) const;
  // Sets (merging) or clears the mark of `slot`, keeping the retention indexes and counters
  // and the leaf's rank up to date.
  int64_t MarkNode(int32_t slot, const RetentionMark& mark, int64_t now_ms);
  void SetMark(int32_t slot, const RetentionMark& mark, int64_t marked_ms);
  // Removes the mark from the indexes and counters; `rerank`: and re-ranks the leaf.
  void ClearMark(int32_t slot, bool rerank = true);
  // Clears `generated` on the nodes from `slot` up whose end is at most `num_prompt`.
  void MarkPrompt(int32_t slot, int64_t num_prompt);
  using EvictKey = std::tuple<int, double, int32_t>;  // (level, priority, slot)
  EvictKey RankOf(int32_t slot) const;

  BlockPool* pool_;
  int block_size_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::function<void(const RemovedNode&)> removal_observer_;

  // Slots; a deque so that references survive NewNode(). Freed slots are reused via free_slots_.
  std::deque<Node> nodes_;
  std::vector<int32_t> free_slots_;
  // One root per cache salt; a root exists only while it has children.
  absl::flat_hash_map<std::string, int32_t> roots_;
  // Evictable leaves ordered by (level, priority, slot).
  absl::btree_set<EvictKey> evictable_;
  // Marked nodes by (until_ms, slot) and by (marked_ms, slot).
  absl::btree_set<std::pair<int64_t, int32_t>> retained_by_until_;
  absl::btree_set<std::pair<int64_t, int32_t>> retained_by_age_;
  int64_t num_retained_tokens_ = 0;  // sum of the edge lengths of marked nodes
  // tree_refs_[b]: number of nodes listing block b (the tree's references to it in the pool).
  std::vector<int32_t> tree_refs_;
  int num_cached_blocks_ = 0;  // blocks with tree_refs_ > 0
  int64_t num_cached_tokens_ = 0;
  int num_nodes_ = 0;
  int num_leaves_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace prefixd
