// A parsed Jinja template (prefixd's subset: see jinja_parser.h and jinja_builtins.h) and its
// evaluation over JSON values.
//
// Render can trace which items of one list (a chat's messages) produced which output: for a
// `for` loop whose item equals a traced item, the output written during that iteration (and
// not inside a nested iteration of another traced item) is attributed to it. A chat template
// renders message i inside the iteration over message i whatever it prints before, after or
// around it, so the first output attributed to message i is where message i starts.
//
// It can also trace where the iterations over other objects (a chat's tools and tool calls)
// end: for a `for` loop whose item equals a traced block, the output's length when that
// iteration is over, if the iteration wrote anything (cache_control breakpoints on a tool
// keep the prompt up to there). Block tracing attributes nothing: it never moves a message's
// start.
//
// Thread safety: immutable after Parse; Render may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tokenizer/jinja_ast.h"

namespace prefixd::jinja {

struct RenderTrace {
  const Json* items = nullptr;  // an array to trace (not owned); null: no tracing
  // Filled by Render: byte offset of the first output attributed to items[i], npos if none.
  std::vector<size_t> first_output;
  // End of the last output attributed to any traced item (0 if none).
  size_t last_output_end = 0;
  const Json* blocks = nullptr;  // an array of objects whose iterations' ends to find; null: none
  // Filled by Render: where the output stood when the iteration over blocks[i] ended, npos
  // when no iteration over it wrote anything (the template printed it another way, or not).
  std::vector<size_t> block_end;
};

class Template {
 public:
  // InvalidArgument (naming the line) for a syntax error, an unclosed block, an unknown
  // statement, filter or test.
  static StatusOr<Template> Parse(std::string_view source);

  // Renders with `context` (an object: its keys are the template's global variables).
  // InvalidArgument carrying the template's message when it calls raise_exception (the
  // template refuses its input); FailedPrecondition (naming the line) when evaluation fails
  // otherwise (an unknown method, a type error, an unknown function).
  StatusOr<std::string> Render(const Json& context, RenderTrace* trace = nullptr) const;

 private:
  explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
  std::shared_ptr<const Body> body_;
};

}  // namespace prefixd::jinja
