#pragma once

// RETURN_IF_ERROR(expr): returns the absl::Status of expr from the enclosing function if not OK.
// ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr, returns its status on error, otherwise
// assigns (or declares) lhs from its value.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BERTH_CONCAT_INNER(a, b) a##b
#define BERTH_CONCAT(a, b) BERTH_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status berth_status_ = (expr);     \
    if (!berth_status_.ok()) {                 \
      return berth_status_;                    \
    }                                          \
  } while (false)

#define BERTH_ASSIGN_OR_RETURN_IMPL(var, lhs, expr) \
  auto var = (expr);                                \
  if (!var.ok()) {                                  \
    return std::move(var).status();                 \
  }                                                 \
  lhs = std::move(var).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  BERTH_ASSIGN_OR_RETURN_IMPL(BERTH_CONCAT(berth_statusor_, __LINE__), lhs, expr)
