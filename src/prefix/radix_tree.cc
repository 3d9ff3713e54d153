#include "prefix/radix_tree.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <climits>
#include <queue>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "base/check.h"

namespace prefixd {
namespace {

constexpr uint32_t kGenerationMask = 0x7fffffff;  // keeps NodeId values non-negative

// Length of the common prefix of a[0, n) and b[0, n). Whole chunks go through memcmp (which
// is vectorised) so a long shared edge costs a few cycles per token; only the chunk holding
// the first difference is scanned token by token.
int64_t CommonPrefix(const int32_t* a, const int32_t* b, int64_t n) {
  constexpr int64_t kChunk = 64;
  int64_t i = 0;
  while (i + kChunk <= n && std::memcmp(a + i, b + i, kChunk * sizeof(int32_t)) == 0) i += kChunk;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

RadixTree::RadixTree(BlockPool* pool, int block_size, std::unique_ptr<EvictionPolicy> policy)
    : pool_(pool),
      block_size_(block_size),
      policy_(policy ? std::move(policy) : std::make_unique<LruPolicy>()),
      tree_refs_(pool->num_blocks(), 0) {
  PREFIXD_CHECK(pool_ != nullptr, "RadixTree needs a block pool");
  PREFIXD_CHECK(block_size_ >= 1, "RadixTree block size must be at least 1");
}

RadixTree::~RadixTree() {
  for (const Node& n : nodes_) {
    if (!n.in_use) continue;
    for (BlockId b : n.blocks) pool_->Unref(b);
  }
}

// ---- ids and slots ----

NodeId RadixTree::IdOf(int32_t slot) const {
  return NodeId((static_cast<int64_t>(nodes_[slot].generation) << 32) | slot);
}

bool RadixTree::IsValid(NodeId node) const {
  if (!node.valid()) return false;
  const int64_t slot = node.value() & 0xffffffff;
  const uint32_t generation = static_cast<uint32_t>(node.value() >> 32);
  if (slot >= static_cast<int64_t>(nodes_.size())) return false;
  const Node& n = nodes_[slot];
  return n.in_use && !n.is_root && n.generation == generation;
}

int32_t RadixTree::SlotOf(NodeId node) const {
  PREFIXD_CHECK(IsValid(node),
                "stale NodeId: its node was evicted or cleared (only locked nodes are kept)");
  return static_cast<int32_t>(node.value() & 0xffffffff);
}

int32_t RadixTree::NewNode() {
  int32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  nodes_[slot].in_use = true;
  return slot;
}

int32_t RadixTree::RootFor(std::string_view salt) const {
  // Debian's absl has its own string_view type, which the heterogeneous lookup needs.
  auto it = roots_.find(absl::string_view(salt.data(), salt.size()));
  return it == roots_.end() ? -1 : it->second;
}

NodeStats RadixTree::StatsOf(const Node& n) const {
  NodeStats s;
  s.last_access_tick = n.last_access_tick;
  s.num_hits = n.num_hits;
  s.start = n.start;
  s.num_tokens = static_cast<int64_t>(n.tokens.size());
  s.num_blocks = static_cast<int>(n.blocks.size());
  s.retention_priority = n.retention.priority;
  s.generated = n.generated;
  return s;
}

// ---- block references ----

void RadixTree::AddTreeRef(BlockId block) {
  PREFIXD_CHECK(block.valid() && block.value() < static_cast<int32_t>(tree_refs_.size()),
                "Insert with a block id outside the pool");
  pool_->Ref(block);
  if (tree_refs_[block.value()]++ == 0) ++num_cached_blocks_;
}

bool RadixTree::DropTreeRef(BlockId block) {
  PREFIXD_CHECK(tree_refs_[block.value()] > 0, "the tree drops a block it does not reference");
  if (--tree_refs_[block.value()] == 0) --num_cached_blocks_;
  const bool becomes_free = pool_->RefCount(block) == 1;
  pool_->Unref(block);
  return becomes_free;
}

// ---- match ----

RadixTree::Walk RadixTree::WalkPath(std::string_view salt, std::span<const int32_t> tokens,
                                    std::vector<BlockId>* blocks) const {
  Walk walk;
  const int32_t root = RootFor(salt);
  if (root < 0 || tokens.empty()) return walk;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (blocks != nullptr) blocks->reserve((n + block_size_ - 1) / block_size_);
  int32_t cur = root;
  int64_t pos = 0;
  while (pos < n) {
    const Node& node = nodes_[cur];
    auto it = node.children.find(tokens[pos]);
    if (it == node.children.end()) break;
    const Node& child = nodes_[it->second];
    const int64_t edge = static_cast<int64_t>(child.tokens.size());
    const int64_t k =
        CommonPrefix(child.tokens.data(), tokens.data() + pos, std::min(edge, n - pos));
    if (blocks != nullptr) {
      // child.blocks[0] is block index pos / bs. When pos is inside a block, the parent already
      // supplied that index; the child's copy replaces it (deepest node covering the index).
      const int64_t first = pos / block_size_;
      const int64_t last = (pos + k - 1) / block_size_;
      for (int64_t idx = first; idx <= last; ++idx) {
        const BlockId b = child.blocks[idx - first];
        if (idx < static_cast<int64_t>(blocks->size())) {
          (*blocks)[idx] = b;
        } else {
          blocks->push_back(b);
        }
      }
    }
    walk.deepest = it->second;
    pos += k;
    if (k < edge) break;
    cur = it->second;
  }
  walk.num_tokens = pos;
  return walk;
}

MatchResult RadixTree::Peek(std::string_view salt, std::span<const int32_t> tokens) const {
  MatchResult result;
  const Walk walk = WalkPath(salt, tokens, &result.blocks);
  result.num_tokens = walk.num_tokens;
  if (walk.deepest >= 0) result.node = IdOf(walk.deepest);
  return result;
}

MatchResult RadixTree::Match(std::string_view salt, std::span<const int32_t> tokens, bool touch) {
  MatchResult result = Peek(salt, tokens);
  if (touch && result.node.valid()) Touch(SlotOf(result.node));
  return result;
}

void RadixTree::Touch(int32_t slot) {
  const uint64_t tick = ++clock_;
  for (int32_t s = slot; s >= 0 && !nodes_[s].is_root; s = nodes_[s].parent) {
    Node& n = nodes_[s];
    n.last_access_tick = tick;
    ++n.num_hits;
    if (n.evictable) RefreshEvictable(s);  // only a leaf can be evictable: the first one
  }
}

// ---- insert ----

int32_t RadixTree::Split(int32_t slot, int64_t offset) {
  const int32_t up = NewNode();
  Node& upper = nodes_[up];
  Node& lower = nodes_[slot];
  PREFIXD_CHECK(offset > 0 && offset < static_cast<int64_t>(lower.tokens.size()),
                "Split outside the edge");
  const int64_t split_pos = lower.start + offset;
  // A mark covers both halves; it is re-indexed after the edge lengths changed.
  const RetentionMark mark = lower.retention;
  const int64_t marked_ms = lower.marked_ms;
  if (mark.marked()) ClearMark(slot, /*rerank=*/false);

  //   before:  lower [start ............ end)      blocks first(start) .. last(end - 1)
  //   after:   upper [start, split_pos)            blocks first(start) .. last(split_pos - 1)
  //            lower           [split_pos, end)    blocks first(split_pos) .. last(end - 1)
  // When split_pos is inside a block, both list that block: one more tree reference.
  upper.parent = lower.parent;
  upper.start = lower.start;
  upper.tokens.assign(lower.tokens.begin(), lower.tokens.begin() + offset);
  const int num_upper_blocks = NumBlocksFor(lower.start, split_pos);
  upper.blocks.assign(lower.blocks.begin(), lower.blocks.begin() + num_upper_blocks);
  const int num_dropped = FirstIndex(split_pos) - FirstIndex(lower.start);
  // Fresh vectors rather than erase(): the lower part should not keep the whole edge's capacity.
  lower.blocks = std::vector<BlockId>(lower.blocks.begin() + num_dropped, lower.blocks.end());
  lower.tokens = std::vector<int32_t>(lower.tokens.begin() + offset, lower.tokens.end());
  lower.start = split_pos;
  if (split_pos % block_size_ != 0) AddTreeRef(lower.blocks.front());
  // Keys go with the block they END in: upper keeps indices before split_pos / bs.
  upper.keyed = lower.keyed;
  upper.parent_key = lower.parent_key;
  if (lower.keyed) {
    const int64_t num_upper_keys = split_pos / block_size_ - upper.start / block_size_;
    upper.keys.assign(lower.keys.begin(), lower.keys.begin() + num_upper_keys);
    lower.keys = std::vector<BlockKey>(lower.keys.begin() + num_upper_keys, lower.keys.end());
    if (!upper.keys.empty()) lower.parent_key = upper.keys.back();
  }

  // Everything locked through `lower` is locked through `upper` as well; Unlock(lower's id)
  // walks through `upper` and keeps the counts balanced.
  upper.lock_count = lower.lock_count;
  upper.num_direct_locks = 0;
  upper.last_access_tick = lower.last_access_tick;
  upper.num_hits = lower.num_hits;
  upper.generated = lower.generated;

  nodes_[upper.parent].children[upper.tokens.front()] = up;
  upper.children.emplace(lower.tokens.front(), slot);
  lower.parent = up;
  ++num_nodes_;
  if (mark.marked()) {
    SetMark(up, mark, marked_ms);
    SetMark(slot, mark, marked_ms);
  }
  RefreshEvictable(slot);  // its stats (start, size, blocks) changed
  return up;
}

void RadixTree::AssignKeys(Node& node, const BlockKeyChain* keys) const {
  if (keys == nullptr) return;
  const int64_t first = node.start / block_size_;
  node.keyed = true;
  node.parent_key = keys->Parent(first);
  node.keys.assign(keys->keys.begin() + first, keys->keys.begin() + node.end() / block_size_);
}

void RadixTree::Insert(std::string_view salt, std::span<const int32_t> tokens,
                       std::span<const BlockId> blocks, const BlockKeyChain* keys,
                       int64_t num_prompt) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return;
  if (num_prompt < 0) num_prompt = n;
  PREFIXD_CHECK(static_cast<int64_t>(blocks.size()) >= (n + block_size_ - 1) / block_size_,
                "Insert with fewer blocks than the tokens need");
  PREFIXD_CHECK(keys == nullptr || keys->size() >= n / block_size_,
                "Insert with fewer keys than the tokens have full blocks");
  int32_t cur = RootFor(salt);
  if (cur < 0) {
    cur = NewNode();
    nodes_[cur].is_root = true;
    nodes_[cur].salt = std::string(salt);
    roots_.emplace(std::string(salt), cur);
  }
  int32_t deepest = -1;
  int64_t pos = 0;
  while (pos < n) {
    auto it = nodes_[cur].children.find(tokens[pos]);
    if (it == nodes_[cur].children.end()) {
      // A new leaf for [pos, n), listing the caller's blocks for its indices.
      const int32_t leaf = NewNode();
      Node& node = nodes_[leaf];
      node.parent = cur;
      node.start = pos;
      node.tokens.assign(tokens.begin() + pos, tokens.end());
      const int64_t first = pos / block_size_;
      const int64_t last = (n - 1) / block_size_;
      node.blocks.reserve(last - first + 1);
      for (int64_t idx = first; idx <= last; ++idx) {
        node.blocks.push_back(blocks[idx]);
        AddTreeRef(blocks[idx]);
      }
      AssignKeys(node, keys);
      node.generated = pos >= num_prompt;
      Node& parent = nodes_[cur];
      if (parent.is_root || !parent.children.empty()) ++num_leaves_;  // else it replaces one
      parent.children.emplace(tokens[pos], leaf);
      ++num_nodes_;
      num_cached_tokens_ += n - pos;
      RefreshEvictable(cur);  // no longer a leaf
      RefreshEvictable(leaf);
      deepest = leaf;
      break;
    }
    const int32_t child = it->second;
    const Node& c = nodes_[child];
    const int64_t edge = static_cast<int64_t>(c.tokens.size());
    const int64_t k = CommonPrefix(c.tokens.data(), tokens.data() + pos, std::min(edge, n - pos));
    deepest = child;
    if (k == edge) {  // the whole edge is present: go down
      cur = child;
      pos += k;
      continue;
    }
    if (pos + k == n) break;  // the sequence ends inside the edge: already present
    // Diverges inside the edge: split there; the next iteration adds the new branch.
    const int64_t split_pos = pos + k;
    cur = Split(child, k);
    PREFIXD_CHECK(split_pos % block_size_ == 0 ||
                      blocks[split_pos / block_size_] != nodes_[child].blocks.front(),
                  "Insert: a sequence diverging inside a block shares that block with the "
                  "cached branch (it wrote into a shared block without copy-on-write)");
    pos = split_pos;
  }
  MarkPrompt(deepest, num_prompt);
  Touch(deepest);
}

void RadixTree::MarkPrompt(int32_t slot, int64_t num_prompt) {
  for (int32_t s = slot; s >= 0 && !nodes_[s].is_root; s = nodes_[s].parent) {
    Node& n = nodes_[s];
    if (!n.generated || n.end() > num_prompt) continue;
    n.generated = false;
    RefreshEvictable(s);
  }
}

// ---- locks ----

void RadixTree::Lock(NodeId node) {
  if (!node.valid()) return;
  const int32_t slot = SlotOf(node);
  ++nodes_[slot].num_direct_locks;
  for (int32_t s = slot; s >= 0; s = nodes_[s].parent) ++nodes_[s].lock_count;
  if (nodes_[slot].evictable) RefreshEvictable(slot);
}

void RadixTree::Unlock(NodeId node) {
  if (!node.valid()) return;
  const int32_t slot = SlotOf(node);
  PREFIXD_CHECK(nodes_[slot].num_direct_locks > 0, "Unlock of a node without a matching Lock");
  --nodes_[slot].num_direct_locks;
  for (int32_t s = slot; s >= 0; s = nodes_[s].parent) {
    PREFIXD_CHECK(--nodes_[s].lock_count >= 0, "lock count below zero");
  }
  RefreshEvictable(slot);
}

// ---- eviction ----

void RadixTree::RefreshEvictable(int32_t slot) {
  Node& n = nodes_[slot];
  if (n.evictable) {
    evictable_.erase({n.evict_level, n.evict_priority, slot});
    n.evictable = false;
  }
  if (!n.is_root && n.children.empty() && n.lock_count == 0) {
    const NodeStats stats = StatsOf(n);
    n.evict_level = policy_->Level(stats);
    n.evict_priority = policy_->Priority(stats);
    evictable_.insert({n.evict_level, n.evict_priority, slot});
    n.evictable = true;
  }
}

int RadixTree::RemoveLeaf(int32_t slot) {
  Node& n = nodes_[slot];
  PREFIXD_CHECK(n.evictable, "removing a node that is not an unlocked leaf");
  if (removal_observer_) removal_observer_(ViewOf(slot));
  evictable_.erase({n.evict_level, n.evict_priority, slot});
  if (n.retention.marked()) ClearMark(slot, /*rerank=*/false);
  int num_freed = 0;
  for (BlockId b : n.blocks) num_freed += DropTreeRef(b) ? 1 : 0;
  num_cached_tokens_ -= static_cast<int64_t>(n.tokens.size());
  --num_nodes_;
  const int32_t parent_slot = n.parent;
  Node& parent = nodes_[parent_slot];
  parent.children.erase(n.tokens.front());
  // Free the slot: a new generation makes every NodeId of this node stale.
  const uint32_t generation = (n.generation + 1) & kGenerationMask;
  n = Node();
  n.generation = generation;
  free_slots_.push_back(slot);

  if (!parent.children.empty()) {
    --num_leaves_;
  } else if (parent.is_root) {
    --num_leaves_;
    roots_.erase(parent.salt);
    const uint32_t root_generation = (parent.generation + 1) & kGenerationMask;
    parent = Node();
    parent.generation = root_generation;
    free_slots_.push_back(parent_slot);
  } else {
    RefreshEvictable(parent_slot);  // a new leaf replaces the removed one
  }
  return num_freed;
}

RemovedNode RadixTree::ViewOf(int32_t slot) const {
  const Node& n = nodes_[slot];
  int32_t root = slot;
  while (!nodes_[root].is_root) root = nodes_[root].parent;
  return RemovedNode{IdOf(slot), nodes_[root].salt, n.start,     n.tokens,    n.blocks,
                     n.keys,     n.parent_key,      n.retention, n.generated};
}

std::vector<int32_t> RadixTree::LeadTokens(int32_t slot) const {
  const int64_t begin = nodes_[slot].start / block_size_ * block_size_;
  std::vector<int32_t> lead(nodes_[slot].start - begin);
  for (int32_t s = nodes_[slot].parent; s >= 0 && !nodes_[s].is_root; s = nodes_[s].parent) {
    const Node& a = nodes_[s];
    for (int64_t p = std::max(a.start, begin); p < a.end(); ++p) lead[p - begin] = a.tokens[p - a.start];
    if (a.start <= begin) break;
  }
  return lead;
}

// Replays what removing leaves one by one would do, without doing it: the next candidate is
// the lowest of the evictable index (walked in order) and the parents the plan has left
// childless (a local heap), exactly the order RemoveLeaf's RefreshEvictable would give.
template <typename Done>
EvictionPlan RadixTree::PlanEviction(Done done) const {
  using Candidate = EvictKey;
  EvictionPlan plan;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> exposed;
  absl::flat_hash_map<int32_t, int32_t> dropped;        // block -> tree references dropped
  absl::flat_hash_map<int32_t, size_t> children_left;   // slot -> children not yet planned
  auto next = evictable_.begin();
  int cached = num_cached_blocks_;
  while (!done(plan.num_freed_blocks, cached)) {
    const bool from_index =
        next != evictable_.end() && (exposed.empty() || *next < exposed.top());
    if (!from_index && exposed.empty()) break;
    const int32_t slot = from_index ? std::get<2>(*(next++)) : std::get<2>(exposed.top());
    if (!from_index) exposed.pop();
    const Node& n = nodes_[slot];
    for (BlockId b : n.blocks) {
      const int32_t d = ++dropped[b.value()];
      if (d == tree_refs_[b.value()]) --cached;
      if (d == pool_->RefCount(b)) ++plan.num_freed_blocks;
    }
    EvictionPlan::Entry entry{ViewOf(slot), {}};
    if (n.keyed && n.start % block_size_ != 0 && !n.keys.empty()) entry.lead = LeadTokens(slot);
    plan.nodes.push_back(std::move(entry));
    const Node& parent = nodes_[n.parent];
    if (parent.is_root) continue;
    size_t& left = children_left.try_emplace(n.parent, parent.children.size()).first->second;
    if (--left == 0 && parent.lock_count == 0) {
      exposed.push(RankOf(n.parent));
    }
  }
  plan.num_uncached_blocks = num_cached_blocks_ - cached;
  return plan;
}

EvictionPlan RadixTree::PrepareEviction(int num_blocks) const {
  return PlanEviction([&](int freed, int) { return freed >= num_blocks; });
}

EvictionPlan RadixTree::PrepareEvictionToBudget(int max_blocks) const {
  return PlanEviction([&](int, int cached) { return cached <= max_blocks; });
}

EvictionPlan RadixTree::PrepareClear() const {
  return PlanEviction([](int, int) { return false; });
}

int RadixTree::ApplyEviction(const EvictionPlan& plan) {
  int num_freed = 0;
  for (const EvictionPlan::Entry& e : plan.nodes) num_freed += RemoveLeaf(SlotOf(e.node.node));
  PREFIXD_CHECK(num_freed == plan.num_freed_blocks,
                "ApplyEviction freed other blocks than planned (the tree changed in between)");
  return num_freed;
}

// ---- retention ----

RadixTree::EvictKey RadixTree::RankOf(int32_t slot) const {
  const NodeStats stats = StatsOf(nodes_[slot]);
  return EvictKey(policy_->Level(stats), policy_->Priority(stats), slot);
}

void RadixTree::SetMark(int32_t slot, const RetentionMark& mark, int64_t marked_ms) {
  Node& n = nodes_[slot];
  if (n.retention.marked()) ClearMark(slot, /*rerank=*/false);
  n.retention = mark;
  n.marked_ms = marked_ms;
  retained_by_until_.insert({mark.until_ms, slot});
  retained_by_age_.insert({marked_ms, slot});
  num_retained_tokens_ += static_cast<int64_t>(n.tokens.size());
  RefreshEvictable(slot);
}

void RadixTree::ClearMark(int32_t slot, bool rerank) {
  Node& n = nodes_[slot];
  if (!n.retention.marked()) return;
  retained_by_until_.erase({n.retention.until_ms, slot});
  retained_by_age_.erase({n.marked_ms, slot});
  num_retained_tokens_ -= static_cast<int64_t>(n.tokens.size());
  n.retention = RetentionMark{};
  n.marked_ms = 0;
  if (rerank) RefreshEvictable(slot);
}

int64_t RadixTree::MarkNode(int32_t slot, const RetentionMark& mark, int64_t now_ms) {
  RetentionMark fresh = mark;
  fresh.until_ms = std::max(mark.until_ms, now_ms + mark.duration_ms);
  SetMark(slot, RetentionMark::Merge(nodes_[slot].retention, fresh), now_ms);
  return static_cast<int64_t>(nodes_[slot].tokens.size());
}

int64_t RadixTree::Retain(std::string_view salt, std::span<const int32_t> tokens, int64_t begin,
                          int64_t end, const RetentionMark& mark, int64_t now_ms) {
  end = std::min<int64_t>(end, static_cast<int64_t>(tokens.size()));
  begin = std::max<int64_t>(begin, 0);
  int32_t cur = RootFor(salt);
  if (!mark.marked() || begin >= end || cur < 0) return 0;
  int64_t num_marked = 0;
  int64_t pos = 0;
  while (pos < end) {
    auto it = nodes_[cur].children.find(tokens[pos]);
    if (it == nodes_[cur].children.end()) break;
    int32_t child = it->second;
    const int64_t edge = static_cast<int64_t>(nodes_[child].tokens.size());
    const int64_t k = CommonPrefix(nodes_[child].tokens.data(), tokens.data() + pos,
                                   std::min(edge, end - pos));
    // The edge is wanted up to `stop`: where the range ends or the path leaves the tree.
    const int64_t stop = pos + k;
    if (stop < pos + edge) child = Split(child, k);  // k >= 1: children differ in token 0
    if (stop > begin) num_marked += MarkNode(child, mark, now_ms);
    if (stop < pos + edge) break;
    pos = stop;
    cur = child;
  }
  return num_marked;
}

void RadixTree::RefreshRetention(NodeId node, int64_t now_ms) {
  if (!node.valid()) return;
  for (int32_t s = SlotOf(node); s >= 0 && !nodes_[s].is_root; s = nodes_[s].parent) {
    const Node& n = nodes_[s];
    if (n.retention.marked()) SetMark(s, n.retention.RefreshedAt(now_ms), now_ms);
  }
}

int64_t RadixTree::ExpireRetention(int64_t now_ms) {
  int64_t num_expired = 0;
  while (!retained_by_until_.empty() && retained_by_until_.begin()->first <= now_ms) {
    const int32_t slot = retained_by_until_.begin()->second;
    num_expired += static_cast<int64_t>(nodes_[slot].tokens.size());
    ClearMark(slot);
  }
  return num_expired;
}

int64_t RadixTree::CapRetention(int64_t max_tokens, std::vector<EvictionPlan::Entry>* demoted) {
  int64_t num_demoted = 0;
  while (num_retained_tokens_ > max_tokens && !retained_by_age_.empty()) {
    const int32_t slot = retained_by_age_.begin()->second;
    const Node& n = nodes_[slot];
    num_demoted += static_cast<int64_t>(n.tokens.size());
    if (demoted != nullptr) {
      EvictionPlan::Entry entry{ViewOf(slot), {}};
      if (n.keyed && n.start % block_size_ != 0 && !n.keys.empty()) entry.lead = LeadTokens(slot);
      demoted->push_back(std::move(entry));
    }
    ClearMark(slot);
  }
  return num_demoted;
}

int64_t RadixTree::next_retention_expiry() const {
  return retained_by_until_.empty() ? INT64_MAX : retained_by_until_.begin()->first;
}

int64_t RadixTree::RetainedPrefixTokens(std::string_view salt,
                                        std::span<const int32_t> tokens) const {
  const Walk walk = WalkPath(salt, tokens, nullptr);
  int64_t retained = 0;
  for (int32_t s = walk.deepest; s >= 0 && !nodes_[s].is_root; s = nodes_[s].parent) {
    const Node& n = nodes_[s];
    if (n.retention.marked()) retained += std::min(n.end(), walk.num_tokens) - n.start;
  }
  return retained;
}

// ---- inspection ----

std::optional<NodeInfo> RadixTree::Inspect(NodeId node) const {
  if (!IsValid(node)) return std::nullopt;
  const Node& n = nodes_[SlotOf(node)];
  NodeInfo info;
  if (!nodes_[n.parent].is_root) info.parent = IdOf(n.parent);
  info.start = n.start;
  info.end = n.end();
  info.tokens = n.tokens;
  info.blocks = n.blocks;
  info.lock_count = n.lock_count;
  info.num_direct_locks = n.num_direct_locks;
  info.num_children = static_cast<int>(n.children.size());
  info.stats = StatsOf(n);
  info.retention = n.retention;
  info.marked_ms = n.marked_ms;
  return info;
}

std::vector<int32_t> RadixTree::PathTokens(NodeId node) const {
  std::vector<const Node*> path;
  for (int32_t s = SlotOf(node); !nodes_[s].is_root; s = nodes_[s].parent)
    path.push_back(&nodes_[s]);
  std::vector<int32_t> out;
  out.reserve(path.front()->end());
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    out.insert(out.end(), (*it)->tokens.begin(), (*it)->tokens.end());
  }
  return out;
}

void RadixTree::CheckInvariants() const {
  InvariantCounts counts;
  counts.refs.assign(tree_refs_.size(), 0);
  std::vector<int32_t> stack;
  for (const auto& [salt, root] : roots_) {
    PREFIXD_CHECK(root >= 0 && root < static_cast<int32_t>(nodes_.size()),
                  "root slot out of range");
    const Node& r = nodes_[root];
    PREFIXD_CHECK(r.in_use && r.is_root && r.salt == salt && r.parent == -1,
                  "a salt's root is not a root node of that salt");
    PREFIXD_CHECK(r.tokens.empty() && r.blocks.empty() && r.start == 0 && r.num_direct_locks == 0,
                  "a root holds tokens, blocks or direct locks");
    PREFIXD_CHECK(!r.children.empty(), "an empty root was not removed");
    stack.push_back(root);
  }
  while (!stack.empty()) {
    const int32_t s = stack.back();
    stack.pop_back();
    ++counts.num_reached;
    const Node& n = nodes_[s];
    int64_t child_locks = 0;
    absl::flat_hash_set<int32_t> boundary_blocks;
    for (const auto& [token, c] : n.children) {
      PREFIXD_CHECK(c >= 0 && c < static_cast<int32_t>(nodes_.size()), "child slot out of range");
      const Node& child = nodes_[c];
      PREFIXD_CHECK(child.in_use && !child.is_root, "a child slot is free or a root");
      PREFIXD_CHECK(child.parent == s, "a child's parent link does not point back");
      PREFIXD_CHECK(!child.tokens.empty(), "a child edge is empty");
      PREFIXD_CHECK(child.tokens.front() == token,
                    "children not distinguished by their first token (mis-keyed child)");
      PREFIXD_CHECK(child.start == n.end(), "a child does not start where its parent ends");
      PREFIXD_CHECK(static_cast<int>(child.blocks.size()) == NumBlocksFor(child.start, child.end()),
                    "a node's block list does not match the block indices it covers");
      PREFIXD_CHECK(n.is_root || child.last_access_tick <= n.last_access_tick,
                    "a child was accessed later than its parent");
      if (child.start % block_size_ != 0) {
        PREFIXD_CHECK(boundary_blocks.insert(child.blocks.front().value()).second,
                      "siblings diverging inside a block share that physical block");
      }
      child_locks += child.lock_count;
      stack.push_back(c);
    }
    PREFIXD_CHECK(n.num_direct_locks >= 0, "negative direct lock count");
    PREFIXD_CHECK(n.lock_count == n.num_direct_locks + child_locks,
                  "lock count != direct locks + sum of children's lock counts");
    if (n.is_root) continue;
    ++counts.num_nodes;
    counts.num_tokens += static_cast<int64_t>(n.tokens.size());
    for (BlockId b : n.blocks) {
      PREFIXD_CHECK(b.valid() && b.value() < static_cast<int32_t>(counts.refs.size()),
                    "a node lists a block outside the pool");
      ++counts.refs[b.value()];
    }
    if (n.children.empty()) ++counts.num_leaves;
    if (n.retention.marked()) {
      ++counts.num_marked;
      counts.num_retained_tokens += static_cast<int64_t>(n.tokens.size());
      PREFIXD_CHECK(retained_by_until_.contains({n.retention.until_ms, s}) &&
                        retained_by_age_.contains({n.marked_ms, s}),
                    "a marked node is missing from the retention indexes");
    }
    const bool should_be_evictable = n.children.empty() && n.lock_count == 0;
    PREFIXD_CHECK(n.evictable == should_be_evictable,
                  "eviction index out of date: an unlocked leaf is missing or another node is in");
    if (should_be_evictable) {
      ++counts.num_evictable;
      PREFIXD_CHECK(EvictKey(n.evict_level, n.evict_priority, s) == RankOf(s),
                    "an evictable leaf's rank is stale");
      PREFIXD_CHECK(evictable_.contains({n.evict_level, n.evict_priority, s}),
                    "an evictable leaf is missing from the eviction index");
    }
  }
  CheckCounts(counts);
}

void RadixTree::CheckCounts(const InvariantCounts& counts) const {
  const std::vector<int32_t>& refs = counts.refs;
  int num_in_use = 0;
  for (const Node& n : nodes_) num_in_use += n.in_use ? 1 : 0;
  PREFIXD_CHECK(num_in_use == counts.num_reached, "a node in use is unreachable from every root");
  PREFIXD_CHECK(
      num_in_use + static_cast<int>(free_slots_.size()) == static_cast<int>(nodes_.size()),
      "free slot list out of step");
  PREFIXD_CHECK(counts.num_nodes == num_nodes_, "node count out of step");
  PREFIXD_CHECK(counts.num_leaves == num_leaves_, "leaf count out of step");
  PREFIXD_CHECK(counts.num_tokens == num_cached_tokens_, "cached token count out of step");
  PREFIXD_CHECK(counts.num_evictable == static_cast<int>(evictable_.size()),
                "eviction index holds nodes that are not unlocked leaves");
  PREFIXD_CHECK(counts.num_marked == static_cast<int>(retained_by_until_.size()) &&
                    counts.num_marked == static_cast<int>(retained_by_age_.size()),
                "retention indexes hold nodes that carry no mark");
  PREFIXD_CHECK(counts.num_retained_tokens == num_retained_tokens_,
                "retained token count out of step");
  int num_blocks = 0;
  for (size_t b = 0; b < refs.size(); ++b) {
    PREFIXD_CHECK(refs[b] == tree_refs_[b], "tree reference count of a block out of step");
    PREFIXD_CHECK(pool_->RefCount(BlockId(static_cast<int32_t>(b))) >= refs[b],
                  "a block's pool refcount is below the tree's references to it");
    num_blocks += refs[b] > 0 ? 1 : 0;
  }
  PREFIXD_CHECK(num_blocks == num_cached_blocks_, "cached block count out of step");
}

}  // namespace prefixd
