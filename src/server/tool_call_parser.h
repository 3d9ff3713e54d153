// ToolCallParser: turns a model's generated text, arriving in pieces of any size, into plain
// text and tool calls, for the call syntaxes of the supported chat template families:
//
//   kHermes (Qwen2.5, Qwen3, Hermes 2 Pro, ChatML templates that print <tool_call>):
//     text <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call> <tool_call>...</tool_call>
//   kLlama3 (Llama 3.1 / 3.2 / 3.3 JSON tool calling): the whole reply is the call(s),
//     optionally after <|python_tag|>, several separated by ';' or whitespace:
//     {"name": "f", "parameters": {...}}
//
// Events come out in text order: kText (plain text), then per call kCallStart (its name),
// kArguments (pieces of the arguments' JSON text, as they arrive) and kCallEnd.
//
//   "Let me look.\n<tool_call>\n{"name": "get", "arguments": {"q": 1}}\n</tool_call>"
//    kText "Let me look." | kCallStart "get" | kArguments "{"q": 1}" (in pieces) | kCallEnd
//
// Rules (the same whatever the pieces' sizes; streaming and non-streaming share them):
// - A call is committed once its header is complete: the opener (<tool_call> / the reply's
//   first '{', after <|python_tag|> if any), then {"name": "NAME", "arguments"|"parameters":
//   and the '{' that opens the arguments. From there the arguments stream as written, up to
//   the brace that closes them; a header in any other shape (other key order, arguments as a
//   string) is held until the call's end (</tool_call>; for Llama, the object's closing
//   brace) and parsed whole: a JSON object with a string name and object (or JSON-string)
//   arguments is a call, anything else stays text, byte for byte.
// - Text that may still become a call (a suffix that is a prefix of "<tool_call>", a Llama
//   reply's opening) is held back until it cannot; whitespace right before or after a call
//   is dropped, all other text passes through.
// - A committed call whose arguments never close (the generation ended) ends at the end of
//   the text, its arguments as far as they came; what follows a call's arguments other than
//   its closing ("}" and </tool_call>) is text again.
//
// Thread safety: none; one per request.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace prefixd {

enum class ToolCallSyntax { kNone, kHermes, kLlama3 };

// The call syntax a chat template's Jinja source teaches its model: kHermes when it prints
// "<tool_call>", kLlama3 when it is a Llama 3 header template that renders tools, kNone
// otherwise (no parsing: the text passes through).
ToolCallSyntax ToolCallSyntaxOf(std::string_view template_source);
const char* ToolCallSyntaxName(ToolCallSyntax syntax);

struct ToolCallEvent {
  enum class Kind { kText, kCallStart, kArguments, kCallEnd };
  Kind kind = Kind::kText;
  int call = -1;     // calls: 0, 1, ... in order; -1 for text
  std::string text;  // kText: the text; kCallStart: the function name; kArguments: a piece
};

class ToolCallParser {
 public:
  explicit ToolCallParser(ToolCallSyntax syntax);

  // Feeds the next piece; returns the events it completes.
  std::vector<ToolCallEvent> Push(std::string_view piece);
  // The end of the text: releases what was held back (a committed call ends).
  std::vector<ToolCallEvent> Finish();

  int num_calls() const { return num_calls_; }

 private:
  enum class State { kText, kLlamaStart, kHeader, kBuffered, kArguments, kTrailer, kAfterCall, kPlain };

  // Runs the state machine over pending_ until it needs more input (or, at the end, until
  // everything is released).
  void Run(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepText(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepLlamaStart(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepHeader(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepBuffered(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepArguments(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepTrailer(bool at_end, std::vector<ToolCallEvent>& out);
  bool StepAfterCall(bool at_end, std::vector<ToolCallEvent>& out);

  // REQUIRES: pending_ is not empty. A call opens at its start (kHeader), may still open
  // (returns false: more text is needed), or the text goes on (TextState()).
  bool OpenCallOrText(bool at_end);
  // The state plain text is read in: kText (a call may open anywhere) or kPlain (Llama: no
  // call after the reply's opening).
  State TextState() const { return syntax_ == ToolCallSyntax::kHermes ? State::kText : State::kPlain; }

  void EmitText(std::string text, std::vector<ToolCallEvent>& out);
  void EmitCall(const std::string& name, const std::string& arguments, std::vector<ToolCallEvent>& out);
  // The call's opener and the pending text were not a call: they go out as text.
  void Reject(size_t length, std::vector<ToolCallEvent>& out);

  const ToolCallSyntax syntax_;
  State state_;
  std::string pending_;     // received, not yet decided
  std::string held_space_;  // whitespace before a possible call: dropped if one starts
  std::string opener_;      // the opener consumed for the call being read ("<tool_call>", ...)
  int depth_ = 0;           // kArguments: open braces and brackets
  bool in_string_ = false;  // kArguments: inside a JSON string
  bool escaped_ = false;    // kArguments: after a backslash inside a string
  size_t scanned_ = 0;      // kBuffered: bytes of pending_ already searched for the call's end
  int num_calls_ = 0;
};

// The whole text at once: the text parts joined, and each call's name and arguments.
struct ParsedToolCalls {
  struct Call {
    std::string name;
    std::string arguments;
  };
  std::string text;
  std::vector<Call> calls;
};
ParsedToolCalls CollectToolCalls(const std::vector<ToolCallEvent>& events);
ParsedToolCalls ParseToolCalls(ToolCallSyntax syntax, std::string_view text);

}  // namespace prefixd
