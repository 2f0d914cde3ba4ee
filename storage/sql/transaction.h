// SqlTransaction: the catalogue's statements (statements.h) as typed calls
// on one connection, in whatever transaction the connection has open. The
// algorithms of SqlBackend (sql_backend.h) are written over it. Every call
// that takes a `tenant` finds, changes and counts only that tenant's rows;
// the others say why they cannot be scoped.
#ifndef SESSIOND_STORAGE_SQL_TRANSACTION_H_
#define SESSIOND_STORAGE_SQL_TRANSACTION_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/session_record.h"
#include "storage/sql/executor.h"
#include "storage/sql/statements.h"

namespace sessiond::storage::sql {

// How SelectByHash locks the row it reads, until the transaction ends. In
// SQLite every write transaction holds the whole database, so only
// PostgreSQL locks rows.
enum class RowLock {
  kNone,
  // Waits for any writer of the row to finish; keeps writers out.
  kShare,
  // As kShare, and keeps out other kShare and kUpdate readers.
  kUpdate,
};

class SqlTransaction {
 public:
  // `executor` must outlive this.
  explicit SqlTransaction(SqlExecutor& executor) : executor_(executor) {}

  // The tenant's record with this token hash, live or expired.
  absl::StatusOr<std::optional<SessionRecord>> SelectByHash(
      absl::string_view tenant, absl::string_view token_hash, RowLock lock);

  // Serialises, until the transaction ends, the transactions that may evict
  // sessions of the tenant's `user_id` (PostgreSQL: an advisory lock; SQLite
  // needs none).
  absl::Status LockUser(absl::string_view tenant, absl::string_view user_id);

  // Delete the expired holders, of any tenant, of an id or token hash: they
  // are unique across tenants, and an expired holder must not block a new
  // one.
  absl::Status DeleteExpiredConflicts(absl::string_view id,
                                      absl::string_view token_hash,
                                      absl::Time now);
  absl::Status DeleteExpiredByHash(absl::string_view token_hash,
                                   absl::Time now);

  // ALREADY_EXISTS if a row holds the record's id or token hash.
  absl::Status Insert(const SessionRecord& record);

  // Writes record.last_active_at (and the expiry it gives) to the row with
  // record.tenant and record.id.
  absl::Status Touch(const SessionRecord& record);

  // Writes every field of `record` but the tenant over the row with
  // record.tenant and record.id, which the caller has locked at
  // `old_version`. ALREADY_EXISTS if another row holds
  // the new token hash; INTERNAL if no row has record.id at `old_version`
  // (the lock should have made that impossible).
  absl::Status Rewrite(const SessionRecord& record, int64_t old_version);

  // Deletes the live sessions of the tenant's `user_id` but `keep_id` and
  // the `others_to_keep` most recently active others. Returns how many of
  // the sessions it chose to delete it left alone because they changed
  // before it could lock them; the caller then chooses again.
  absl::StatusOr<int64_t> EvictOverCap(absl::string_view tenant,
                                       absl::string_view user_id,
                                       absl::Time now,
                                       absl::string_view keep_id,
                                       int64_t others_to_keep);

  // Each deletes what it names of the tenant's rows, expired or not, and
  // returns the expiry of every row it deleted.
  absl::StatusOr<std::vector<absl::Time>> DeleteByHash(
      absl::string_view tenant, absl::string_view token_hash);
  absl::StatusOr<std::vector<absl::Time>> DeleteById(absl::string_view tenant,
                                                     absl::string_view id);
  absl::StatusOr<std::vector<absl::Time>> DeleteForUser(
      absl::string_view tenant, absl::string_view user_id,
      absl::string_view except_id);

  // The records of the tenant's user_id live at `now` that
  // StorageBackend::ListForUser lists, strictly after `after` if set.
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, absl::Time now,
      int count, int64_t max_bytes, const std::optional<ListCursor>& after);

  // How many of the tenant's rows are live at `now`.
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant, absl::Time now);

  // Deletes up to `batch_size` rows expired at `now`, of `tenant` only if it
  // is set; returns how many.
  absl::StatusOr<int64_t> PruneBatch(std::optional<absl::string_view> tenant,
                                     absl::Time now, int64_t batch_size);

  // One round trip that reads nothing of the sessions: the database's time.
  absl::StatusOr<absl::Time> Ping();

 private:
  // Runs a statement whose rows (if any) do not matter; returns how many
  // rows it changed.
  absl::StatusOr<int64_t> CountChanges(SqlStatement statement,
                                       absl::Span<const SqlParam> params);
  absl::StatusOr<std::vector<absl::Time>> DeleteReturningExpiries(
      SqlStatement statement, absl::Span<const SqlParam> params);

  SqlExecutor& executor_;
};

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_TRANSACTION_H_
