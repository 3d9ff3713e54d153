// The filters, tests, global functions and methods of prefixd's Jinja subset, on JSON values.
//
// Filters: abs, capitalize, count, d/default, first, float, indent, int, items, join, last,
// length, list, lower, map (attribute=), reject/select (with a test), rejectattr/selectattr,
// replace, reverse, safe, sort, string, sum, title, tojson (indent=), trim, unique, upper.
// Tests: defined, undefined, none, string, number, integer, float, boolean, true, false,
// mapping, iterable, sequence, callable, equalto/eq/==, ne/!=, odd, even, divisibleby, in.
// Methods: str.strip/lstrip/rstrip/startswith/endswith/split/upper/lower/title/capitalize/
// replace/find/format; dict.items/keys/values/get; list.append? no (values are immutable).
//
// Errors are thrown as EvalError and turned into a Status by the evaluator.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja_ast.h"

namespace prefixd::jinja {

// A value during evaluation: JSON, or Jinja's `undefined` (a missing name or attribute).
struct Value {
  Json json;
  bool undefined = false;
  int ns = -1;  // >= 0: a namespace() object, an index into the evaluator's namespaces
  static Value Undefined() { return Value{Json(), true}; }
};

struct EvalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// What `raise_exception(msg)` throws: the template refusing its input, not a template bug.
struct TemplateRaised : EvalError {
  using EvalError::EvalError;
};

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

bool Truthy(const Value& v);
// Jinja's str(): strings as they are, numbers and booleans as Python prints them, lists and
// dicts in Python's repr, none as "None", undefined as "".
std::string ToString(const Value& v);
// Python's repr of a value, as str() prints the items of a list.
std::string Repr(const Json& j);
// json.dumps with Python's separators (", ", ": "), keys in insertion order, UTF-8 kept.
std::string ToJson(const Json& j, int indent);

Value ApplyFilter(const std::string& name, const Value& in, const std::vector<Value>& args,
                  const std::vector<std::pair<std::string, Value>>& kwargs);
bool ApplyTest(const std::string& name, const Value& in, const std::vector<Value>& args);
// `obj.name(args)`: a method of a string, dict or list. Throws EvalError for an unknown one.
Value CallMethod(const Value& obj, const std::string& name, const std::vector<Value>& args,
                 const std::vector<std::pair<std::string, Value>>& kwargs);

}  // namespace prefixd::jinja
