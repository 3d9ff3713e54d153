#include "server/reply_record.h"

#include <algorithm>
#include <atomic>
#include <list>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

GeneratedReply Reply(std::string text, std::vector<int32_t> tokens) {
  GeneratedReply r;
  r.text = std::move(text);
  // One byte per token, as far as the text goes.
  for (size_t i = 0; i < tokens.size(); ++i) r.ends.push_back(static_cast<uint32_t>(std::min(i + 1, r.text.size())));
  r.tokens = std::move(tokens);
  return r;
}

// Everything lands in one of two buckets: keys collide all the time.
uint64_t CollidingHash(std::string_view, std::string_view key, uint64_t) { return key.size() % 2; }

TEST(ReplyRecord, FindsOnlyTheExactTextUnderTheSameSalt) {
  ReplyRecord record({});
  ASSERT_TRUE(record.Insert("tenant-a", "Once upon a time", Reply("Once upon a time", {5, 6, 7})));
  auto hit = record.Find("tenant-a", "Once upon a time", true);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->tokens, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(record.Find("tenant-b", "Once upon a time", true), nullptr);
  EXPECT_EQ(record.Find("tenant-a", "Once upon a time ", true), nullptr);
  EXPECT_EQ(record.Find("tenant-a", "Once upon a tim", true), nullptr);
  EXPECT_EQ(record.stats().hits, 1);
  EXPECT_EQ(record.stats().misses, 3);
  record.CheckInvariants();
}

TEST(ReplyRecord, CollidingHashesAreToldApartByTheirText) {
  ReplyRecord record({}, &CollidingHash);
  ASSERT_TRUE(record.Insert("", "aa", Reply("aa", {1})));
  ASSERT_TRUE(record.Insert("", "bb", Reply("bb", {2})));
  ASSERT_TRUE(record.Insert("x", "aa", Reply("aa", {3})));
  record.CheckInvariants();
  EXPECT_EQ(record.Find("", "aa", true)->tokens, std::vector<int32_t>{1});
  EXPECT_EQ(record.Find("", "bb", true)->tokens, std::vector<int32_t>{2});
  EXPECT_EQ(record.Find("x", "aa", true)->tokens, std::vector<int32_t>{3});
  EXPECT_EQ(record.Find("", "cc", true), nullptr);
}

TEST(ReplyRecord, TheNewestReplyForATextReplacesTheOld) {
  ReplyRecord record({});
  record.Insert("", "hi", Reply("hi", {1, 2}));
  record.Insert("", "hi", Reply("hi", {3}));
  EXPECT_EQ(record.stats().num_entries, 1);
  EXPECT_EQ(record.stats().evictions, 0);
  EXPECT_EQ(record.Find("", "hi", true)->tokens, std::vector<int32_t>{3});
  record.CheckInvariants();
}

TEST(ReplyRecord, EvictsTheLeastRecentlyUsedAndRefusesWhatCannotFit) {
  const size_t one = ReplyRecord::Bytes("", "a", Reply("a", {1}));
  ReplyRecord record({.max_bytes = 2 * one, .max_entries = 100});
  record.Insert("", "a", Reply("a", {1}));
  record.Insert("", "b", Reply("b", {2}));
  ASSERT_NE(record.Find("", "a", true), nullptr);  // a is now the most recent
  record.Insert("", "c", Reply("c", {3}));              // b goes
  EXPECT_EQ(record.Find("", "b", false), nullptr);
  EXPECT_NE(record.Find("", "a", false), nullptr);
  EXPECT_NE(record.Find("", "c", false), nullptr);
  EXPECT_EQ(record.stats().evictions, 1);
  EXPECT_FALSE(record.Insert("", "x", Reply(std::string(2 * one, 'x'), {1})));
  EXPECT_EQ(record.stats().num_entries, 2);
  record.CheckInvariants();

  ReplyRecord none({.max_bytes = 1 << 20, .max_entries = 0});
  EXPECT_FALSE(none.Insert("", "a", Reply("a", {1})));
}

TEST(ReplyRecord, FindWithoutTouchLeavesTheOrderAlone) {
  const size_t one = ReplyRecord::Bytes("", "a", Reply("a", {1}));
  ReplyRecord record({.max_bytes = 2 * one, .max_entries = 100});
  record.Insert("", "a", Reply("a", {1}));
  record.Insert("", "b", Reply("b", {2}));
  ASSERT_NE(record.Find("", "a", false), nullptr);  // a stays the least recent
  record.Insert("", "c", Reply("c", {3}));
  EXPECT_EQ(record.Find("", "a", false), nullptr);
  EXPECT_NE(record.Find("", "b", false), nullptr);
}

// The reference: a list, most recent first, searched linearly.
struct RefEntry {
  std::string salt;
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<uint32_t> mid_char_ends;
  size_t bytes;
};

class RefRecord {
 public:
  explicit RefRecord(ReplyRecord::Options o) : o_(o) {}
  bool Insert(const std::string& salt, const GeneratedReply& r) {
    const size_t bytes = ReplyRecord::Bytes(salt, r.text, r);
    if (bytes > o_.max_bytes || o_.max_entries == 0) return false;
    Erase(salt, r.text);
    list_.push_front({salt, r.text, r.tokens, r.mid_char_ends, bytes});
    while (Bytes() > o_.max_bytes || list_.size() > o_.max_entries) {
      list_.pop_back();
      ++evictions;
    }
    return true;
  }
  const RefEntry* Find(const std::string& salt, const std::string& text, bool touch) {
    for (auto it = list_.begin(); it != list_.end(); ++it) {
      if (it->salt == salt && it->text == text) {
        if (touch) list_.splice(list_.begin(), list_, it);
        return &*it;
      }
    }
    return nullptr;
  }
  size_t Bytes() const {
    size_t b = 0;
    for (const RefEntry& e : list_) b += e.bytes;
    return b;
  }
  size_t size() const { return list_.size(); }
  int64_t evictions = 0;

 private:
  void Erase(const std::string& salt, const std::string& text) {
    list_.remove_if([&](const RefEntry& e) { return e.salt == salt && e.text == text; });
  }
  ReplyRecord::Options o_;
  std::list<RefEntry> list_;
};

// Thousands of random inserts and finds, with and without touching, against the list; the
// budgets are small so that evictions and replacements happen all the time, and half the
// runs hash everything into two buckets.
TEST(ReplyRecord, RandomizedAgainstAList) {
  const std::vector<std::string> salts = {"", "a", "b"};
  std::vector<std::string> texts;
  for (int i = 0; i < 12; ++i) texts.push_back(std::string(1 + i % 5, static_cast<char>('a' + i)));
  for (int run = 0; run < 8; ++run) {
    std::mt19937 rng(100 + run);
    // Run 0 refuses every reply (each costs more than 150 bytes); the others keep a few.
    const ReplyRecord::Options o{.max_bytes = 150 + 100 * static_cast<size_t>(run),
                                 .max_entries = 1 + static_cast<size_t>(run % 5)};
    ReplyRecord record(o, run % 2 == 0 ? &CollidingHash : nullptr);
    RefRecord ref(o);
    for (int op = 0; op < 3000; ++op) {
      const std::string& salt = salts[rng() % salts.size()];
      const std::string& text = texts[rng() % texts.size()];
      if (rng() % 2 == 0) {
        std::vector<int32_t> tokens(rng() % 6);
        for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 1000);
        GeneratedReply r = Reply(text, tokens);
        // Some tokens end inside a replaced character (never the last): they cost bytes too.
        for (uint32_t i = 0; i + 1 < r.tokens.size(); ++i) {
          if (rng() % 3 == 0) r.mid_char_ends.push_back(i);
        }
        ASSERT_EQ(record.Insert(salt, r.text, r), ref.Insert(salt, r)) << "op " << op;
      } else {
        const bool touch = rng() % 3 != 0;
        auto got = record.Find(salt, text, touch);
        const RefEntry* want = ref.Find(salt, text, touch);
        ASSERT_EQ(got != nullptr, want != nullptr) << "run " << run << " op " << op;
        if (got) {
          EXPECT_EQ(got->text, text);
          EXPECT_EQ(got->tokens, want->tokens);
          EXPECT_EQ(got->mid_char_ends, want->mid_char_ends);
        }
      }
      record.CheckInvariants();
      const ReplyRecord::Stats s = record.stats();
      ASSERT_EQ(static_cast<size_t>(s.num_entries), ref.size()) << "op " << op;
      ASSERT_EQ(static_cast<size_t>(s.bytes), ref.Bytes()) << "op " << op;
      ASSERT_EQ(s.evictions, ref.evictions) << "op " << op;
    }
  }
}

// Writers and readers at once (run under TSan by scripts/test.sh): every reply found is the
// one asked for, and the record is consistent afterwards.
TEST(ReplyRecord, ConcurrentInsertsAndFinds) {
  ReplyRecord record({.max_bytes = 64 << 10, .max_entries = 64});
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 2000; ++i) {
        const std::string text = "reply " + std::to_string(rng() % 200);
        if (rng() % 2 == 0) {
          record.Insert("s", text, Reply(text, {static_cast<int32_t>(text.size())}));
        } else if (auto r = record.Find("s", text, rng() % 2 == 0)) {
          if (r->text != text || r->tokens != std::vector<int32_t>{static_cast<int32_t>(text.size())}) ++wrong;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  record.CheckInvariants();
  EXPECT_LE(record.stats().num_entries, 64);
}

}  // namespace
}  // namespace prefixd
