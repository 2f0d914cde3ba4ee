// The PostgreSQL backend of SessionStore ("postgres"): sessions in one table
// of a PostgreSQL database (12 or newer, UTF8 encoding) that any number of
// sessiond replicas share.
//
// What a caller sees beyond session_store.h:
//  - While the server is down, stuck or unreachable, calls fail with
//    UNAVAILABLE; they work again as soon as it accepts connections, without
//    reopening the store. No call takes much longer than connect_timeout +
//    statement_timeout + 1 s (when it must connect first, about 2 s more per
//    server address tried).
//  - A call returns OK only after COMMIT succeeded: an acknowledged write is
//    as durable as the server makes commits (the store never lowers
//    synchronous_commit).
//  - Deadlocks and serialization failures are retried; when retries run out
//    the call fails with UNAVAILABLE (never ABORTED), nothing written.
//  - A value the server rejects as data (SQLSTATE class 22) is
//    INVALID_ARGUMENT. Messages never hold the password, bound values or the
//    server's DETAIL.
//  - Liveness is decided by the store's Clock, never the server's.
//  - The schema is created and migrated at open, once however many replicas
//    start together; a schema newer than this binary is refused.
//
// storage/postgres/README.md describes the design (pool, bounds, locking,
// retries).
#ifndef SESSIOND_STORAGE_POSTGRES_POSTGRES_STORE_H_
#define SESSIOND_STORAGE_POSTGRES_POSTGRES_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// The newest schema version this binary knows and migrates to.
inline constexpr int kPostgresSchemaVersion = 3;

struct PostgresOptions {
  // libpq connection string ("host=... dbname=...") or URI
  // ("postgresql://..."), without the password. Empty: libpq's defaults and
  // PG* environment variables.
  std::string dsn;
  // Optional: the password is read from this file at open (less trailing CR
  // and LF), kept in memory for reconnections, never logged. The file must
  // be private to its owner (e.g. mode 0600).
  std::string password_file;
  // Most connections open at once; also the most calls running at once.
  int pool_size = 8;
  // Bound on opening a connection, and on waiting for a free one.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Server-side bound on each statement (SET statement_timeout).
  absl::Duration statement_timeout = absl::Seconds(5);
  // Most rows one PruneExpired statement deletes.
  int prune_batch_size = 1000;
  // Decide expiry by the database's clock (measured at open, and again at
  // each ping and prune), so that replicas whose clocks differ agree; the
  // server sets it. Otherwise by the clock OpenPostgresStore is given, as
  // tests want.
  bool follow_database_clock = false;
};

// Connects, creates or migrates the schema, and returns the store.
// INVALID_ARGUMENT as SessionStore::Open says, for bad options, and for a
// password file that cannot be read or is empty; FAILED_PRECONDITION for a
// password file that group or others may read or write, a schema newer than
// this binary, or a database that is not UTF8; UNAVAILABLE if the server
// cannot be reached or refuses the login. `clock` must outlive the store.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenPostgresStore(
    const PostgresOptions& options, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_POSTGRES_POSTGRES_STORE_H_
