// Strongly typed integer ids: a BlockId cannot index a table of nodes.
#pragma once

#include <cstdint>
#include <functional>

namespace prefixd {

template <typename Tag, typename Rep = int32_t>
class TypedId {
 public:
  using ValueType = Rep;
  constexpr TypedId() = default;
  constexpr explicit TypedId(Rep value) : value_(value) {}
  constexpr Rep value() const { return value_; }
  constexpr bool valid() const { return value_ >= 0; }
  friend constexpr bool operator==(TypedId a, TypedId b) = default;
  friend constexpr auto operator<=>(TypedId a, TypedId b) = default;
  template <typename H>
  friend H AbslHashValue(H h, TypedId id) {
    return H::combine(std::move(h), id.value_);
  }

 private:
  Rep value_ = -1;  // -1: no id.
};

}  // namespace prefixd

template <typename Tag, typename Rep>
struct std::hash<prefixd::TypedId<Tag, Rep>> {
  size_t operator()(prefixd::TypedId<Tag, Rep> id) const { return std::hash<Rep>()(id.value()); }
};
