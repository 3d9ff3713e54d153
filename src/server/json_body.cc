#include "server/json_body.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/api_error.h"

namespace prefixd {

using json = nlohmann::json;

std::string JsonPathJoin(const std::string& base, const std::string& key) {
  return base.empty() ? std::string(key) : absl::StrCat(base, ".", key);
}

std::string JsonPathJoin(const std::string& base, size_t index) { return absl::StrCat(base, "[", index, "]"); }

Status WrongType(const std::string& field, const std::string& want, const json& got) {
  return InvalidArgumentFor(field,
                            absl::StrCat("'", field, "' must be ", want, ", got ", JsonTypeName(got)));
}

Status Missing(const std::string& field) {
  return InvalidArgumentFor(field, absl::StrCat("'", field, "' is required"));
}

const json* FindField(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

StatusOr<int64_t> ReadInt(const json& j, const std::string& field, int64_t lo, int64_t hi) {
  int64_t v = 0;
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgumentFor(field, absl::StrCat("'", field, "' is out of range"));
    }
    v = static_cast<int64_t>(u);
  } else if (j.is_number_integer()) {
    v = j.get<int64_t>();
  } else if (j.is_number_float()) {
    const double d = j.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15) {
      return WrongType(field, "an integer", j);
    }
    v = static_cast<int64_t>(d);
  } else {
    return WrongType(field, "an integer", j);
  }
  if (v < lo || v > hi) {
    return InvalidArgumentFor(
        field, absl::StrCat("'", field, "' is ", v, "; it must be between ", lo, " and ", hi));
  }
  return v;
}

StatusOr<double> ReadNumber(const json& j, const std::string& field, double lo, double hi) {
  if (!j.is_number()) return WrongType(field, "a number", j);
  const double v = j.get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return InvalidArgumentFor(
        field, absl::StrCat("'", field, "' is ", v, "; it must be between ", lo, " and ", hi));
  }
  return v;
}

StatusOr<bool> ReadBool(const json& j, const std::string& field) {
  if (!j.is_boolean()) return WrongType(field, "a boolean", j);
  return j.get<bool>();
}

StatusOr<std::string> ReadString(const json& j, const std::string& field) {
  if (!j.is_string()) return WrongType(field, "a string", j);
  return j.get<std::string>();
}

std::string JsonPathAt(std::string_view text, size_t offset) {
  struct Frame {
    bool object = false;
    bool expect_key = false;
    std::string key;
    size_t index = 0;
  };
  std::vector<Frame> stack;
  std::string partial_key;
  bool in_key_string = false;
  const size_t end = std::min(offset, text.size());
  size_t i = 0;
  while (i < end) {
    const char c = text[i];
    if (c == '"') {
      const bool is_key = !stack.empty() && stack.back().object && stack.back().expect_key;
      std::string s;
      size_t j = i + 1;
      bool closed = false;
      for (; j < text.size(); ++j) {
        if (j >= end) break;
        if (text[j] == '\\') {
          if (j + 1 < text.size()) s += text[j + 1];
          ++j;
          continue;
        }
        if (text[j] == '"') {
          closed = true;
          break;
        }
        s += text[j];
      }
      if (!closed) {  // the offset lies inside this string
        if (is_key) {
          in_key_string = true;
          partial_key = s;
        }
        break;
      }
      if (is_key) stack.back().key = std::move(s);
      i = j + 1;
      continue;
    }
    switch (c) {
      case '{': stack.push_back(Frame{true, true, "", 0}); break;
      case '[': stack.push_back(Frame{false, false, "", 0}); break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ',':
        if (!stack.empty()) {
          if (stack.back().object) {
            stack.back().expect_key = true;
            stack.back().key.clear();
          } else {
            ++stack.back().index;
          }
        }
        break;
      case ':':
        if (!stack.empty() && stack.back().object) stack.back().expect_key = false;
        break;
      default: break;
    }
    ++i;
  }
  std::string path;
  for (size_t k = 0; k < stack.size(); ++k) {
    const Frame& f = stack[k];
    const bool last = k + 1 == stack.size();
    if (f.object) {
      std::string key = f.key;
      if (last && in_key_string) key = partial_key;
      if (key.empty()) break;
      path = JsonPathJoin(path, key);
    } else {
      path = JsonPathJoin(path, f.index);
    }
  }
  return path;
}

namespace {

// nlohmann's DOM builder behind a depth check. nlohmann's parser keeps its own stack on the
// heap, but everything that walks the tree afterwards (copies, conversions between json and
// ordered_json, the chat template's tojson) recurses: a body nesting 60,000 arrays overflowed
// the stack. The check runs as each array or object opens, so a deep body is refused before
// any of it is built past the limit. A callback parser (json::parse with a parser_callback_t)
// would see `depth` too, but keeps a second stack per value and cannot stop the parse.
template <typename Json>
class DepthLimitedSax {
 public:
  DepthLimitedSax(Json& root, int max_depth) : dom_(root, /*allow_exceptions=*/false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(typename Json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(typename Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(typename Json::number_float_t v, const typename Json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(typename Json::string_t& v) { return dom_.string(v); }
  bool binary(typename Json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return Open() && dom_.start_object(n); }
  bool key(typename Json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Open() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t byte, const std::string& /*token*/, const nlohmann::detail::exception& e) {
    error_byte_ = byte;
    error_what_ = e.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  std::size_t error_byte() const { return error_byte_; }
  const std::string& error_what() const { return error_what_; }

 private:
  bool Open() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  int max_depth_;
  int depth_ = 0;  // arrays and objects open at the current position
  bool too_deep_ = false;
  std::size_t error_byte_ = 0;  // parse errors: 1-based byte where the parser stopped
  std::string error_what_;
};

// The byte offset of the bracket that opens nesting level `level` (1 = the top-level
// value), skipping strings; npos when the text never nests that deep. For the error message
// of a body refused as too deep: one linear pass.
size_t OffsetOfLevel(std::string_view text, int level) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth == level) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::string_view::npos;
}

template <typename Json>
StatusOr<Json> ParseLimited(std::string_view body, int max_depth) {
  Json j;
  DepthLimitedSax<Json> sax(j, max_depth);
  bool ok = false;
  try {
    ok = Json::sax_parse(body.begin(), body.end(), &sax);
  } catch (const std::exception& e) {
    return InvalidArgumentFor("", absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  if (sax.too_deep()) {
    const size_t at = OffsetOfLevel(body, max_depth + 1);
    const std::string path = at == std::string_view::npos ? "" : JsonPathAt(body, at);
    return InvalidArgumentFor(
        path, absl::StrCat("the request body nests arrays and objects more than ", max_depth,
                           " levels deep", path.empty() ? "" : absl::StrCat(" (in '", path, "')"),
                           "; the limit is ", max_depth));
  }
  if (!ok) {
    const size_t at = sax.error_byte() > 0 ? sax.error_byte() - 1 : 0;
    const std::string path = JsonPathAt(body, at);
    std::string what = sax.error_what();
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep what follows.
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return InvalidArgumentFor(
        path, absl::StrCat("the request body is not valid JSON",
                           path.empty() ? "" : absl::StrCat(" (in '", path, "')"), ": ", what));
  }
  if (!j.is_object()) {
    return InvalidArgumentFor("", absl::StrCat("the request body must be a JSON object, got ", JsonTypeName(j)));
  }
  return j;
}

}  // namespace

StatusOr<json> ParseJsonObject(std::string_view body, int max_depth) {
  return ParseLimited<json>(body, max_depth);
}

StatusOr<nlohmann::ordered_json> ParseOrderedJsonObject(std::string_view body, int max_depth) {
  return ParseLimited<nlohmann::ordered_json>(body, max_depth);
}

}  // namespace prefixd
