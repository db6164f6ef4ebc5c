// Early-return helpers for absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DSV2_RETURN_IF_ERROR(expr)               \
  do {                                           \
    absl::Status dsv2_status_ = (expr);          \
    if (!dsv2_status_.ok()) return dsv2_status_; \
  } while (0)

#define DSV2_CONCAT_INNER_(a, b) a##b
#define DSV2_CONCAT_(a, b) DSV2_CONCAT_INNER_(a, b)

// DSV2_ASSIGN_OR_RETURN(auto x, FunctionReturningStatusOr());
#define DSV2_ASSIGN_OR_RETURN(lhs, expr) \
  DSV2_ASSIGN_OR_RETURN_IMPL_(DSV2_CONCAT_(dsv2_statusor_, __LINE__), lhs, expr)
#define DSV2_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
