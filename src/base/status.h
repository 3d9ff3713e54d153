// Status and StatusOr for every fallible call that crosses a layer (absl's, from Debian's
// libabsl-dev), plus the two propagation macros the codebase uses.
//
// Thread safety: value types; no shared state.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace prefixd {

using absl::Status;
using absl::StatusOr;

}  // namespace prefixd

#define PREFIXD_CONCAT_INNER(a, b) a##b
#define PREFIXD_CONCAT(a, b) PREFIXD_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::absl::Status _status_ = (expr);         \
    if (!_status_.ok()) return _status_;      \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F())` evaluates F() (a StatusOr) and either binds its value to x
// or returns its status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(PREFIXD_CONCAT(_status_or_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
