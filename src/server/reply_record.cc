#include "server/reply_record.h"

#include <iterator>
#include <random>

#include <xxhash.h>

#include "base/check.h"

namespace prefixd {

namespace {

// The key is hashed with a seed made from the salt (and the process's random seed), so that
// ("ab", "c") and ("a", "bc") hash apart; no buffer is allocated for the pair.
uint64_t DefaultHash(std::string_view salt, std::string_view key, uint64_t seed) {
  const uint64_t salt_seed = XXH3_64bits_withSeed(salt.data(), salt.size(), seed);
  return XXH3_64bits_withSeed(key.data(), key.size(), salt_seed);
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

ReplyRecord::ReplyRecord(Options options, Hasher hasher)
    : options_(options), hasher_(hasher != nullptr ? hasher : &DefaultHash), seed_(RandomSeed()) {}

size_t ReplyRecord::Bytes(std::string_view salt, std::string_view key, const GeneratedReply& reply) {
  // The fixed part stands for the list node, the index node and the shared_ptr's block.
  constexpr size_t kOverhead = 160;
  return kOverhead + salt.size() + key.size() + reply.text.size() + reply.prompt_tail.size() + reply.tokens.size() * sizeof(int32_t) +
         (reply.ends.size() + reply.mid_char_ends.size()) * sizeof(uint32_t);
}

ReplyRecord::List::iterator ReplyRecord::FindLocked(uint64_t hash, std::string_view salt, std::string_view key) {
  auto [first, last] = index_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    const Entry& e = *it->second;
    if (e.salt == salt && e.key == key) return it->second;
  }
  return lru_.end();
}

void ReplyRecord::EraseLocked(List::iterator it) {
  auto [first, last] = index_.equal_range(it->hash);
  for (auto i = first; i != last; ++i) {
    if (i->second == it) {
      index_.erase(i);
      break;
    }
  }
  bytes_ -= it->bytes;
  lru_.erase(it);
}

bool ReplyRecord::Insert(std::string_view salt, std::string key, GeneratedReply reply) {
  const size_t bytes = Bytes(salt, key, reply);
  if (bytes > options_.max_bytes || options_.max_entries == 0) return false;
  const uint64_t hash = hasher_(salt, key, seed_);
  auto shared = std::make_shared<const GeneratedReply>(std::move(reply));
  MutexLock lock(&mu_);
  if (auto old = FindLocked(hash, salt, key); old != lru_.end()) EraseLocked(old);
  lru_.push_front(Entry{hash, std::string(salt), std::move(key), std::move(shared), bytes});
  index_.emplace(hash, lru_.begin());
  bytes_ += bytes;
  while (bytes_ > options_.max_bytes || lru_.size() > options_.max_entries) {
    EraseLocked(std::prev(lru_.end()));
    ++evictions_;
  }
  return true;
}

std::shared_ptr<const GeneratedReply> ReplyRecord::Find(std::string_view salt, std::string_view key, bool touch) {
  const uint64_t hash = hasher_(salt, key, seed_);
  MutexLock lock(&mu_);
  auto it = FindLocked(hash, salt, key);
  if (it == lru_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  // splice keeps every iterator valid, so the index needs no update.
  if (touch) lru_.splice(lru_.begin(), lru_, it);
  return it->reply;
}

ReplyRecord::Stats ReplyRecord::stats() const {
  MutexLock lock(&mu_);
  Stats s;
  s.num_entries = static_cast<int64_t>(lru_.size());
  s.bytes = static_cast<int64_t>(bytes_);
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  return s;
}

void ReplyRecord::CheckInvariants() const {
  MutexLock lock(&mu_);
  PREFIXD_CHECK(index_.size() == lru_.size(), "every recorded reply is indexed exactly once");
  size_t bytes = 0;
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    const Entry& e = *it;
    PREFIXD_CHECK(e.hash == hasher_(e.salt, e.key, seed_), "an entry is indexed under its key's hash");
    PREFIXD_CHECK(e.bytes == Bytes(e.salt, e.key, *e.reply), "an entry's byte count matches its contents");
    int found = 0;
    auto [first, last] = index_.equal_range(e.hash);
    for (auto i = first; i != last; ++i) found += i->second == it ? 1 : 0;
    PREFIXD_CHECK(found == 1, "the index points at every entry once");
    int same_key = 0;
    for (auto i = first; i != last; ++i) {
      same_key += i->second->salt == e.salt && i->second->key == e.key ? 1 : 0;
    }
    PREFIXD_CHECK(same_key == 1, "one entry per (salt, key): a new reply replaces the old");
    const GeneratedReply& r = *e.reply;
    PREFIXD_CHECK(r.tokens.size() == r.ends.size(), "a reply has one end per token");
    for (size_t i = 0; i < r.ends.size(); ++i) {
      PREFIXD_CHECK(r.ends[i] >= r.start_of(i) && r.ends[i] <= r.text.size(), "token ends ascend within the text");
    }
    for (size_t k = 0; k < r.mid_char_ends.size(); ++k) {
      PREFIXD_CHECK(r.mid_char_ends[k] + size_t{1} < r.tokens.size() && (k == 0 || r.mid_char_ends[k - 1] < r.mid_char_ends[k]),
                    "tokens that end inside a character ascend, and the last token ends between characters");
    }
    bytes += e.bytes;
  }
  PREFIXD_CHECK(bytes == bytes_, "the byte count is the sum of the entries'");
  PREFIXD_CHECK(bytes_ <= options_.max_bytes, "the record stays within its byte budget");
  PREFIXD_CHECK(lru_.size() <= options_.max_entries, "the record stays within its entry budget");
}

}  // namespace prefixd
