// The statement catalogue of the SQL backends: every statement they run on
// sessions, each with its SQLite and its PostgreSQL text. A statement takes
// the same parameters, in the same order (?1.. in SQLite, $1.. in
// PostgreSQL), and returns the same columns in both dialects, so that the
// code binding and reading it (transaction.h) is written once.
//
// Every statement that finds, changes or counts sessions is scoped to one
// tenant (its first parameter), except the few that must see the whole
// table because ids and token hashes are unique across tenants (the
// deletes of expired holders of an id or hash, which would otherwise block
// a new one) and the prune of every tenant.
#ifndef SESSIOND_STORAGE_SQL_STATEMENTS_H_
#define SESSIOND_STORAGE_SQL_STATEMENTS_H_

#include "absl/strings/string_view.h"

namespace sessiond::storage::sql {

enum class SqlDialect { kSqlite, kPostgres };

// "sqlite" or "postgres": the prefix of the dialect's error messages.
absl::string_view DialectName(SqlDialect dialect);

// Parameters and results are stated in statements.cc, beside the texts.
enum class SqlStatement : int {
  kLockUser,
  kSelectByHash,
  kSelectByHashForShare,
  kSelectByHashForUpdate,
  kDeleteExpiredConflicts,
  kDeleteExpiredByHash,
  kInsert,
  kTouch,
  kRewrite,
  kEvictOverCap,
  kDeleteByHash,
  kDeleteById,
  kDeleteForUser,
  kListFirst,
  kListAfter,
  kCountLive,
  kPruneBatch,
  kPruneTenantBatch,
  kPing,
};

inline constexpr int kNumStatements = static_cast<int>(SqlStatement::kPing) + 1;

// The statement's name ("select_by_hash"): in error messages, and the name
// of the prepared statement on a PostgreSQL connection.
absl::string_view StatementName(SqlStatement statement);

// The statement's text in `dialect`, or nullptr where the dialect needs
// none (SQLite takes no per-user lock: its write transactions already
// exclude each other).
const char* StatementText(SqlStatement statement, SqlDialect dialect);

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_STATEMENTS_H_
