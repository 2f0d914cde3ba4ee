// PostgreSQL backend of SessionStore: sessions in one table of a PostgreSQL
// database (12 or newer) that any number of sessiond replicas share.
//
// Client library: libpqxx 6 (pqxx::connection, pqxx::work and
// pqxx::nontransaction, connection::prepare and exec_prepared), which the
// store wraps so that no libpqxx exception escapes and every wait is bounded
// (below).
//
// Pool and reconnection: the store keeps up to `pool_size` connections,
// opened on demand, each used by one thread at a time. A call borrows one for
// its whole duration; when all are busy it waits for one to come back, up to
// `connect_timeout`, then fails with UNAVAILABLE. Each connection prepares its
// statements on first use (values are always bound as parameters, bytea in
// binary format, never spliced into SQL). A connection that fails at the
// connection level, times out on the client side or is left in a transaction
// is dropped, never returned to the pool (libpqxx's own "reactivation" of a
// broken connection is turned off); an idle pooled connection on which the
// server has said or closed anything (e.g. "terminating connection due to
// administrator command" when the server restarts) is dropped when it is
// next borrowed, and a new one is opened in its place. So when the server
// restarts the store recovers by itself: calls fail with UNAVAILABLE while
// the server is down, and work again as soon as it accepts connections. A
// read, or a transaction that failed before COMMIT was sent, on a pooled
// connection that turns out dead is retried once on a new connection.
//
// Bounds: every connection runs with `SET statement_timeout`, and libpq's
// `connect_timeout`, `keepalives` and `tcp_user_timeout` are set (overriding
// the DSN), so the server and the kernel give up on a dead peer. libpqxx's
// calls block, so on top of that each store has a watchdog thread: while a
// call uses a connection, the connection's socket is registered with the
// call's deadline, and if the deadline passes first the watchdog shuts the
// socket down, which makes the blocked libpqxx call fail at once (the
// connection is then dropped). So even a server that is alive but stuck (say
// SIGSTOPped, whose kernel still acknowledges packets) cannot hold a thread:
// waiting for a pooled connection is bounded by connect_timeout; opening one
// by libpq's connect_timeout (which libpqxx's blocking connect honours: the
// call's time left, at most connect_timeout, in whole seconds rounded up and
// at least 2, per server address tried); and everything after that by the
// call's deadline, connect_timeout + statement_timeout + 1 s after it
// started. A call thus never takes much longer than that deadline (at most
// about 2 s more per server address, when it has to connect just before
// it), and then fails with UNAVAILABLE.
//
// Transactions: every call reads the time from the Clock only once it is
// serialised against the other writers of the rows it decides on (holds their
// row locks), so that times are in commit order: a write that waited for a
// lock never commits an older time over a newer one, and a session a call
// found expired is never brought back by a write that read the time earlier.
//  - Load is one plain read in the common case. Only when that read finds the
//    session expired does it take a share lock on the row (waiting for any
//    writer of it to finish), read the time again and decide.
//  - LoadAndTouch answers with one plain read when no touch is due; a touch
//    locks the row (SELECT ... FOR UPDATE), reads the time, decides, updates.
//  - Create, Update, Cycle and the deletes each run in one READ COMMITTED
//    transaction that locks first and reads the time after. Update and Cycle
//    lock the row with SELECT ... FOR UPDATE (so of concurrent Cycles of one
//    session exactly one finds it), and the compare-and-set is also the
//    `WHERE id = $id AND version = $expected` of the UPDATE itself. Deletes
//    remove the rows with DELETE ... RETURNING expires_at and count the live
//    ones with a time read while they hold them.
//  - Update and Cycle set last_active_at to the later of now and the stored
//    value: the row lock orders writes, but each process reads its own
//    clock, which may be behind the one that wrote last.
//  - When the per-user cap applies, Create, Update and Cycle first take a
//    transaction-scoped advisory lock on hash(user_id), so that the
//    insert-then-evict of concurrent writers for one user, in any number of
//    processes, is serialised and the cap always holds. Touches do not take
//    it (they lock only their row); instead the eviction deletes a victim
//    only if its last_active_at is still the one it was chosen by, and
//    chooses again otherwise, so that it always evicts the least recently
//    active sessions as of the moment it deletes them.
//  - ListForUser is one plain read as of its snapshot, with the time read
//    just before it.
//  - Deadlocks and serialization failures (SQLSTATE 40P01, 40001) roll the
//    transaction back and retry it up to 4 more times with jittered backoff;
//    then the call fails with UNAVAILABLE, not ABORTED, which
//    session_store.h reserves for a version mismatch (nothing was written
//    either way).
//  - PruneExpired deletes at most `prune_batch_size` rows per autocommit
//    statement, choosing them with FOR UPDATE SKIP LOCKED, so it holds no
//    lock for long, never waits for a writer (whose row it skips), and
//    replicas pruning at the same moment neither wait for each other nor
//    deadlock.
//
// Time: liveness is decided on the stored `expires_at` against now from the
// injected Clock (passed as a parameter, or compared in the store); the
// server's clock is never used. Times are bigint Unix microseconds,
// durations bigint microseconds (int64 max = infinite).
//
// Durability: a call returns OK only after COMMIT succeeded, so an
// acknowledged write is as durable as the server makes commits: with the
// default `synchronous_commit = on` it survives a crash of the server, and
// with synchronous replication the loss of the primary. The store never
// lowers synchronous_commit.
//
// Errors: connection failures, client-side timeouts, statement timeouts
// (57014), server shutdown or start-up (57P01..57P03, class 08), lack of
// resources (class 53), lock timeouts (55P03) and statements whose completion
// is unknown (40003) are UNAVAILABLE; a unique violation is ALREADY_EXISTS; a
// data exception (class 22) is INVALID_ARGUMENT without the server's message
// (which may quote the value); anything else is INTERNAL with the server's
// primary message (which names constraints, never values; DETAIL, which holds
// values, is not used). The password is never part of a message.
// FAILED_PRECONDITION comes only from OpenPostgresStore: a connection opened
// later that finds the database no longer UTF8 fails its call with INTERNAL.
//
// Text: PostgreSQL text cannot hold NUL bytes or invalid UTF-8, so ids and
// user ids must be valid UTF-8 without NUL (IsStorableText in
// session_record.h, the rule every backend applies): Create, Update and Cycle
// reject others with INVALID_ARGUMENT, and lookups by such a value find
// nothing. Ids are compared byte-wise (COLLATE "C"), as in every other
// backend. The database must use the UTF8 encoding.
//
// Schema: created and migrated at start-up from an ordered list of
// migrations, each recorded in `sessiond_schema_migrations`. A store whose
// schema is current reads the version without locking or writing anything;
// otherwise it migrates in one transaction under pg_advisory_xact_lock, so
// replicas starting at once migrate exactly once. A schema newer than this
// binary knows is refused with FAILED_PRECONDITION.
#ifndef SESSIOND_STORAGE_POSTGRES_STORE_H_
#define SESSIOND_STORAGE_POSTGRES_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// The newest schema version this binary knows and migrates to.
inline constexpr int kPostgresSchemaVersion = 1;

struct PostgresOptions {
  // libpq connection string ("host=... dbname=...") or URI
  // ("postgresql://..."), without the password. Empty: libpq's defaults and
  // PG* environment variables.
  std::string dsn;
  // Optional: the password is read from this file (one trailing newline
  // stripped) at open, kept in memory for reconnections, never logged.
  std::string password_file;
  // Most connections open at once; also the most calls running at once.
  int pool_size = 8;
  // Bound on opening a connection, and on waiting for a free one.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Server-side bound on each statement (SET statement_timeout).
  absl::Duration statement_timeout = absl::Seconds(5);
  // Most rows one PruneExpired statement deletes.
  int prune_batch_size = 1000;
};

// Connects, creates or migrates the schema, and returns the store.
// INVALID_ARGUMENT for bad options (or an unreadable password file),
// UNAVAILABLE if the server cannot be reached or refuses the login,
// FAILED_PRECONDITION if the schema is newer than this binary or the database
// is not UTF8. `clock` must outlive the store. backend_name() is "postgres".
absl::StatusOr<std::unique_ptr<SessionStore>> OpenPostgresStore(
    const PostgresOptions& options, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_POSTGRES_STORE_H_
