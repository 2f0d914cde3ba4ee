// SqlBackend: the StorageBackend calls (backend.h) written once for the SQL
// backends, over the steps a backend offers (SqlSession) and the typed
// statements of SqlTransaction. A backend says only how a call gets a
// connection and how each kind of step is carried out on it; README.md
// describes how the steps add up to the contract's guarantees.
#ifndef SESSIOND_STORAGE_SQL_SQL_BACKEND_H_
#define SESSIOND_STORAGE_SQL_SQL_BACKEND_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/backend.h"
#include "storage/clock.h"
#include "storage/common/database_clock.h"
#include "storage/session_record.h"
#include "storage/sql/transaction.h"

namespace sessiond::storage::sql {

// The steps of one call. Each returns what `body` returns, or the error
// that kept it from running or committing.
class SqlSession {
 public:
  // Runs `body` on committed data without taking locks (SQLite: a reader
  // connection; PostgreSQL: autocommit statements).
  virtual absl::Status Read(
      absl::FunctionRef<absl::Status(SqlTransaction&)> body) = 0;

  // Runs `body` in one transaction, committed if `body` returns OK and
  // rolled back otherwise (SQLite: BEGIN IMMEDIATE on the writer
  // connection; PostgreSQL: READ COMMITTED).
  virtual absl::Status Transact(
      absl::FunctionRef<absl::Status(SqlTransaction&)> body) = 0;

  // Runs `body`, a single statement that writes, committed on its own
  // (PostgreSQL: autocommit; SQLite: a write transaction of its own).
  virtual absl::Status WriteAlone(
      absl::FunctionRef<absl::Status(SqlTransaction&)> body) = 0;

 protected:
  ~SqlSession() = default;
};

class SqlBackend : public StorageBackend {
 public:
  absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh,
                                       const TenantLimits& limits) final;
  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash) final;
  absl::StatusOr<SessionRecord> LoadAndTouch(absl::string_view tenant,
                                             absl::string_view token_hash,
                                             absl::Duration min_interval) final;
  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update) final;
  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits) final;
  absl::StatusOr<int64_t> DeleteByTokenHash(absl::string_view tenant,
                                            absl::string_view token_hash) final;
  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id) final;
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id) final;
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) final;
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant) final;
  absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) final;
  absl::Status Ping() final;

 protected:
  // What a call does if the connection it ran on turns out dead.
  enum class CallKind {
    // Reads and touches: repeating it whole changes nothing a caller can
    // tell, so it may always start again on another connection.
    kIdempotent,
    // May start again only while nothing it did can have been committed.
    kWrite,
  };

  // Where the calls read the time: `clock` itself, or the database's clock
  // as measured with `clock` (a database that replicas share), measured
  // again at each Ping and PruneExpired.
  enum class TimeSource { kLocal, kDatabase };

  // `clock` must not be null and outlive the backend; prune_batch_size > 0
  // is the most rows one PruneExpired step deletes.
  SqlBackend(const Clock* clock, int64_t prune_batch_size,
             TimeSource time_source = TimeSource::kLocal);

  // With TimeSource::kDatabase, measures the database's clock again; OK
  // otherwise.
  absl::Status MeasureDatabaseClock();

  // Carries out `body`, one call named `what` (in messages), on one
  // connection, or on a reader and the writer (SQLite).
  virtual absl::Status RunCall(
      absl::string_view what, CallKind kind,
      absl::FunctionRef<absl::Status(SqlSession&)> body) = 0;

 private:
  // Now from the clock, truncated to microseconds. The calls read it only
  // once they hold the locks of the rows they decide on.
  absl::Time Now() const;

  // RunCall of a kWrite call whose body is one Transact step.
  absl::Status RunTransaction(
      absl::string_view what,
      absl::FunctionRef<absl::Status(SqlTransaction&)> body);

  // In a transaction about to make a session of `tenant` belong to
  // `user_id`: takes the user's lock if `limits` cap its sessions.
  static absl::Status LockUserIfCapped(SqlTransaction& tx,
                                       const TenantLimits& limits,
                                       absl::string_view tenant,
                                       absl::string_view user_id);
  // The per-user cap, in the caller's transaction: keeps `written` and the
  // limits.max_sessions_per_user - 1 most recently active other live
  // sessions of its tenant's user, deletes the rest.
  absl::Status EvictOverCap(SqlTransaction& tx, const TenantLimits& limits,
                            const SessionRecord& written, absl::Time now) const;

  // Locks the tenant's row with `token_hash` for update, then reads the
  // time into `now`: the record if it is live then, NOT_FOUND otherwise.
  absl::StatusOr<SessionRecord> SelectLiveForUpdate(
      SqlTransaction& tx, absl::string_view tenant,
      absl::string_view token_hash, absl::Time* now) const;

  // A delete in one transaction: `remove` deletes the rows, returning
  // their expiries; then the time is read (while the rows are held) and the
  // live ones counted.
  absl::StatusOr<int64_t> DeleteCountingLive(
      absl::string_view what,
      absl::FunctionRef<
          absl::StatusOr<std::vector<absl::Time>>(SqlTransaction&)>
          remove);

  // Set with TimeSource::kDatabase.
  const std::unique_ptr<DatabaseClock> database_clock_;
  const Clock* const clock_;
  const int64_t prune_batch_size_;
};

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_SQL_BACKEND_H_
