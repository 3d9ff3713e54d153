// Reading one field of a parsed JSON request body: the typed readers every request parser
// (openai_request.h, anthropic_request.h) shares, so each rejection reads the same way and
// names the offending field as a JSON path ("messages[1].content[0].text").
//
// A field that is absent or null reads as "not given" (Find returns nullptr). Every failure is
// InvalidArgument made with InvalidArgumentFor (api_error.h), carrying the field's path.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace prefixd {

// Field names as JSON paths: Join("messages", 2) -> "messages[2]", Join("a", "b") -> "a.b".
std::string Join(const std::string& base, const std::string& key);
std::string Join(const std::string& base, size_t index);

// The JSON type as a client would name it ("integer", "number", "string", ...).
template <typename Json>
std::string TypeName(const Json& j) {
  if (j.is_number_integer()) return "integer";
  if (j.is_number_float()) return "number";
  return j.type_name();
}

// "'field' must be WANT, got TYPE".
Status WrongType(const std::string& field, const std::string& want, const nlohmann::json& got);
// "'field' is required".
Status Missing(const std::string& field);

// The member `key` of `obj`, or nullptr when it is absent or null.
const nlohmann::json* Find(const nlohmann::json& obj, std::string_view key);

// An integer in [lo, hi]; integral floats (16.0) are accepted as JSON does not tell them apart.
StatusOr<int64_t> ReadInt(const nlohmann::json& j, const std::string& field, int64_t lo, int64_t hi);
// A finite number in [lo, hi].
StatusOr<double> ReadNumber(const nlohmann::json& j, const std::string& field, double lo, double hi);
StatusOr<bool> ReadBool(const nlohmann::json& j, const std::string& field);
StatusOr<std::string> ReadString(const nlohmann::json& j, const std::string& field);

}  // namespace prefixd
