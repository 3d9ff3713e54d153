#include "kv/state_snapshots.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"

namespace prefixd {

StateSnapshots::StateSnapshots(int num_blocks, int64_t state_floats)
    : state_floats_(state_floats), entries_(num_blocks) {
  PREFIXD_CHECK(state_floats > 0, "a state snapshot store needs a state of at least one float");
}

void StateSnapshots::Put(BlockId block, int64_t position, std::span<const float> state) {
  PREFIXD_CHECK(block.value() >= 0 && block.value() < static_cast<int>(entries_.size()),
                "state snapshot on a block id out of range");
  PREFIXD_CHECK(static_cast<int64_t>(state.size()) == state_floats_,
                "state snapshot of the wrong size");
  PREFIXD_CHECK(position > 0, "a state snapshot is taken after at least one token");
  std::vector<Entry>& entries = entries_[block.value()];
  for (Entry& e : entries) {
    if (e.position == position) {
      e.state.assign(state.begin(), state.end());
      e.last_used = ++tick_;
      return;
    }
  }
  entries.push_back(Entry{position, std::vector<float>(state.begin(), state.end()), ++tick_});
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::span<const float> StateSnapshots::Get(BlockId block, int64_t position) const {
  for (const Entry& e : entries_[block.value()]) {
    if (e.position == position) return e.state;
  }
  return {};
}

int64_t StateSnapshots::PositionAtMost(BlockId block, int64_t limit) const {
  int64_t best = -1;
  for (const Entry& e : entries_[block.value()]) {
    if (e.position <= limit) best = std::max(best, e.position);
  }
  return best;
}

void StateSnapshots::Touch(BlockId block, int64_t position) {
  for (Entry& e : entries_[block.value()]) {
    if (e.position == position) e.last_used = ++tick_;
  }
}

bool StateSnapshots::DropLeastRecentlyUsed() {
  // A scan of every block: this runs only when the snapshots exceed their budget, and a pool
  // has thousands of blocks, not millions.
  std::vector<Entry>* oldest_block = nullptr;
  size_t oldest_index = 0;
  for (std::vector<Entry>& entries : entries_) {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (oldest_block == nullptr || entries[i].last_used < (*oldest_block)[oldest_index].last_used) {
        oldest_block = &entries;
        oldest_index = i;
      }
    }
  }
  if (oldest_block == nullptr) return false;
  oldest_block->erase(oldest_block->begin() + static_cast<std::ptrdiff_t>(oldest_index));
  if (oldest_block->empty()) *oldest_block = {};  // give the memory back now
  count_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void StateSnapshots::Drop(BlockId block) {
  std::vector<Entry>& entries = entries_[block.value()];
  if (entries.empty()) return;
  count_.fetch_sub(static_cast<int64_t>(entries.size()), std::memory_order_relaxed);
  entries = {};  // give the memory back now: snapshots can be megabytes
}

bool StateSnapshots::AppendBytes(BlockId block, int64_t position,
                                 std::vector<uint8_t>* bytes) const {
  const std::span<const float> state = Get(block, position);
  if (state.empty()) return false;
  const size_t at = bytes->size();
  bytes->resize(at + state_bytes());
  std::memcpy(bytes->data() + at, state.data(), state_bytes());
  return true;
}

bool StateSnapshots::PutBytes(BlockId block, int64_t position, std::span<const uint8_t> bytes) {
  if (static_cast<int64_t>(bytes.size()) != state_bytes()) return false;
  std::vector<float> state(state_floats_);
  std::memcpy(state.data(), bytes.data(), bytes.size());
  Put(block, position, state);
  return true;
}

int64_t StateSnapshots::ResumePoint(std::span<const BlockId> blocks, int64_t num_tokens,
                                    int block_size) const {
  if (num_tokens <= 0) return 0;
  PREFIXD_CHECK(static_cast<int64_t>(blocks.size()) * block_size >= num_tokens,
                "ResumePoint: the blocks do not cover the tokens");
  for (int64_t j = (num_tokens - 1) / block_size; j >= 0; --j) {
    const int64_t p =
        PositionAtMost(blocks[j], std::min<int64_t>(num_tokens, (j + 1) * block_size));
    if (p > j * block_size) return p;
  }
  return 0;
}

}  // namespace prefixd
