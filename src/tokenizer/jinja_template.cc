#include "tokenizer/jinja_template.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_parser.h"

namespace prefixd::jinja {

namespace {

enum class Flow { kNormal, kBreak, kContinue };

// Errors carry the line of the expression or statement being evaluated.
[[noreturn]] void Fail(int line, const std::string& what) {
  throw EvalError(absl::StrCat("chat template line ", line, ": ", what));
}

int64_t ToInt(const Value& v, int line, const std::string& what) {
  if (!v.json.is_number_integer()) Fail(line, absl::StrCat(what, " needs an integer, got ", ToJson(v.json, 0)));
  return v.json.get<int64_t>();
}

// Python's slice of a sequence of `n` elements: the indices it selects, in order.
std::vector<int64_t> SliceIndices(int64_t n, const Value* a, const Value* b, const Value* c, int line) {
  const int64_t step = c && !c->json.is_null() && !c->undefined ? ToInt(*c, line, "a slice step") : 1;
  if (step == 0) Fail(line, "a slice step of 0");
  auto clamp = [&](const Value* v, int64_t def) {
    if (!v || v->undefined || v->json.is_null()) return def;
    int64_t i = ToInt(*v, line, "a slice bound");
    if (i < 0) i += n;
    if (step > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t start = clamp(a, step > 0 ? 0 : n - 1);
  const int64_t stop = clamp(b, step > 0 ? n : -1);
  std::vector<int64_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(i);
  return out;
}

// A string's characters as Python sees them (code points), each as its UTF-8 bytes.
std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0) len = 4;
    else if (c >= 0xE0) len = 3;
    else if (c >= 0xC0) len = 2;
    len = std::min(len, s.size() - i);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

class Evaluator {
 public:
  Evaluator(const Json& context, RenderTrace* trace) : trace_(trace) {
    scopes_.emplace_back();
    for (auto it = context.begin(); it != context.end(); ++it) scopes_.back()[it.key()] = Value{it.value()};
    if (trace_ && trace_->items) {
      trace_->first_output.assign(trace_->items->size(), std::string::npos);
      trace_->last_output_end = 0;
    }
    if (trace_ && trace_->blocks) trace_->block_end.assign(trace_->blocks->size(), std::string::npos);
  }

  std::string Run(const Body& body) {
    Exec(body);
    return std::move(out_);
  }

 private:
  // ---- output ----
  void Emit(const std::string& s) {
    if (s.empty()) return;
    if (capture_ != nullptr) {
      *capture_ += s;
      return;
    }
    if (trace_ && current_ >= 0) {
      size_t& first = trace_->first_output[static_cast<size_t>(current_)];
      if (first == std::string::npos) first = out_.size();
      trace_->last_output_end = out_.size() + s.size();
    }
    out_ += s;
  }

  // The traced item an iteration's value stands for: the first equal item not yet printed,
  // else the first equal one; -1 when it is none of them.
  int TracedIndex(const Json& item) const {
    if (!trace_ || !trace_->items || !item.is_object()) return -1;
    int any = -1;
    for (size_t i = 0; i < trace_->items->size(); ++i) {
      if ((*trace_->items)[i] != item) continue;
      if (trace_->first_output[i] == std::string::npos) return static_cast<int>(i);
      if (any < 0) any = static_cast<int>(i);
    }
    return any;
  }

  // The traced block an iteration's value stands for: the first equal block whose end is not
  // found yet, else the first equal one; -1 when it is none of them.
  int BlockIndex(const Json& item) const {
    if (!trace_ || !trace_->blocks || !item.is_object()) return -1;
    int any = -1;
    for (size_t i = 0; i < trace_->blocks->size(); ++i) {
      if ((*trace_->blocks)[i] != item) continue;
      if (trace_->block_end[i] == std::string::npos) return static_cast<int>(i);
      if (any < 0) any = static_cast<int>(i);
    }
    return any;
  }

  // ---- variables ----
  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value::Undefined();
  }

  // ---- statements ----
  Flow Exec(const Body& body) {
    for (const auto& s : body) {
      const Flow f = ExecOne(*s);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow ExecOne(const Stmt& s) {
    switch (s.kind) {
      case StmtKind::kText: Emit(s.text); return Flow::kNormal;
      case StmtKind::kOutput: Emit(ToString(Eval(*s.expr))); return Flow::kNormal;
      case StmtKind::kIf:
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          if (Truthy(Eval(*s.conditions[i]))) return Exec(s.bodies[i]);
        }
        if (s.bodies.size() > s.conditions.size()) return Exec(s.bodies.back());
        return Flow::kNormal;
      case StmtKind::kFor: ExecFor(s); return Flow::kNormal;
      case StmtKind::kSet: ExecSet(s); return Flow::kNormal;
      case StmtKind::kMacro: macros_[s.text] = &s; return Flow::kNormal;
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void ExecSet(const Stmt& s) {
    Value v;
    if (s.expr) {
      v = Eval(*s.expr);
    } else {
      std::string buf;
      std::string* saved = capture_;
      capture_ = &buf;
      Exec(s.bodies[0]);
      capture_ = saved;
      v = Value{buf};
    }
    if (!s.attr.empty()) {
      const Value ns = Lookup(s.targets[0]);
      if (ns.ns < 0) Fail(s.line, absl::StrCat("'", s.targets[0], "' is not a namespace; only namespace() attributes can be set"));
      namespaces_[static_cast<size_t>(ns.ns)][s.attr] = v.json;
      return;
    }
    if (s.targets.size() == 1) {
      scopes_.back()[s.targets[0]] = v;
      return;
    }
    if (!v.json.is_array() || v.json.size() != s.targets.size()) Fail(s.line, "cannot unpack the value into the names");
    for (size_t i = 0; i < s.targets.size(); ++i) scopes_.back()[s.targets[i]] = Value{v.json[i]};
  }

  void ExecFor(const Stmt& s) {
    const Value iterable = Eval(*s.expr);
    Json items;
    if (iterable.json.is_object()) {
      items = Json::array();
      for (auto it = iterable.json.begin(); it != iterable.json.end(); ++it) items.push_back(it.key());
    } else if (iterable.json.is_array()) {
      items = iterable.json;
    } else if (iterable.undefined || iterable.json.is_null()) {
      items = Json::array();
    } else if (iterable.json.is_string()) {
      items = ApplyFilter("list", iterable, {}, {}).json;
    } else {
      Fail(s.line, absl::StrCat("cannot iterate over ", ToJson(iterable.json, 0)));
    }
    if (s.cond) {  // the filter runs before the loop, so loop.length counts what passes
      Json kept = Json::array();
      for (const Json& item : items) {
        scopes_.emplace_back();
        Bind(s, item);
        if (Truthy(Eval(*s.cond))) kept.push_back(item);
        scopes_.pop_back();
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (s.bodies.size() > 1) Exec(s.bodies[1]);
      return;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      scopes_.emplace_back();
      Bind(s, items[static_cast<size_t>(i)]);
      Json loop = {{"index", i + 1}, {"index0", i}, {"revindex", n - i}, {"revindex0", n - i - 1},
                   {"first", i == 0}, {"last", i == n - 1}, {"length", n}};
      if (i > 0) loop["previtem"] = items[static_cast<size_t>(i - 1)];
      if (i + 1 < n) loop["nextitem"] = items[static_cast<size_t>(i + 1)];
      scopes_.back()["loop"] = Value{std::move(loop)};
      const int saved = current_;
      const int traced = TracedIndex(items[static_cast<size_t>(i)]);
      if (traced >= 0) current_ = traced;
      const int block = BlockIndex(items[static_cast<size_t>(i)]);
      const size_t out_before = out_.size();
      const Flow f = Exec(s.bodies[0]);
      current_ = saved;
      if (block >= 0 && out_.size() > out_before) trace_->block_end[static_cast<size_t>(block)] = out_.size();
      scopes_.pop_back();
      if (f == Flow::kBreak) break;
    }
  }

  void Bind(const Stmt& s, const Json& item) {
    if (s.targets.size() == 1) {
      scopes_.back()[s.targets[0]] = Value{item};
      return;
    }
    if (!item.is_array() || item.size() != s.targets.size()) {
      Fail(s.line, absl::StrCat("cannot unpack ", ToJson(item, 0), " into ", s.targets.size(), " names"));
    }
    for (size_t k = 0; k < s.targets.size(); ++k) scopes_.back()[s.targets[k]] = Value{item[k]};
  }

  // ---- expressions ----
  Value Eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral: return e.name == "undefined" ? Value::Undefined() : Value{e.value};
      case ExprKind::kName: return Lookup(e.name);
      case ExprKind::kList: {
        Json out = Json::array();
        for (const auto& a : e.args) out.push_back(Eval(*a).json);
        return Value{out};
      }
      case ExprKind::kDict: {
        Json out = Json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) out[ToString(Eval(*e.args[i]))] = Eval(*e.args[i + 1]).json;
        return Value{out};
      }
      case ExprKind::kMember: return Member(Eval(*e.lhs), e.name);
      case ExprKind::kIndex: return Index(Eval(*e.lhs), Eval(*e.args[0]), e.line);
      case ExprKind::kSlice: return Slice(e);
      case ExprKind::kCall: return Call(e);
      case ExprKind::kFilter: {
        const Value in = Eval(*e.lhs);
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        EvalArgs(e, args, kwargs);
        return Guard(e.line, [&] { return ApplyFilter(e.name, in, args, kwargs); });
      }
      case ExprKind::kTest: {
        const Value in = Eval(*e.lhs);
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        EvalArgs(e, args, kwargs);
        const bool r = Guard(e.line, [&] { return ApplyTest(e.name, in, args); });
        return Value{r != e.negated};
      }
      case ExprKind::kUnary: return Unary(e);
      case ExprKind::kBinary: return Binary(e);
      case ExprKind::kTernary:
        return Truthy(Eval(*e.args[1])) ? Eval(*e.args[0]) : Eval(*e.args[2]);
    }
    Fail(e.line, "unknown expression");
  }

  // Builtin errors carry no line; add it.
  template <typename F>
  auto Guard(int line, F f) -> decltype(f()) {
    try {
      return f();
    } catch (const TemplateRaised&) {
      throw;
    } catch (const EvalError& err) {
      const std::string what = err.what();
      if (what.starts_with("chat template line")) throw;
      Fail(line, what);
    }
  }

  void EvalArgs(const Expr& e, std::vector<Value>& args, std::vector<std::pair<std::string, Value>>& kwargs) {
    for (const auto& a : e.args) args.push_back(Eval(*a));
    for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, Eval(*v));
  }

  Value Member(const Value& obj, const std::string& name) const {
    if (obj.ns >= 0) {
      const Json& ns = namespaces_[static_cast<size_t>(obj.ns)];
      if (ns.contains(name)) return Value{ns[name]};
      return Value::Undefined();
    }
    if (obj.json.is_object() && obj.json.contains(name)) return Value{obj.json[name]};
    return Value::Undefined();
  }

  Value Index(const Value& obj, const Value& key, int line) const {
    if (key.json.is_string()) return Member(obj, key.json.get<std::string>());
    if (key.json.is_number_integer() && (obj.json.is_array() || obj.json.is_string())) {
      std::vector<std::string> chars;
      if (obj.json.is_string()) chars = Utf8Chars(obj.json.get_ref<const std::string&>());
      const int64_t n = static_cast<int64_t>(obj.json.is_array() ? obj.json.size() : chars.size());
      int64_t i = key.json.get<int64_t>();
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined();
      if (obj.json.is_array()) return Value{obj.json[static_cast<size_t>(i)]};
      return Value{chars[static_cast<size_t>(i)]};
    }
    if (obj.undefined) return Value::Undefined();
    if (obj.json.is_object()) return Value::Undefined();
    Fail(line, absl::StrCat("cannot index ", ToJson(obj.json, 0), " with ", ToJson(key.json, 0)));
  }

  Value Slice(const Expr& e) {
    const Value obj = Eval(*e.lhs);
    Value parts[3];
    const Value* p[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < 3; ++k) {
      if (e.args[static_cast<size_t>(k)]) {
        parts[k] = Eval(*e.args[static_cast<size_t>(k)]);
        p[k] = &parts[k];
      }
    }
    if (obj.json.is_array()) {
      Json out = Json::array();
      for (int64_t i : SliceIndices(static_cast<int64_t>(obj.json.size()), p[0], p[1], p[2], e.line)) out.push_back(obj.json[static_cast<size_t>(i)]);
      return Value{out};
    }
    if (obj.json.is_string()) {
      const std::vector<std::string> chars = Utf8Chars(obj.json.get_ref<const std::string&>());
      std::string out;
      for (int64_t i : SliceIndices(static_cast<int64_t>(chars.size()), p[0], p[1], p[2], e.line)) out += chars[static_cast<size_t>(i)];
      return Value{out};
    }
    Fail(e.line, absl::StrCat("cannot slice ", ToJson(obj.json, 0)));
  }

  Value Call(const Expr& e) {
    std::vector<Value> args;
    std::vector<std::pair<std::string, Value>> kwargs;
    if (e.lhs->kind == ExprKind::kMember) {
      const Value obj = Eval(*e.lhs->lhs);
      EvalArgs(e, args, kwargs);
      return Guard(e.line, [&] { return CallMethod(obj, e.lhs->name, args, kwargs); });
    }
    if (e.lhs->kind != ExprKind::kName) Fail(e.line, "only functions, macros and methods can be called");
    const std::string& fn = e.lhs->name;
    EvalArgs(e, args, kwargs);
    if (fn == "raise_exception") {
      throw TemplateRaised(args.empty() ? "raise_exception() called" : ToString(args[0]));
    }
    if (fn == "namespace") {
      Json ns = Json::object();
      if (!args.empty() && args[0].json.is_object()) ns = args[0].json;
      for (const auto& [k, v] : kwargs) ns[k] = v.json;
      namespaces_.push_back(std::move(ns));
      Value v;
      v.ns = static_cast<int>(namespaces_.size() - 1);
      return v;
    }
    if (fn == "range") return Range(args, e.line);
    if (fn == "dict") {
      Json out = Json::object();
      for (const auto& [k, v] : kwargs) out[k] = v.json;
      return Value{out};
    }
    if (fn == "strftime_now") {
      const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm tm{};
      gmtime_r(&now, &tm);
      char buf[128];
      const std::string fmt = args.empty() ? "%Y-%m-%d" : ToString(args[0]);
      return Value{std::string(buf, std::strftime(buf, sizeof(buf), fmt.c_str(), &tm))};
    }
    auto m = macros_.find(fn);
    if (m != macros_.end()) return CallMacro(*m->second, args, kwargs);
    Fail(e.line, absl::StrCat("unknown function '", fn, "'"));
  }

  Value Range(const std::vector<Value>& args, int line) const {
    int64_t start = 0, stop = 0, step = 1;
    if (args.size() == 1) {
      stop = ToInt(args[0], line, "range");
    } else if (args.size() >= 2) {
      start = ToInt(args[0], line, "range");
      stop = ToInt(args[1], line, "range");
      if (args.size() > 2) step = ToInt(args[2], line, "range");
    }
    if (step == 0) Fail(line, "range() step of 0");
    Json out = Json::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(i);
    return Value{out};
  }

  Value CallMacro(const Stmt& m, const std::vector<Value>& args,
                  const std::vector<std::pair<std::string, Value>>& kwargs) {
    std::map<std::string, Value> frame;
    for (size_t i = 0; i < m.params.size(); ++i) {
      const auto& [name, def] = m.params[i];
      if (i < args.size()) frame[name] = args[i];
      else if (def) frame[name] = Eval(*def);
      else frame[name] = Value::Undefined();
    }
    for (const auto& [k, v] : kwargs) frame[k] = v;
    // A macro that calls itself without end must fail, not overflow the stack.
    if (macro_depth_ >= kMaxMacroDepth) Fail(m.line, absl::StrCat("macro '", m.text, "' recurses deeper than ", kMaxMacroDepth));
    ++macro_depth_;
    scopes_.push_back(std::move(frame));
    std::string buf;
    std::string* saved = capture_;
    capture_ = &buf;
    Exec(m.bodies[0]);
    capture_ = saved;
    scopes_.pop_back();
    --macro_depth_;
    return Value{buf};
  }

  Value Unary(const Expr& e) {
    const Value v = Eval(*e.lhs);
    if (e.name == "not") return Value{!Truthy(v)};
    if (!v.json.is_number()) Fail(e.line, absl::StrCat("unary '", e.name, "' needs a number"));
    if (e.name == "+") return v;
    if (v.json.is_number_integer()) return Value{-v.json.get<int64_t>()};
    return Value{-v.json.get<double>()};
  }

  Value Binary(const Expr& e) {
    const std::string& op = e.name;
    const Value l = Eval(*e.lhs);
    if (op == "and") return Truthy(l) ? Eval(*e.rhs) : l;
    if (op == "or") return Truthy(l) ? l : Eval(*e.rhs);
    const Value r = Eval(*e.rhs);
    if (op == "==") return Value{l.undefined == r.undefined && l.json == r.json};
    if (op == "!=") return Value{!(l.undefined == r.undefined && l.json == r.json)};
    if (op == "~") return Value{ToString(l) + ToString(r)};
    if (op == "in" || op == "not in") {
      const bool in = Guard(e.line, [&] { return ApplyTest("in", l, {r}); });
      return Value{in == (op == "in")};
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      const bool comparable = (l.json.is_number() && r.json.is_number()) || (l.json.is_string() && r.json.is_string());
      if (!comparable) Fail(e.line, absl::StrCat("cannot compare ", ToJson(l.json, 0), " ", op, " ", ToJson(r.json, 0)));
      if (op == "<") return Value{l.json < r.json};
      if (op == ">") return Value{r.json < l.json};
      if (op == "<=") return Value{!(r.json < l.json)};
      return Value{!(l.json < r.json)};
    }
    return Arithmetic(op, l, r, e.line);
  }

  Value Arithmetic(const std::string& op, const Value& l, const Value& r, int line) const {
    const Json& a = l.json;
    const Json& b = r.json;
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value{a.get<std::string>() + b.get<std::string>()};
      if (a.is_array() && b.is_array()) {
        Json out = a;
        for (const Json& x : b) out.push_back(x);
        return Value{out};
      }
    }
    if (op == "*" && a.is_string() && b.is_number_integer()) {
      std::string out;
      for (int64_t i = 0; i < b.get<int64_t>(); ++i) out += a.get<std::string>();
      return Value{out};
    }
    if (!a.is_number() || !b.is_number()) {
      Fail(line, absl::StrCat("cannot apply '", op, "' to ", l.undefined ? "undefined" : ToJson(a, 0), " and ",
                              r.undefined ? "undefined" : ToJson(b, 0)));
    }
    const bool ints = a.is_number_integer() && b.is_number_integer();
    if (ints && op != "/" && op != "**") {
      const int64_t x = a.get<int64_t>(), y = b.get<int64_t>();
      if (op == "+") return Value{x + y};
      if (op == "-") return Value{x - y};
      if (op == "*") return Value{x * y};
      if (y == 0) Fail(line, "division by zero");
      // Python floors; C++ truncates.
      const int64_t q = x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0);
      if (op == "//") return Value{q};
      return Value{x - q * y};
    }
    const double x = a.get<double>(), y = b.get<double>();
    if (op == "+") return Value{x + y};
    if (op == "-") return Value{x - y};
    if (op == "*") return Value{x * y};
    if (op == "**") return ints && y >= 0 ? Value{static_cast<int64_t>(std::llround(std::pow(x, y)))} : Value{std::pow(x, y)};
    if (y == 0) Fail(line, "division by zero");
    if (op == "/") return Value{x / y};
    if (op == "//") return Value{std::floor(x / y)};
    return Value{x - std::floor(x / y) * y};
  }

  RenderTrace* trace_;
  std::vector<std::map<std::string, Value>> scopes_;  // innermost last; [0] holds the context
  std::vector<Json> namespaces_;                      // namespace() objects, mutable by `set ns.x`
  std::map<std::string, const Stmt*> macros_;
  std::string out_;
  std::string* capture_ = nullptr;  // set while a macro or `{% set %}` block renders into a string
  int current_ = -1;                // traced item whose iteration is running, -1 for none
  static constexpr int kMaxMacroDepth = 64;
  int macro_depth_ = 0;
};

}  // namespace

StatusOr<Template> Template::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(Body body, jinja::Parse(source));
  return Template(std::make_shared<const Body>(std::move(body)));
}

StatusOr<std::string> Template::Render(const Json& context, RenderTrace* trace) const {
  try {
    return Evaluator(context, trace).Run(*body_);
  } catch (const TemplateRaised& e) {
    return absl::InvalidArgumentError(absl::StrCat("the chat template refused the messages: ", e.what()));
  } catch (const EvalError& e) {
    return absl::FailedPreconditionError(e.what());
  } catch (const nlohmann::json::exception& e) {
    return absl::FailedPreconditionError(absl::StrCat("chat template: ", e.what()));
  }
}

}  // namespace prefixd::jinja
