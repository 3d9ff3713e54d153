// CallGrammar: the language of a forced tool call, as a graph of nodes, and CallMatcher, the
// byte-level recogniser of it that MatcherConstraint (engine/token_constraint.h) drives.
//
// A call in the chat template's syntax (tool_call_parser.h) is a sequence:
//
//   Hermes:  <tool_call>\n{"name": ──┬─ "get", "arguments": ─▶ [get's schema] ─┬─ }\n</tool_call>
//                                    └─ "put", "arguments": ─▶ [put's schema] ─┘
//   Llama 3: {"name": ─── "get", "parameters": ─▶ [schema] ─── }
//
// Several calls (parallel tool calls) are a kRepeat of the call: one, then up to max_count-1
// more, each after the template's separator ("\n" between Hermes calls). After each whole
// call the text may end (CanEnd) or go on with the separator; the model chooses.
//
// The arguments are JSON in one fixed layout (Python's json.dumps: ", " and ": " between
// items, no other space), so each value has one spelling per meaning and the model only picks
// values. Every part is bounded (string length, digits, array items, nesting), so the language
// is finite and a generation under the constraint always ends.
//
// Thread safety: a CallGrammar is immutable once built and shared by its matchers; a matcher is
// used by one thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/token_constraint.h"

namespace prefixd {

struct GrammarNode {
  enum class Kind {
    kChoice,    // one of `alternatives` (fixed texts), each then followed by its node (-1: none)
    kSequence,  // `children` in order
    kString,    // a JSON string of min_count..max_count characters (valid UTF-8, no control bytes)
    kNumber,    // a JSON number (integer: no fraction); bounded digits
    kObject,    // `properties` in order, each optional or required
    kMap,       // an object of any keys (strings, `key`) to `item` values, up to max_count members
    kArray,     // min_count..max_count `item` values
    kUnion,     // a value of one of several types, told apart by the first byte
    kRepeat,    // `item`, then up to max_count-1 more, each after `separator`; may end after any
  };
  struct Property {
    std::string key;  // `"name": `, the key as JSON with the separator after it
    int32_t value = -1;
    bool required = false;
  };
  // The types kUnion tells apart by their first byte.
  enum TypeSlot { kStringSlot, kNumberSlot, kBooleanSlot, kNullSlot, kObjectSlot, kArraySlot, kNumSlots };

  Kind kind = Kind::kChoice;
  std::vector<std::pair<std::string, int32_t>> alternatives;  // kChoice: sorted by text, distinct
  std::vector<int32_t> children;                              // kSequence
  std::vector<Property> properties;                           // kObject, in the schema's order
  std::vector<int32_t> key_order;      // kObject: property indices sorted by key
  std::vector<int32_t> next_required;  // kObject: [i] = first required index >= i (size if none)
  // kString: characters; kArray: items; kMap: members; kRepeat: items (min_count 1).
  int32_t min_count = 0, max_count = 0;
  bool integer = false;                  // kNumber
  int32_t item = -1;                     // kArray, kMap: the values; kRepeat: the item
  std::string separator;                 // kRepeat: between items, not empty
  int32_t key = -1;                      // kMap: the keys (a kString)
  std::array<int32_t, kNumSlots> by_type{};  // kUnion: node per type slot, -1: not allowed
};

// Bounds that keep the language finite where the schema sets none.
inline constexpr int32_t kMaxIntegerDigits = 15;
inline constexpr int32_t kMaxFractionDigits = 6;

struct CallGrammar {
  std::vector<GrammarNode> nodes;
  int32_t root = -1;

  // Adds a node, returning its index.
  int32_t Add(GrammarNode node);
  // Helpers for the fixed parts.
  int32_t AddChoice(std::vector<std::pair<std::string, int32_t>> alternatives);
  int32_t AddLiteral(std::string text) { return AddChoice({{std::move(text), -1}}); }
  int32_t AddSequence(std::vector<int32_t> children);
  // A union of the given slots; a single slot gives that node itself.
  int32_t AddUnion(const std::array<int32_t, GrammarNode::kNumSlots>& by_type);
  // 1..max_count `item`s with `separator` between them; max_count 1 gives `item` itself.
  // REQUIRES: separator not empty (its first byte tells another item from the end).
  int32_t AddRepeat(int32_t item, std::string separator, int32_t max_count);
};

// Recognises CallGrammar's language byte by byte: a stack of frames, one per open node.
class CallMatcher : public ByteMatcher {
 public:
  explicit CallMatcher(std::shared_ptr<const CallGrammar> grammar);

  std::unique_ptr<ByteMatcher> Clone() const override;
  void CopyFrom(const ByteMatcher& other) override;
  bool Feed(uint8_t b) override;
  bool IsComplete() const override { return stack_.empty(); }
  // Every open frame is at a point where its node may end: a kRepeat between items (a
  // sequence whose last part is that repeat stays open under it).
  bool CanEnd() const override;

  // One open node: `phase` is where in it the text is; the rest is per kind.
  struct Frame {
    int32_t node = -1;
    int32_t phase = 0;
    int32_t count = 0;        // characters, items, members, digits; kObject: next property
    int32_t lo = 0, hi = 0;   // kChoice, kObject keys: the alternatives still possible; UTF-8 range
    int32_t pos = 0;          // kChoice, kObject keys: bytes matched; kString: hex digits left
    int32_t aux = 0;          // kString: continuation bytes left / surrogate guard
  };

 private:
  enum class Step { kTaken, kDone, kPass, kRetry, kDead };

  void Push(int32_t node);
  Step StepFrame(uint8_t b);
  Step StepChoice(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepObject(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepMap(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepArray(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepString(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepNumber(Frame& f, const GrammarNode& n, uint8_t b);
  Step StepUnion(const GrammarNode& n, uint8_t b);
  Step StepRepeat(Frame& f, const GrammarNode& n, uint8_t b);
  // The frame's node has nothing left to read: a sequence past its last part, a repeat after
  // its last allowed item. Feed pops such frames at once, so that IsComplete() is exact.
  bool Ended(const Frame& f) const;
  // The bracketed kinds after a member (kAfter) and after its ',' (kSpace): `close` ends the
  // value when `may_close`; ", " starts the next member when `may_continue`.
  Step StepAfterMember(Frame& f, uint8_t b, uint8_t close, bool may_close, bool may_continue);
  // Narrows an object's key candidates with byte `b`; false when none is left.
  bool NarrowKey(Frame& f, const GrammarNode& n, uint8_t b);

  std::shared_ptr<const CallGrammar> grammar_;
  std::vector<Frame> stack_;
};

}  // namespace prefixd
