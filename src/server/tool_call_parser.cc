#include "server/tool_call_parser.h"

#include "server/openai_request.h"
#include "server/json_body.h"

namespace prefixd {

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr size_t kMaxNameBytes = 256;

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

enum class Match { kYes, kPartial, kNo };

// Matches a pattern step by step against the start of `s`; each step says whether `s` holds
// it, ends inside it (more text could complete it), or cannot.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  size_t pos() const { return i_; }

  // Whitespace, then at least one more byte must follow.
  Match Space() {
    while (i_ < s_.size() && IsSpace(s_[i_])) ++i_;
    return i_ < s_.size() ? Match::kYes : Match::kPartial;
  }
  Match Literal(std::string_view l) {
    for (size_t k = 0; k < l.size(); ++k) {
      if (i_ + k >= s_.size()) return Match::kPartial;
      if (s_[i_ + k] != l[k]) return Match::kNo;
    }
    i_ += l.size();
    return Match::kYes;
  }
  // Either literal; `a` and `b` differ in their first byte.
  Match Either(std::string_view a, std::string_view b) {
    const Match m = Literal(a);
    return m == Match::kNo ? Literal(b) : m;
  }
  // A JSON string without escapes, at most kMaxNameBytes; its contents go to `out`.
  Match SimpleString(std::string& out) {
    if (Match m = Literal("\""); m != Match::kYes) return m;
    for (size_t k = i_; k < s_.size(); ++k) {
      const char c = s_[k];
      if (c == '"') {
        out.assign(s_.substr(i_, k - i_));
        i_ = k + 1;
        return Match::kYes;
      }
      if (c == '\\' || static_cast<unsigned char>(c) < 0x20 || k - i_ >= kMaxNameBytes) return Match::kNo;
    }
    return Match::kPartial;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

#define PREFIXD_MATCH_STEP(expr)             \
  do {                                       \
    const Match m_ = (expr);                 \
    if (m_ != Match::kYes) return {m_, {}, 0}; \
  } while (0)

struct HeaderMatch {
  Match match;
  std::string name;
  size_t length;  // through the '{' that opens the arguments
};

// ws* { ws* "name" ws* : ws* "NAME" ws* , ws* "arguments"|"parameters" ws* : ws* {
HeaderMatch MatchHeader(std::string_view s) {
  Cursor c(s);
  std::string name;
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal("{"));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal("\"name\""));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal(":"));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.SimpleString(name));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal(","));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Either("\"arguments\"", "\"parameters\""));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal(":"));
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal("{"));
  return {Match::kYes, std::move(name), c.pos()};
}

// What closes a streamed call after its arguments: ws* } (Llama), then ws* </tool_call> (Hermes).
HeaderMatch MatchTrailer(std::string_view s, ToolCallSyntax syntax) {
  Cursor c(s);
  PREFIXD_MATCH_STEP(c.Space());
  PREFIXD_MATCH_STEP(c.Literal("}"));
  if (syntax == ToolCallSyntax::kHermes) {
    PREFIXD_MATCH_STEP(c.Space());
    PREFIXD_MATCH_STEP(c.Literal(kHermesClose));
  }
  return {Match::kYes, {}, c.pos()};
}

#undef PREFIXD_MATCH_STEP

// Whether `s` is a proper, non-empty prefix of `word`.
bool IsProperPrefix(std::string_view s, std::string_view word) {
  return !s.empty() && s.size() < word.size() && word.substr(0, s.size()) == s;
}

// The longest suffix of `s` that is a proper prefix of `word`.
size_t HeldSuffix(std::string_view s, std::string_view word) {
  for (size_t k = std::min(s.size(), word.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == word.substr(0, k)) return k;
  }
  return 0;
}

// A call written whole: {"name": "f", "arguments"|"parameters": {...} | "{...}"}.
bool ParseWholeCall(std::string_view text, std::string& name, std::string& arguments) {
  auto j = ParseOrderedJsonObject(text);
  if (!j.ok()) return false;
  auto n = j->find("name");
  if (n == j->end() || !n->is_string()) return false;
  auto a = j->find("arguments");
  if (a == j->end()) a = j->find("parameters");
  if (a == j->end()) return false;
  if (a->is_object()) {
    arguments = a->dump();
  } else if (a->is_string() && ParseOrderedJsonObject(a->get_ref<const std::string&>()).ok()) {
    arguments = a->get<std::string>();
  } else {
    return false;
  }
  name = n->get<std::string>();
  return true;
}

// Scans JSON text for the brace or bracket that brings `depth` to 0; returns the index after
// it, or npos. The state carries over between calls.
size_t ScanToClose(std::string_view s, int& depth, bool& in_string, bool& escaped) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

}  // namespace

ToolCallSyntax ToolCallSyntaxOf(std::string_view source) {
  if (source.find(kHermesOpen) != std::string_view::npos) return ToolCallSyntax::kHermes;
  if (source.find("<|start_header_id|>") != std::string_view::npos &&
      source.find("tools") != std::string_view::npos) {
    return ToolCallSyntax::kLlama3;
  }
  return ToolCallSyntax::kNone;
}

const char* ToolCallSyntaxName(ToolCallSyntax syntax) {
  switch (syntax) {
    case ToolCallSyntax::kHermes: return "hermes";
    case ToolCallSyntax::kLlama3: return "llama3";
    case ToolCallSyntax::kNone: break;
  }
  return "none";
}

ToolCallParser::ToolCallParser(ToolCallSyntax syntax)
    : syntax_(syntax),
      state_(syntax == ToolCallSyntax::kHermes  ? State::kText
             : syntax == ToolCallSyntax::kLlama3 ? State::kLlamaStart
                                                 : State::kPlain) {}

std::vector<ToolCallEvent> ToolCallParser::Push(std::string_view piece) {
  std::vector<ToolCallEvent> out;
  pending_.append(piece);
  Run(/*at_end=*/false, out);
  return out;
}

std::vector<ToolCallEvent> ToolCallParser::Finish() {
  std::vector<ToolCallEvent> out;
  Run(/*at_end=*/true, out);
  return out;
}

void ToolCallParser::Run(bool at_end, std::vector<ToolCallEvent>& out) {
  for (bool more = true; more;) {
    switch (state_) {
      case State::kText: more = StepText(at_end, out); break;
      case State::kLlamaStart: more = StepLlamaStart(at_end, out); break;
      case State::kHeader: more = StepHeader(at_end, out); break;
      case State::kBuffered: more = StepBuffered(at_end, out); break;
      case State::kArguments: more = StepArguments(at_end, out); break;
      case State::kTrailer: more = StepTrailer(at_end, out); break;
      case State::kAfterCall: more = StepAfterCall(at_end, out); break;
      case State::kPlain:
        EmitText(held_space_ + pending_, out);
        held_space_.clear();
        pending_.clear();
        more = false;
        break;
    }
  }
}

void ToolCallParser::EmitText(std::string text, std::vector<ToolCallEvent>& out) {
  if (text.empty()) return;
  if (!out.empty() && out.back().kind == ToolCallEvent::Kind::kText) {
    out.back().text += text;
  } else {
    out.push_back(ToolCallEvent{ToolCallEvent::Kind::kText, -1, std::move(text)});
  }
}

void ToolCallParser::EmitCall(const std::string& name, const std::string& arguments,
                              std::vector<ToolCallEvent>& out) {
  const int call = num_calls_++;
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kCallStart, call, name});
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kArguments, call, arguments});
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kCallEnd, call, ""});
  held_space_.clear();
  opener_.clear();
  state_ = State::kAfterCall;
}

void ToolCallParser::Reject(size_t length, std::vector<ToolCallEvent>& out) {
  EmitText(held_space_ + opener_ + pending_.substr(0, length), out);
  pending_.erase(0, length);
  held_space_.clear();
  opener_.clear();
  state_ = TextState();
}

bool ToolCallParser::StepText(bool at_end, std::vector<ToolCallEvent>& out) {
  const size_t open = pending_.find(kHermesOpen);
  size_t take = open;
  if (open == std::string::npos) {
    take = at_end ? pending_.size() : pending_.size() - HeldSuffix(pending_, kHermesOpen);
  }
  // Whitespace at the end of what goes out now is held: it is dropped if a call follows.
  std::string text = held_space_ + pending_.substr(0, take);
  pending_.erase(0, take);
  size_t keep = text.size();
  if (!at_end || open != std::string::npos) {
    while (keep > 0 && IsSpace(text[keep - 1])) --keep;
  }
  held_space_ = text.substr(keep);
  text.resize(keep);
  EmitText(std::move(text), out);
  if (open == std::string::npos) return false;
  opener_ = std::string(kHermesOpen);
  pending_.erase(0, kHermesOpen.size());
  state_ = State::kHeader;
  return true;
}

bool ToolCallParser::StepLlamaStart(bool at_end, std::vector<ToolCallEvent>& out) {
  size_t space = 0;
  while (space < pending_.size() && IsSpace(pending_[space])) ++space;
  held_space_ += pending_.substr(0, space);
  pending_.erase(0, space);
  if (pending_.empty()) {
    if (at_end) state_ = State::kPlain;
    return at_end;
  }
  return OpenCallOrText(at_end);
}

bool ToolCallParser::StepHeader(bool at_end, std::vector<ToolCallEvent>& out) {
  HeaderMatch m = MatchHeader(pending_);
  if (m.match == Match::kPartial && !at_end) return false;
  if (m.match != Match::kYes) {
    state_ = State::kBuffered;
    depth_ = 0;
    in_string_ = escaped_ = false;
    scanned_ = 0;
    return true;
  }
  const int call = num_calls_++;
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kCallStart, call, std::move(m.name)});
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kArguments, call, "{"});
  pending_.erase(0, m.length);
  held_space_.clear();
  opener_.clear();
  depth_ = 1;
  in_string_ = escaped_ = false;
  state_ = State::kArguments;
  return true;
}

bool ToolCallParser::StepBuffered(bool at_end, std::vector<ToolCallEvent>& out) {
  size_t end = std::string::npos;  // the call's text is pending_[0, end)
  size_t consumed = 0;             // and this much of pending_ goes with it
  if (syntax_ == ToolCallSyntax::kHermes) {
    const size_t from = scanned_ >= kHermesClose.size() ? scanned_ - kHermesClose.size() : 0;
    end = pending_.find(kHermesClose, from);
    consumed = end == std::string::npos ? 0 : end + kHermesClose.size();
  } else {
    size_t first = 0;
    while (first < pending_.size() && IsSpace(pending_[first])) ++first;
    if (first < pending_.size() && pending_[first] != '{') {
      Reject(pending_.size(), out);
      return true;
    }
    const size_t from = std::max(scanned_, first);
    const size_t close = ScanToClose(std::string_view(pending_).substr(from), depth_, in_string_, escaped_);
    end = consumed = close == std::string_view::npos ? std::string::npos : from + close;
  }
  scanned_ = pending_.size();
  if (end == std::string::npos) {
    if (!at_end) return false;
    end = consumed = pending_.size();
  }
  std::string name, arguments;
  if (ParseWholeCall(std::string_view(pending_).substr(0, end), name, arguments)) {
    pending_.erase(0, consumed);
    EmitCall(name, arguments, out);
  } else {
    Reject(consumed, out);
  }
  return true;
}

bool ToolCallParser::StepArguments(bool at_end, std::vector<ToolCallEvent>& out) {
  const size_t close = ScanToClose(pending_, depth_, in_string_, escaped_);
  const size_t take = close == std::string::npos ? pending_.size() : close;
  if (take > 0) {
    out.push_back(ToolCallEvent{ToolCallEvent::Kind::kArguments, num_calls_ - 1, pending_.substr(0, take)});
    pending_.erase(0, take);
  }
  if (close != std::string::npos) {
    state_ = State::kTrailer;
    return true;
  }
  if (at_end) {
    out.push_back(ToolCallEvent{ToolCallEvent::Kind::kCallEnd, num_calls_ - 1, ""});
    state_ = State::kAfterCall;
  }
  return false;
}

bool ToolCallParser::StepTrailer(bool at_end, std::vector<ToolCallEvent>& out) {
  const HeaderMatch m = MatchTrailer(pending_, syntax_);
  if (m.match == Match::kPartial && !at_end) return false;
  out.push_back(ToolCallEvent{ToolCallEvent::Kind::kCallEnd, num_calls_ - 1, ""});
  if (m.match == Match::kYes) {
    pending_.erase(0, m.length);
    state_ = State::kAfterCall;
  } else if (m.match == Match::kPartial) {
    pending_.clear();  // the end came inside the closing: nothing but the closing was written
    state_ = State::kAfterCall;
  } else {
    state_ = TextState();
  }
  return true;
}

bool ToolCallParser::StepAfterCall(bool at_end, std::vector<ToolCallEvent>& out) {
  (void)out;
  size_t skip = 0;
  while (skip < pending_.size() &&
         (IsSpace(pending_[skip]) || (syntax_ == ToolCallSyntax::kLlama3 && pending_[skip] == ';'))) {
    ++skip;
  }
  pending_.erase(0, skip);
  if (pending_.empty()) return false;
  return OpenCallOrText(at_end);
}

bool ToolCallParser::OpenCallOrText(bool at_end) {
  const std::string_view opener = syntax_ == ToolCallSyntax::kHermes ? kHermesOpen : kPythonTag;
  if (syntax_ == ToolCallSyntax::kLlama3 && pending_[0] == '{') {
    state_ = State::kHeader;
  } else if (pending_.rfind(opener, 0) == 0) {
    opener_ = std::string(opener);
    pending_.erase(0, opener.size());
    state_ = State::kHeader;
  } else if (IsProperPrefix(pending_, opener) && !at_end) {
    return false;
  } else {
    state_ = TextState();
  }
  return true;
}

ParsedToolCalls CollectToolCalls(const std::vector<ToolCallEvent>& events) {
  ParsedToolCalls p;
  for (const ToolCallEvent& e : events) {
    switch (e.kind) {
      case ToolCallEvent::Kind::kText: p.text += e.text; break;
      case ToolCallEvent::Kind::kCallStart: p.calls.push_back({e.text, ""}); break;
      case ToolCallEvent::Kind::kArguments: p.calls[static_cast<size_t>(e.call)].arguments += e.text; break;
      case ToolCallEvent::Kind::kCallEnd: break;
    }
  }
  return p;
}

ParsedToolCalls ParseToolCalls(ToolCallSyntax syntax, std::string_view text) {
  ToolCallParser parser(syntax);
  std::vector<ToolCallEvent> events = parser.Push(text);
  for (ToolCallEvent& e : parser.Finish()) events.push_back(std::move(e));
  return CollectToolCalls(events);
}

}  // namespace prefixd
