#include "server/call_grammar.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

namespace {

using Kind = GrammarNode::Kind;

// Phases shared by the bracketed kinds (kObject, kMap, kArray).
enum BracketPhase : int32_t {
  kOpen,        // expects the opening bracket
  kFirst,       // after it: the first member or the closing bracket
  kKey,         // kObject: inside a key (lo, hi, pos); kMap: a key was pushed, ':' next
  kColonSpace,  // kMap: after ':', expects ' '
  kAfter,       // after a member: ',' or the closing bracket
  kSpace,       // after ',': expects ' '
  kNext,        // after ", ": the next member must start
};

enum StringPhase : int32_t { kQuote, kBody, kEscape, kHex, kUtf8 };
enum RepeatPhase : int32_t {
  kFirstItem,  // the first item is next
  kBetween,    // after an item: the separator, or the end
  kSeparator,  // inside the separator (pos: bytes matched)
};
enum NumberPhase : int32_t { kSign, kMinus, kZero, kInt, kDot, kFrac };

bool IsDigit(uint8_t b) { return b >= '0' && b <= '9'; }
bool IsHex(uint8_t b) { return IsDigit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }

}  // namespace

int32_t CallGrammar::Add(GrammarNode node) {
  nodes.push_back(std::move(node));
  return static_cast<int32_t>(nodes.size()) - 1;
}

int32_t CallGrammar::AddChoice(std::vector<std::pair<std::string, int32_t>> alternatives) {
  GrammarNode n;
  n.kind = Kind::kChoice;
  std::sort(alternatives.begin(), alternatives.end());
  alternatives.erase(std::unique(alternatives.begin(), alternatives.end(),
                                 [](const auto& a, const auto& b) { return a.first == b.first; }),
                     alternatives.end());
  n.alternatives = std::move(alternatives);
  return Add(std::move(n));
}

int32_t CallGrammar::AddSequence(std::vector<int32_t> children) {
  GrammarNode n;
  n.kind = Kind::kSequence;
  n.children = std::move(children);
  return Add(std::move(n));
}

int32_t CallGrammar::AddUnion(const std::array<int32_t, GrammarNode::kNumSlots>& by_type) {
  int32_t only = -1, num = 0;
  for (int32_t node : by_type) {
    if (node >= 0) {
      only = node;
      ++num;
    }
  }
  if (num == 1) return only;
  GrammarNode n;
  n.kind = Kind::kUnion;
  n.by_type = by_type;
  return Add(std::move(n));
}

int32_t CallGrammar::AddRepeat(int32_t item, std::string separator, int32_t max_count) {
  if (max_count <= 1) return item;
  PREFIXD_CHECK(!separator.empty(), "CallGrammar::AddRepeat: an empty separator cannot tell another item from the end");
  GrammarNode n;
  n.kind = Kind::kRepeat;
  n.item = item;
  n.separator = std::move(separator);
  n.min_count = 1;
  n.max_count = max_count;
  return Add(std::move(n));
}

CallMatcher::CallMatcher(std::shared_ptr<const CallGrammar> grammar) : grammar_(std::move(grammar)) {
  stack_.reserve(32);
  Push(grammar_->root);
}

std::unique_ptr<ByteMatcher> CallMatcher::Clone() const { return std::make_unique<CallMatcher>(*this); }

void CallMatcher::CopyFrom(const ByteMatcher& other) {
  // Assignment keeps stack_'s capacity: testing a token allocates nothing.
  stack_ = static_cast<const CallMatcher&>(other).stack_;
}

void CallMatcher::Push(int32_t node) {
  Frame f;
  f.node = node;
  const GrammarNode& n = grammar_->nodes[static_cast<size_t>(node)];
  if (n.kind == Kind::kChoice) f.hi = static_cast<int32_t>(n.alternatives.size());
  stack_.push_back(f);
}

bool CallMatcher::Feed(uint8_t b) {
  for (;;) {
    if (stack_.empty()) return false;  // the text was whole: nothing may follow
    switch (StepFrame(b)) {
      case Step::kTaken: return true;
      case Step::kDone:
        stack_.pop_back();
        // A sequence whose last part just ended ends too, as does a repeat after its last
        // allowed item, so IsComplete() is exact.
        while (!stack_.empty() && Ended(stack_.back())) stack_.pop_back();
        return true;
      case Step::kPass: stack_.pop_back(); continue;  // ended before `b`: the parent reads it
      case Step::kRetry: continue;                    // a new frame on top reads `b`
      case Step::kDead: return false;
    }
  }
}

bool CallMatcher::Ended(const Frame& f) const {
  const GrammarNode& n = grammar_->nodes[static_cast<size_t>(f.node)];
  if (n.kind == Kind::kSequence) return f.phase >= static_cast<int32_t>(n.children.size());
  if (n.kind == Kind::kRepeat) return f.phase == kBetween && f.count >= n.max_count;
  return false;
}

bool CallMatcher::CanEnd() const {
  for (const Frame& f : stack_) {
    const GrammarNode& n = grammar_->nodes[static_cast<size_t>(f.node)];
    const bool may_end = (n.kind == Kind::kRepeat && f.phase == kBetween && f.count >= n.min_count) ||
                         (n.kind == Kind::kSequence && f.phase >= static_cast<int32_t>(n.children.size()));
    if (!may_end) return false;
  }
  return true;
}

CallMatcher::Step CallMatcher::StepFrame(uint8_t b) {
  Frame& f = stack_.back();
  const GrammarNode& n = grammar_->nodes[static_cast<size_t>(f.node)];
  switch (n.kind) {
    case Kind::kChoice: return StepChoice(f, n, b);
    case Kind::kSequence:
      if (f.phase >= static_cast<int32_t>(n.children.size())) return Step::kPass;
      Push(n.children[static_cast<size_t>(f.phase++)]);  // f is not used after the push
      return Step::kRetry;
    case Kind::kString: return StepString(f, n, b);
    case Kind::kNumber: return StepNumber(f, n, b);
    case Kind::kObject: return StepObject(f, n, b);
    case Kind::kMap: return StepMap(f, n, b);
    case Kind::kArray: return StepArray(f, n, b);
    case Kind::kUnion: return StepUnion(n, b);
    case Kind::kRepeat: return StepRepeat(f, n, b);
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepChoice(Frame& f, const GrammarNode& n, uint8_t b) {
  // Alternatives are sorted, so those matching the bytes read form the range [lo, hi), and
  // one that ends here (length pos) is its first.
  const auto& alts = n.alternatives;
  const size_t pos = static_cast<size_t>(f.pos);
  int32_t lo = f.lo, hi = f.lo;
  for (int32_t i = f.lo; i < f.hi; ++i) {
    const std::string& text = alts[static_cast<size_t>(i)].first;
    if (text.size() > pos && static_cast<uint8_t>(text[pos]) == b) {
      if (hi == lo) lo = i;
      hi = i + 1;
    }
  }
  if (hi == lo) {
    // No alternative goes on with `b`: one that ended before it (an enum value that is a
    // prefix of another, "1" of "10") is the choice, and `b` belongs to what follows.
    const auto& first = alts[static_cast<size_t>(f.lo)];
    if (first.first.size() != pos) return Step::kDead;
    if (first.second < 0) return Step::kPass;
    stack_.pop_back();
    Push(first.second);
    return Step::kRetry;
  }
  f.lo = lo;
  f.hi = hi;
  f.pos += 1;
  const auto& first = alts[static_cast<size_t>(lo)];
  if (hi - lo > 1 || first.first.size() != static_cast<size_t>(f.pos)) return Step::kTaken;
  if (first.second < 0) return Step::kDone;
  stack_.pop_back();  // the choice is made: what follows it takes its place
  Push(first.second);
  return Step::kTaken;
}

bool CallMatcher::NarrowKey(Frame& f, const GrammarNode& n, uint8_t b) {
  // Properties come in the schema's order: after property count-1, any later one may come,
  // up to and including the next required one.
  const int32_t first = f.count;
  const int32_t last = n.next_required[static_cast<size_t>(first)];
  const size_t pos = static_cast<size_t>(f.pos);
  int32_t lo = f.lo, hi = f.lo;
  for (int32_t k = f.lo; k < f.hi; ++k) {
    const int32_t p = n.key_order[static_cast<size_t>(k)];
    if (p < first || p > last || p >= static_cast<int32_t>(n.properties.size())) continue;
    const std::string& key = n.properties[static_cast<size_t>(p)].key;
    if (key.size() > pos && static_cast<uint8_t>(key[pos]) == b) {
      if (hi == lo) lo = k;
      hi = k + 1;
    }
  }
  if (hi == lo) return false;
  f.lo = lo;
  f.hi = hi;
  f.pos += 1;
  return true;
}

CallMatcher::Step CallMatcher::StepObject(Frame& f, const GrammarNode& n, uint8_t b) {
  const int32_t num = static_cast<int32_t>(n.properties.size());
  const bool closable = n.next_required[static_cast<size_t>(f.count)] == num;
  switch (f.phase) {
    case kOpen:
      if (b != '{') return Step::kDead;
      f.phase = kFirst;
      return Step::kTaken;
    case kFirst:
    case kNext:
      if (b == '}' && f.phase == kFirst && closable) return Step::kDone;
      f.phase = kKey;
      f.lo = 0;
      f.hi = num;
      f.pos = 0;
      [[fallthrough]];
    case kKey: {
      if (!NarrowKey(f, n, b)) return Step::kDead;
      const int32_t p = n.key_order[static_cast<size_t>(f.lo)];
      const GrammarNode::Property& prop = n.properties[static_cast<size_t>(p)];
      if (f.hi - f.lo > 1 || prop.key.size() != static_cast<size_t>(f.pos)) return Step::kTaken;
      // Keys end with `": `, so a whole key is the only candidate left.
      f.count = p + 1;
      f.phase = kAfter;
      Push(prop.value);
      return Step::kTaken;
    }
    case kAfter:
    case kSpace: return StepAfterMember(f, b, '}', closable, f.count < num);
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepMap(Frame& f, const GrammarNode& n, uint8_t b) {
  switch (f.phase) {
    case kOpen:
      if (b != '{') return Step::kDead;
      f.phase = kFirst;
      return Step::kTaken;
    case kFirst:
    case kNext:
      if (b == '}' && f.phase == kFirst) return Step::kDone;
      f.phase = kKey;
      ++f.count;
      Push(n.key);
      return Step::kRetry;
    case kKey:
      if (b != ':') return Step::kDead;
      f.phase = kColonSpace;
      return Step::kTaken;
    case kColonSpace:
      if (b != ' ') return Step::kDead;
      f.phase = kAfter;
      Push(n.item);
      return Step::kTaken;
    case kAfter:
    case kSpace: return StepAfterMember(f, b, '}', /*may_close=*/true, f.count < n.max_count);
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepArray(Frame& f, const GrammarNode& n, uint8_t b) {
  switch (f.phase) {
    case kOpen:
      if (b != '[') return Step::kDead;
      f.phase = kFirst;
      return Step::kTaken;
    case kFirst:
    case kNext:
      if (b == ']' && f.phase == kFirst && n.min_count == 0) return Step::kDone;
      if (f.count >= n.max_count) return Step::kDead;
      f.phase = kAfter;
      ++f.count;
      Push(n.item);
      return Step::kRetry;
    case kAfter:
    case kSpace: return StepAfterMember(f, b, ']', f.count >= n.min_count, f.count < n.max_count);
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepAfterMember(Frame& f, uint8_t b, uint8_t close, bool may_close,
                                               bool may_continue) {
  if (f.phase == kSpace) {
    if (b != ' ') return Step::kDead;
    f.phase = kNext;
    return Step::kTaken;
  }
  if (b == close && may_close) return Step::kDone;
  if (b == ',' && may_continue) {
    f.phase = kSpace;
    return Step::kTaken;
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepString(Frame& f, const GrammarNode& n, uint8_t b) {
  switch (f.phase) {
    case kQuote:
      if (b != '"') return Step::kDead;
      f.phase = kBody;
      return Step::kTaken;
    case kBody:
      if (b == '"') return f.count >= n.min_count ? Step::kDone : Step::kDead;
      if (b < 0x20 || f.count >= n.max_count) return Step::kDead;
      if (b == '\\') {
        f.phase = kEscape;
      } else if (b >= 0x80) {
        // Well-formed UTF-8 only (Unicode table 3-7): the JSON parser refuses anything else.
        // lo/hi bound the next continuation byte; aux counts those still to come.
        f.lo = 0x80;
        f.hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
          f.aux = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
          f.aux = 2;
          if (b == 0xE0) f.lo = 0xA0;
          if (b == 0xED) f.hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
          f.aux = 3;
          if (b == 0xF0) f.lo = 0x90;
          if (b == 0xF4) f.hi = 0x8F;
        } else {
          return Step::kDead;
        }
        f.phase = kUtf8;
      }
      ++f.count;
      return Step::kTaken;
    case kEscape:
      if (b == 'u') {
        f.phase = kHex;
        f.pos = 4;
        f.aux = 0;
        return Step::kTaken;
      }
      if (b != '"' && b != '\\' && b != '/' && b != 'b' && b != 'f' && b != 'n' && b != 'r' && b != 't') {
        return Step::kDead;
      }
      f.phase = kBody;
      return Step::kTaken;
    case kHex:
      if (!IsHex(b)) return Step::kDead;
      // No surrogates (\uD800..\uDFFF): a lone one is refused by the parser, and a pair
      // would need the matcher to pair them.
      if (f.pos == 4 && (b == 'd' || b == 'D')) f.aux = 1;
      if (f.pos == 3 && f.aux == 1 && !(b >= '0' && b <= '7')) return Step::kDead;
      if (--f.pos == 0) f.phase = kBody;
      return Step::kTaken;
    case kUtf8:
      if (b < f.lo || b > f.hi) return Step::kDead;
      f.lo = 0x80;
      f.hi = 0xBF;
      if (--f.aux == 0) f.phase = kBody;
      return Step::kTaken;
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepNumber(Frame& f, const GrammarNode& n, uint8_t b) {
  switch (f.phase) {
    case kSign:
    case kMinus:
      if (b == '-' && f.phase == kSign) {
        f.phase = kMinus;
        return Step::kTaken;
      }
      if (!IsDigit(b)) return Step::kDead;
      f.phase = b == '0' ? kZero : kInt;
      f.count = 1;
      return Step::kTaken;
    case kZero:
    case kInt:
      if (IsDigit(b) && f.phase == kInt && f.count < kMaxIntegerDigits) {
        ++f.count;
        return Step::kTaken;
      }
      if (b == '.' && !n.integer) {
        f.phase = kDot;
        return Step::kTaken;
      }
      return Step::kPass;
    case kDot:
      if (!IsDigit(b)) return Step::kDead;
      f.phase = kFrac;
      f.count = 1;
      return Step::kTaken;
    case kFrac:
      if (IsDigit(b) && f.count < kMaxFractionDigits) {
        ++f.count;
        return Step::kTaken;
      }
      return Step::kPass;
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepRepeat(Frame& f, const GrammarNode& n, uint8_t b) {
  switch (f.phase) {
    case kFirstItem:
      f.phase = kBetween;
      f.count = 1;
      Push(n.item);  // f is not used after the push
      return Step::kRetry;
    case kBetween:
      // Not the separator: the repeat ended before `b`, which its parent reads (at the top,
      // nothing may follow, and Feed refuses it).
      if (f.count >= n.max_count || b != static_cast<uint8_t>(n.separator[0])) return Step::kPass;
      f.phase = kSeparator;
      f.pos = 0;
      [[fallthrough]];
    case kSeparator: {
      if (b != static_cast<uint8_t>(n.separator[static_cast<size_t>(f.pos)])) return Step::kDead;
      if (++f.pos < static_cast<int32_t>(n.separator.size())) return Step::kTaken;
      f.phase = kBetween;
      ++f.count;
      Push(n.item);
      return Step::kTaken;
    }
  }
  return Step::kDead;
}

CallMatcher::Step CallMatcher::StepUnion(const GrammarNode& n, uint8_t b) {
  int slot = -1;
  if (b == '"') slot = GrammarNode::kStringSlot;
  if (b == '-' || IsDigit(b)) slot = GrammarNode::kNumberSlot;
  if (b == 't' || b == 'f') slot = GrammarNode::kBooleanSlot;
  if (b == 'n') slot = GrammarNode::kNullSlot;
  if (b == '{') slot = GrammarNode::kObjectSlot;
  if (b == '[') slot = GrammarNode::kArraySlot;
  if (slot < 0 || n.by_type[static_cast<size_t>(slot)] < 0) return Step::kDead;
  stack_.pop_back();
  Push(n.by_type[static_cast<size_t>(slot)]);
  return Step::kRetry;
}

}  // namespace prefixd
