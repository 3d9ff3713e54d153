#include "server/request_fields.h"

#include <cmath>
#include <limits>

#include "server/api_error.h"

namespace prefixd {

using json = nlohmann::json;

std::string Join(const std::string& base, const std::string& key) {
  return base.empty() ? std::string(key) : absl::StrCat(base, ".", key);
}
std::string Join(const std::string& base, size_t index) { return absl::StrCat(base, "[", index, "]"); }

Status WrongType(const std::string& field, const std::string& want, const json& got) {
  return InvalidArgumentFor(field,
                            absl::StrCat("'", field, "' must be ", want, ", got ", TypeName(got)));
}

Status Missing(const std::string& field) {
  return InvalidArgumentFor(field, absl::StrCat("'", field, "' is required"));
}

const json* Find(const json& obj, std::string_view key) {
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

}  // namespace prefixd
