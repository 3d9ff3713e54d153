// Request bodies as JSON: parsed under a nesting limit, read field by field, and the JSON
// paths that errors name.
//
// A body is parsed once into a tree, and nothing past `max_depth` levels of arrays and objects
// is ever built: the check runs as each one opens, so a deep body (60,000 nested arrays) never
// reaches code that recurses over the tree (copies, conversions, the chat template's tojson).
// Errors are InvalidArgument made with InvalidArgumentFor (api_error.h), naming the JSON path
// where the body went wrong, so the client's 400 points at the field.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace prefixd {

// The nesting limit of every JSON body the server parses (arrays and objects, the top-level
// object counting as 1), checked while parsing.
inline constexpr int kMaxJsonDepth = 64;

// Parses `body` as one JSON object. InvalidArgument naming the field where parsing failed
// ("messages[0].content" for a bad byte inside that string) when it is not valid JSON or not
// valid UTF-8, or is not an object; and naming the path where it goes deeper than
// `max_depth` levels of arrays and objects, checked as each one opens (nothing past the limit
// is built, and a deep tree never reaches code that recurses over it).
StatusOr<nlohmann::json> ParseJsonObject(std::string_view body, int max_depth = kMaxJsonDepth);
// The same, keeping the keys in the order the body has them.
StatusOr<nlohmann::ordered_json> ParseOrderedJsonObject(std::string_view body,
                                                        int max_depth = kMaxJsonDepth);

// The JSON path of the value or key being read at byte `offset` of `text` ("a.b[2]"; "" at
// the top level). Tolerates text that is invalid from the offset on. For error messages.
std::string JsonPathAt(std::string_view text, size_t offset);

// Reading one field of a parsed body. Each error is InvalidArgument made with
// InvalidArgumentFor(field, ...), naming `field` (a JSON path) in its message and param.
//
// The value of `key` in `obj`, or nullptr when it is absent or null: both read as "not given".
const nlohmann::json* FindField(const nlohmann::json& obj, std::string_view key);
// "'field' must be WANT, got TYPE".
Status WrongType(const std::string& field, const std::string& want, const nlohmann::json& got);
// "'field' is required".
Status Missing(const std::string& field);
// An integer in [lo, hi]; integral floats (16.0) are accepted, as JSON does not tell them apart.
StatusOr<int64_t> ReadInt(const nlohmann::json& j, const std::string& field, int64_t lo, int64_t hi);
// A finite number in [lo, hi].
StatusOr<double> ReadNumber(const nlohmann::json& j, const std::string& field, double lo, double hi);
StatusOr<bool> ReadBool(const nlohmann::json& j, const std::string& field);
StatusOr<std::string> ReadString(const nlohmann::json& j, const std::string& field);

// A path one step down: JsonPathJoin("messages", 2) -> "messages[2]",
// JsonPathJoin("a", "b") -> "a.b", JsonPathJoin("", "a") -> "a".
std::string JsonPathJoin(const std::string& base, const std::string& key);
std::string JsonPathJoin(const std::string& base, size_t index);

// The JSON type of `j` as a client would name it: "integer", "number", "string", "array", ...
template <typename Json>
std::string JsonTypeName(const Json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "number";
  return j.type_name();
}

}  // namespace prefixd
