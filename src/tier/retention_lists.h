// The two recency lists a tier store keeps for retention (ARCHITECTURE.md invariant 9), as
// HostStore and DiskStore both keep them: ordinary entries in `lru`, retained ones (a marked
// RetentionMark) in `kept`, which the budget empties only once `lru` is empty; `kept_bytes` is
// what `kept` holds and `next_expiry_ms` a time no mark in `kept` ends before. Entries are any
// type with `int64_t bytes` and `RetentionMark mark`. The caller holds its store's lock.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kv/retention_mark.h"

namespace prefixd {

template <typename List>
struct RetentionLists {
  List& lru;
  List& kept;
  int64_t& kept_bytes;
  int64_t& next_expiry_ms;

  // Gives `it` (in either list) `mark` and moves it to the list that mark belongs in, at its
  // most recent end or its least recent one. Iterators stay valid.
  void Place(typename List::iterator it, const RetentionMark& mark, bool most_recent) {
    List& from = it->mark.marked() ? kept : lru;
    List& to = mark.marked() ? kept : lru;
    if (it->mark.marked()) kept_bytes -= it->bytes;
    if (mark.marked()) {
      kept_bytes += it->bytes;
      next_expiry_ms = std::min(next_expiry_ms, mark.until_ms);
    }
    it->mark = mark;
    to.splice(most_recent ? to.begin() : to.end(), from, it);
  }

  // Unmarks every entry whose mark ended by `now_ms`; it joins `lru` as its least recent (it
  // stopped being kept long ago as far as recency goes). Returns how many.
  int Expire(int64_t now_ms) {
    if (now_ms < next_expiry_ms) return 0;
    int n = 0;
    int64_t next = INT64_MAX;
    for (auto it = kept.begin(); it != kept.end();) {
      auto cur = it++;
      if (cur->mark.until_ms > now_ms) {
        next = std::min(next, cur->mark.until_ms);
        continue;
      }
      Place(cur, RetentionMark{}, /*most_recent=*/false);
      ++n;
    }
    next_expiry_ms = next;
    return n;
  }
};

}  // namespace prefixd
