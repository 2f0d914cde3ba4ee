// ASSERT_OK and ASSERT_OK_AND_ASSIGN for absl::Status and absl::StatusOr in
// GoogleTest tests: on failure they print the expression and the status.
#ifndef SESSIOND_TESTS_TESTING_STATUS_MACROS_H_
#define SESSIOND_TESTS_TESTING_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "gtest/gtest.h"

#define SESSIOND_TESTING_CONCAT_INNER(a, b) a##b
#define SESSIOND_TESTING_CONCAT(a, b) SESSIOND_TESTING_CONCAT_INNER(a, b)

// Asserts that `expr` (an absl::Status) is OK.
#define ASSERT_OK(expr)                            \
  do {                                             \
    const absl::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

// Asserts that `expr` (an absl::StatusOr) is OK and moves its value into
// `lhs` (a declaration or an lvalue).
#define ASSERT_OK_AND_ASSIGN(lhs, expr)       \
  SESSIOND_TESTING_ASSERT_OK_AND_ASSIGN_IMPL( \
      SESSIOND_TESTING_CONCAT(status_or_, __LINE__), lhs, expr)
#define SESSIOND_TESTING_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                               \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // SESSIOND_TESTS_TESTING_STATUS_MACROS_H_
