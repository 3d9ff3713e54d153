#include "tokenizer/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace prefixd::jinja {

namespace {

const char* kSpace = " \t\n\r\f\v";

// Python's len() of a str counts code points, not bytes.
size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string Strip(const std::string& s, const char* chars, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) {
    b = s.find_first_not_of(chars);
    if (b == std::string::npos) return "";
  }
  if (right) {
    const size_t last = s.find_last_not_of(chars);
    if (last == std::string::npos) return "";
    e = last + 1;
  }
  return b < e ? s.substr(b, e - b) : "";
}

const std::string& Str(const Value& v, const std::string& what) {
  if (!v.json.is_string()) throw EvalError(absl::StrCat(what, " needs a string, got ", ToJson(v.json, 0)));
  return v.json.get_ref<const std::string&>();
}

std::string PyFloat(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e16) return absl::StrCat(static_cast<int64_t>(d), ".0");
  return absl::StrCat(d);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string Capitalize(std::string s) {
  s = Lower(s);
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}
std::string Title(std::string s) {
  bool start = true;
  for (char& c : s) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    start = !alpha;
  }
  return s;
}

Json Items(const Value& v) {
  if (!v.json.is_object()) throw EvalError("items() needs a mapping");
  Json out = Json::array();
  for (auto it = v.json.begin(); it != v.json.end(); ++it) out.push_back(Json::array({it.key(), it.value()}));
  return out;
}

// A list view of any iterable: lists as they are, a dict's keys, a string's characters.
Json AsList(const Value& v) {
  if (v.json.is_array()) return v.json;
  if (v.json.is_object()) {
    Json out = Json::array();
    for (auto it = v.json.begin(); it != v.json.end(); ++it) out.push_back(it.key());
    return out;
  }
  if (v.json.is_string()) {
    Json out = Json::array();
    for (char c : v.json.get_ref<const std::string&>()) out.push_back(std::string(1, c));
    return out;
  }
  if (v.undefined || v.json.is_null()) return Json::array();
  throw EvalError(absl::StrCat("expected something to iterate over, got ", ToJson(v.json, 0)));
}

Value Attr(const Json& item, const std::string& name) {
  if (item.is_object() && item.contains(name)) return Value{item[name]};
  return Value::Undefined();
}

const Value* Kwarg(const std::vector<std::pair<std::string, Value>>& kwargs, std::string_view key) {
  for (const auto& [k, v] : kwargs) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value SelectReject(const std::string& name, const Value& in, const std::vector<Value>& args) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep_if = name == "select" || name == "selectattr";
  size_t a = 0;
  std::string attr;
  if (by_attr) {
    if (args.empty()) throw EvalError(absl::StrCat(name, " needs an attribute name"));
    attr = Str(args[0], name);
    a = 1;
  }
  std::string test = args.size() > a ? Str(args[a], name) : "";
  if (!test.empty() && !IsKnownTest(test)) throw EvalError(absl::StrCat("unknown test '", test, "'"));
  const std::vector<Value> test_args(args.begin() + std::min(args.size(), a + 1), args.end());
  Json out = Json::array();
  for (const Json& item : AsList(in)) {
    const Value v = by_attr ? Attr(item, attr) : Value{item};
    const bool pass = test.empty() ? Truthy(v) : ApplyTest(test, v, test_args);
    if (pass == keep_if) out.push_back(item);
  }
  return Value{out};
}

void ReprString(const std::string& s, std::string& out) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  out += q;
  for (char c : s) {
    if (c == q || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  out += q;
}

}  // namespace

bool IsKnownFilter(std::string_view name) {
  static const std::set<std::string_view> kFilters = {
      "abs", "capitalize", "count", "d", "default", "first", "float", "indent", "int", "items",
      "join", "last", "length", "list", "lower", "map", "reject", "rejectattr", "replace",
      "reverse", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson",
      "trim", "unique", "upper"};
  return kFilters.count(name) > 0;
}

bool IsKnownTest(std::string_view name) {
  static const std::set<std::string_view> kTests = {
      "defined", "undefined", "none", "string", "number", "integer", "float", "boolean",
      "true", "false", "mapping", "iterable", "sequence", "callable", "equalto", "eq", "==",
      "ne", "!=", "odd", "even", "divisibleby", "in"};
  return kTests.count(name) > 0;
}

bool Truthy(const Value& v) {
  if (v.undefined) return false;
  const Json& j = v.json;
  if (j.is_null()) return false;
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>() != 0;
  if (j.is_number()) return j.get<double>() != 0;
  // nlohmann's empty() and size() treat a string as one value: ask the string itself.
  if (j.is_string()) return !j.get_ref<const std::string&>().empty();
  if (j.is_array() || j.is_object()) return !j.empty();
  return true;
}

std::string Repr(const Json& j) {
  std::string out;
  if (j.is_string()) {
    ReprString(j.get_ref<const std::string&>(), out);
  } else if (j.is_array()) {
    out += '[';
    for (size_t i = 0; i < j.size(); ++i) absl::StrAppend(&out, i ? ", " : "", Repr(j[i]));
    out += ']';
  } else if (j.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      absl::StrAppend(&out, first ? "" : ", ");
      first = false;
      ReprString(it.key(), out);
      absl::StrAppend(&out, ": ", Repr(it.value()));
    }
    out += '}';
  } else {
    out = ToString(Value{j});
  }
  return out;
}

std::string ToString(const Value& v) {
  if (v.undefined) return "";
  const Json& j = v.json;
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "None";
  if (j.is_boolean()) return j.get<bool>() ? "True" : "False";
  if (j.is_number_integer()) return j.dump();
  if (j.is_number_float()) return PyFloat(j.get<double>());
  return Repr(j);
}

std::string ToJson(const Json& j, int indent) {
  // nlohmann's dump has no ", " separator; build the Python layout around it for containers.
  const std::string pad = indent > 0 ? "\n" : "";
  if (j.is_array() || j.is_object()) {
    if (j.empty()) return j.is_array() ? "[]" : "{}";
    std::string out(1, j.is_array() ? '[' : '{');
    bool first = true;
    auto add = [&](const std::string& item) {
      if (!first) out += indent > 0 ? "," : ", ";
      first = false;
      if (indent > 0) {
        out += "\n" + std::string(indent, ' ');
        out += absl::StrReplaceAll(item, {{"\n", "\n" + std::string(indent, ' ')}});
      } else {
        out += item;
      }
    };
    if (j.is_array()) {
      for (const Json& x : j) add(ToJson(x, indent));
    } else {
      for (auto it = j.begin(); it != j.end(); ++it) add(Json(it.key()).dump(-1, ' ', false) + ": " + ToJson(it.value(), indent));
    }
    out += pad + (j.is_array() ? "]" : "}");
    return out;
  }
  if (j.is_number_float()) return PyFloat(j.get<double>());
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Value ApplyFilter(const std::string& name, const Value& in, const std::vector<Value>& args,
                  const std::vector<std::pair<std::string, Value>>& kwargs) {
  const Json& j = in.json;
  if (name == "trim") return Value{Strip(ToString(in), kSpace, true, true)};
  if (name == "tojson") {
    const Value* ind = Kwarg(kwargs, "indent");
    const int indent = ind && ind->json.is_number_integer() ? ind->json.get<int>() : 0;
    return Value{ToJson(in.undefined ? Json() : j, indent)};
  }
  if (name == "length" || name == "count") {
    if (j.is_string()) return Value{static_cast<int64_t>(Utf8Length(j.get_ref<const std::string&>()))};
    if (j.is_array() || j.is_object()) return Value{static_cast<int64_t>(j.size())};
    throw EvalError(absl::StrCat("length of a value that has none: ", ToJson(j, 0)));
  }
  if (name == "string") return Value{ToString(in)};
  if (name == "list") return Value{AsList(in)};
  if (name == "items") return Value{Items(in)};
  if (name == "safe") return in;
  if (name == "lower") return Value{Lower(ToString(in))};
  if (name == "upper") return Value{Upper(ToString(in))};
  if (name == "capitalize") return Value{Capitalize(ToString(in))};
  if (name == "title") return Value{Title(ToString(in))};
  if (name == "default" || name == "d") {
    const bool boolean = args.size() > 1 && Truthy(args[1]);
    if (in.undefined || (boolean && !Truthy(in))) return args.empty() ? Value{""} : args[0];
    return in;
  }
  if (name == "first" || name == "last") {
    const Json list = AsList(in);
    if (list.empty()) return Value::Undefined();
    return Value{name == "first" ? list.front() : list.back()};
  }
  if (name == "join") {
    const std::string sep = args.empty() ? "" : ToString(args[0]);
    std::vector<std::string> parts;
    for (const Json& x : AsList(in)) parts.push_back(ToString(Value{x}));
    return Value{absl::StrJoin(parts, sep)};
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return SelectReject(name, in, args);
  }
  if (name == "map") {
    const Value* attr = Kwarg(kwargs, "attribute");
    Json out = Json::array();
    for (const Json& x : AsList(in)) {
      if (attr) {
        const Value v = Attr(x, ToString(*attr));
        out.push_back(v.json);
      } else if (!args.empty()) {
        out.push_back(ApplyFilter(Str(args[0], "map"), Value{x}, {}, {}).json);
      } else {
        throw EvalError("map needs attribute= or a filter name");
      }
    }
    return Value{out};
  }
  if (name == "reverse") {
    if (j.is_string()) return Value{std::string(j.get<std::string>().rbegin(), j.get<std::string>().rend())};
    Json list = AsList(in);
    std::reverse(list.begin(), list.end());
    return Value{list};
  }
  if (name == "unique") {
    Json out = Json::array();
    for (const Json& x : AsList(in)) {
      if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
    }
    return Value{out};
  }
  if (name == "sort") {
    Json list = AsList(in);
    std::stable_sort(list.begin(), list.end());
    return Value{list};
  }
  if (name == "sum") {
    Json total = 0;
    for (const Json& x : AsList(in)) {
      if (x.is_number_integer() && total.is_number_integer()) total = total.get<int64_t>() + x.get<int64_t>();
      else total = total.get<double>() + x.get<double>();
    }
    return Value{total};
  }
  if (name == "int") {
    if (j.is_number()) return Value{static_cast<int64_t>(j.get<double>())};
    try { return Value{static_cast<int64_t>(std::stoll(ToString(in)))}; } catch (...) { return Value{0}; }
  }
  if (name == "float") {
    if (j.is_number()) return Value{j.get<double>()};
    try { return Value{std::stod(ToString(in))}; } catch (...) { return Value{0.0}; }
  }
  if (name == "abs") {
    if (j.is_number_integer()) return Value{std::llabs(j.get<int64_t>())};
    if (j.is_number()) return Value{std::fabs(j.get<double>())};
    throw EvalError("abs needs a number");
  }
  if (name == "replace") {
    if (args.size() < 2) throw EvalError("replace needs two arguments");
    return Value{absl::StrReplaceAll(ToString(in), {{ToString(args[0]), ToString(args[1])}})};
  }
  if (name == "indent") {
    const int width = args.empty() ? 4 : static_cast<int>(args[0].json.get<int64_t>());
    return Value{absl::StrReplaceAll(ToString(in), {{"\n", "\n" + std::string(width, ' ')}})};
  }
  throw EvalError(absl::StrCat("unknown filter '", name, "'"));
}

bool ApplyTest(const std::string& name, const Value& in, const std::vector<Value>& args) {
  const Json& j = in.json;
  if (name == "defined") return !in.undefined;
  if (name == "undefined") return in.undefined;
  if (in.undefined) {
    if (name == "none" || name == "string" || name == "number" || name == "mapping") return false;
  }
  if (name == "none") return j.is_null();
  if (name == "string") return j.is_string();
  if (name == "number") return j.is_number();
  if (name == "integer") return j.is_number_integer();
  if (name == "float") return j.is_number_float();
  if (name == "boolean") return j.is_boolean();
  if (name == "true") return j.is_boolean() && j.get<bool>();
  if (name == "false") return j.is_boolean() && !j.get<bool>();
  if (name == "mapping") return j.is_object();
  if (name == "iterable") return j.is_array() || j.is_object() || j.is_string();
  if (name == "sequence") return j.is_array() || j.is_string();
  if (name == "callable") return false;
  if (name == "odd" || name == "even") {
    if (!j.is_number_integer()) throw EvalError(absl::StrCat("'", name, "' needs an integer"));
    return (j.get<int64_t>() % 2 != 0) == (name == "odd");
  }
  if (args.empty()) throw EvalError(absl::StrCat("test '", name, "' needs an argument"));
  const Json& other = args[0].json;
  if (name == "equalto" || name == "eq" || name == "==") return j == other && !in.undefined;
  if (name == "ne" || name == "!=") return j != other;
  if (name == "divisibleby") return j.is_number_integer() && other.get<int64_t>() != 0 && j.get<int64_t>() % other.get<int64_t>() == 0;
  if (name == "in") {
    if (other.is_array()) return std::find(other.begin(), other.end(), j) != other.end();
    if (other.is_object()) return j.is_string() && other.contains(j.get<std::string>());
    if (other.is_string()) return j.is_string() && other.get<std::string>().find(j.get<std::string>()) != std::string::npos;
    return false;
  }
  throw EvalError(absl::StrCat("unknown test '", name, "'"));
}

namespace {

Value StringMethod(const std::string& s, const std::string& name, const std::vector<Value>& args) {
  auto chars = [&]() -> std::string { return args.empty() || args[0].json.is_null() ? kSpace : Str(args[0], name); };
  if (name == "strip") return Value{Strip(s, chars().c_str(), true, true)};
  if (name == "lstrip") return Value{Strip(s, chars().c_str(), true, false)};
  if (name == "rstrip") return Value{Strip(s, chars().c_str(), false, true)};
  if (name == "startswith" || name == "endswith") {
    if (args.empty()) throw EvalError(absl::StrCat(name, "() needs an argument"));
    const std::string& p = Str(args[0], name);
    return Value{name == "startswith" ? s.starts_with(p) : s.ends_with(p)};
  }
  if (name == "split") {
    Json out = Json::array();
    if (args.empty() || args[0].json.is_null()) {
      for (absl::string_view part : absl::StrSplit(s, absl::ByAnyChar(kSpace), absl::SkipEmpty())) out.push_back(std::string(part));
    } else {
      const std::string& sep = Str(args[0], "split");
      if (sep.empty()) throw EvalError("split() with an empty separator");
      for (absl::string_view part : absl::StrSplit(s, sep)) out.push_back(std::string(part));
    }
    return Value{out};
  }
  if (name == "upper") return Value{Upper(s)};
  if (name == "lower") return Value{Lower(s)};
  if (name == "title") return Value{Title(s)};
  if (name == "capitalize") return Value{Capitalize(s)};
  if (name == "replace") {
    if (args.size() < 2) throw EvalError("replace() needs two arguments");
    return Value{absl::StrReplaceAll(s, {{Str(args[0], "replace"), Str(args[1], "replace")}})};
  }
  if (name == "find") {
    const size_t at = s.find(Str(args.at(0), "find"));
    return Value{at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(at)};
  }
  throw EvalError(absl::StrCat("unknown string method '", name, "'"));
}

}  // namespace

Value CallMethod(const Value& obj, const std::string& name, const std::vector<Value>& args,
                 const std::vector<std::pair<std::string, Value>>& kwargs) {
  const Json& j = obj.json;
  if (j.is_string()) return StringMethod(j.get_ref<const std::string&>(), name, args);
  if (j.is_object()) {
    if (name == "items") return Value{Items(obj)};
    if (name == "keys") return Value{AsList(obj)};
    if (name == "values") {
      Json out = Json::array();
      for (const Json& v : j) out.push_back(v);
      return Value{out};
    }
    if (name == "get") {
      if (args.empty()) throw EvalError("get() needs a key");
      const std::string key = ToString(args[0]);
      if (j.contains(key)) return Value{j[key]};
      return args.size() > 1 ? args[1] : Value{Json()};
    }
  }
  throw EvalError(absl::StrCat("unknown method '", name, "' on ", obj.undefined ? "an undefined value" : ToJson(j, 0)));
}

}  // namespace prefixd::jinja
