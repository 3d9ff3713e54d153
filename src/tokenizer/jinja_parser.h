// The parser of prefixd's Jinja subset: tokens -> a tree of statements.
//
// Statements: if/elif/else, for (with tuple unpacking, an `if` filter, `else`, break and
// continue), set (names, namespace attributes, `{% set x %}...{% endset %}`), macro, and the
// `generation` markers of some templates (ignored). Expressions: literals, lists, dicts,
// tuples, attribute and item access, slices, calls with keyword arguments, filters, tests,
// `not`/`and`/`or`, comparisons, `in`/`not in`, arithmetic, `~`, and `a if b else c`, with
// Jinja2's precedence (filters and tests bind tighter than arithmetic).
//
// Filters and tests are checked against what the evaluator implements, so a template that
// uses one it does not know fails here, once, at load time.
//
// Thread safety: a pure function.
#pragma once

#include <string_view>

#include "base/status.h"
#include "tokenizer/jinja_ast.h"

namespace prefixd::jinja {

// InvalidArgument, naming the line, for a syntax error, a block never closed (`{% if %}`
// without `{% endif %}`), an unknown statement, filter or test.
StatusOr<Body> Parse(std::string_view source);

}  // namespace prefixd::jinja
