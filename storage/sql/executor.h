// SqlExecutor: what a SQL backend's connection does for the shared layer:
// runs a catalogue statement (statements.h) with bound parameters and hands
// back its rows.
#ifndef SESSIOND_STORAGE_SQL_EXECUTOR_H_
#define SESSIOND_STORAGE_SQL_EXECUTOR_H_

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/sql/statements.h"

namespace sessiond::storage::sql {

enum class SqlType { kInt, kText, kBytes };

// A statement parameter: a 64-bit integer, text (IsStorableText,
// session_record.h) or any bytes. A view: what it was made from must
// outlive it.
struct SqlParam {
  SqlType type;
  int64_t number;
  absl::string_view bytes;
};

inline SqlParam IntParam(int64_t v) { return {SqlType::kInt, v, {}}; }
inline SqlParam TextParam(absl::string_view v) {
  return {SqlType::kText, 0, v};
}
inline SqlParam BytesParam(absl::string_view v) {
  return {SqlType::kBytes, 0, v};
}

// One row of a result, valid while the callback that gets it runs. Columns
// count from 0.
class SqlRow {
 public:
  virtual int64_t Int(int column) const = 0;
  virtual std::string Text(int column) const = 0;
  virtual std::string Bytes(int column) const = 0;

 protected:
  ~SqlRow() = default;
};

class SqlExecutor {
 public:
  virtual ~SqlExecutor() = default;

  virtual SqlDialect dialect() const = 0;

  // Runs `statement` (its text in dialect()) with `params` bound in order,
  // calling `on_row` for each row it returns. For an INSERT, UPDATE or
  // DELETE, returns how many rows it changed (for others, any count).
  // Errors are in the SessionStore error space (session_store.h), with
  // ALREADY_EXISTS for a unique violation; messages never hold bound
  // values.
  virtual absl::StatusOr<int64_t> Execute(
      SqlStatement statement, absl::Span<const SqlParam> params,
      absl::FunctionRef<void(const SqlRow&)> on_row) = 0;
};

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_EXECUTOR_H_
