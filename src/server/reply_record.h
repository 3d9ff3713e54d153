// ReplyRecord: the replies this server generated, each with the token ids that spelled it, so
// that a chat which sends a reply back (the assistant message of the next turn) can be
// prompted with the ids the model generated instead of a re-tokenization of the text, which
// often differs and would make the reply's tokens miss the prefix cache (reply_prompt.h).
//
//   generation ends:  Insert(salt, key, {text, tokens, ends})
//   next turn:        Find(salt, key of the assistant message) -> the same reply, or null
//
// The key is what the client got and sends back (reply_prompt.h ReplyKey): the reply's text,
// or, for a reply with tool calls, the text outside the calls and the ids the server gave
// them. An entry is found by a 64-bit hash of (cache salt, key), seeded at random per process
// so that a client cannot aim collisions at a bucket; a hit is verified byte for byte against
// the stored salt and key, so a collision is a miss, never another tenant's reply.
// Bounded: at most `max_entries` entries and `max_bytes` bytes (Bytes(): text, salt, ids and
// a fixed overhead); the least recently used entries go first. A reply larger than the whole
// byte budget is not recorded.
//
// Thread safety: every method may be called from any thread (one mutex, held for the
// bookkeeping only; a found reply is shared, immutable, and outlives its eviction).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"

namespace prefixd {

// One generated reply. `tokens[i]` spells text [ends[i-1], ends[i]) (ends[-1] = 0): the ids
// cover text [0, covered_bytes()), all of it unless a stop string cut the text inside a token
// (that token and those after it are left out). Control tokens spell no bytes.
struct GeneratedReply {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<uint32_t> ends;  // one per token, non-decreasing, each <= text.size()
  // The end of the prompt the reply was generated after (its generation prompt, at most 256
  // bytes): where the reply sits when it is sent back, if the template renders it as it was
  // generated.
  std::string prompt_tail;

  size_t covered_bytes() const { return ends.empty() ? 0 : ends.back(); }
  // Where token i starts in the text.
  size_t start_of(size_t i) const { return i == 0 ? 0 : ends[i - 1]; }
};

class ReplyRecord {
 public:
  struct Options {
    size_t max_bytes = size_t{64} << 20;
    size_t max_entries = 100000;
  };
  // The hash of an entry's key; tests pass one that collides on purpose.
  using Hasher = uint64_t (*)(std::string_view salt, std::string_view key, uint64_t seed);

  explicit ReplyRecord(Options options, Hasher hasher = nullptr);

  // Records `reply` under (`salt`, `key`), as the most recently used entry; an entry with the
  // same salt and key is replaced (the newest generation wins). Evicts least recently used entries
  // until both budgets hold. False (and nothing recorded) when the reply alone is larger
  // than max_bytes, or max_entries is 0.
  bool Insert(std::string_view salt, std::string key, GeneratedReply reply);

  // The reply recorded under exactly `salt` and `key`, or null. `touch`: it becomes the most
  // recently used (the probe and count_tokens pass false: observing changes nothing).
  std::shared_ptr<const GeneratedReply> Find(std::string_view salt, std::string_view key, bool touch);

  struct Stats {
    int64_t num_entries = 0;
    int64_t bytes = 0;
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t evictions = 0;  // entries dropped for the budgets (not replacements)
  };
  Stats stats() const;
  const Options& options() const { return options_; }

  // What one entry costs against max_bytes.
  static size_t Bytes(std::string_view salt, std::string_view key, const GeneratedReply& reply);

  // Aborts (PREFIXD_CHECK) when the bookkeeping is broken: the index and the list disagree,
  // a byte count is off, a budget is exceeded, a reply's ends are out of order.
  void CheckInvariants() const;

 private:
  struct Entry {
    uint64_t hash;
    std::string salt;
    std::string key;
    std::shared_ptr<const GeneratedReply> reply;
    size_t bytes;
  };
  using List = std::list<Entry>;

  // The entry for (salt, key) with this hash, or lru_.end(). REQUIRES: mu_ held.
  List::iterator FindLocked(uint64_t hash, std::string_view salt, std::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(List::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Hasher hasher_;
  const uint64_t seed_;
  mutable Mutex mu_;
  // Front: most recently used. Every entry is in index_ exactly once, under its hash.
  List lru_ ABSL_GUARDED_BY(mu_);
  std::unordered_multimap<uint64_t, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // sum of the entries' bytes, <= max_bytes
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prefixd
