// The syntax tree of prefixd's Jinja subset: what jinja_parser builds and jinja_evaluator
// walks. One node type for expressions and one for statements keeps the evaluator a pair of
// switches.
//
// Ownership: a tree owns its children through unique_ptr; a parsed template is immutable.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace prefixd::jinja {

// Values are JSON with insertion-ordered objects: `tojson` and `items()` must keep the order
// the request gave, as Python dicts do.
using Json = nlohmann::ordered_json;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,   // value
  kName,      // name
  kList,      // args: the items
  kDict,      // args: key, value, key, value, ...
  kMember,    // lhs.name
  kIndex,     // lhs[args[0]]
  kSlice,     // lhs[args[0]:args[1]:args[2]], absent parts are null pointers
  kCall,      // lhs(args, kwargs)
  kFilter,    // lhs | name(args, kwargs)
  kTest,      // lhs is [not] name(args); `negated`
  kUnary,     // op lhs: "not", "-", "+"
  kBinary,    // lhs op rhs
  kTernary,   // args[0] if args[1] else args[2]
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Json value;            // kLiteral
  std::string name;      // kName, kMember, kFilter, kTest; the operator of kUnary, kBinary
  ExprPtr lhs, rhs;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // kTest: `is not`
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class StmtKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // conditions[i] -> bodies[i]; bodies.back() is the else branch when longer
  kFor,       // for targets in expr [if cond] body [else else_body]
  kSet,       // set targets[0] (or targets[0].attr) = expr; with no expr: the body's output
  kMacro,     // macro name(params with defaults) body
  kBreak,
  kContinue,
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;                   // kText; kMacro: the name
  std::string attr;                   // kSet on `ns.attr`
  std::vector<std::string> targets;   // kFor loop variables, kSet target
  ExprPtr expr;                       // kOutput, kFor iterable, kSet value
  ExprPtr cond;                       // kFor filter
  std::vector<ExprPtr> conditions;    // kIf
  std::vector<Body> bodies;           // kIf branches; kFor/kSet/kMacro: bodies[0], kFor else: bodies[1]
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro, default may be null
};

}  // namespace prefixd::jinja
