// Internal to the PostgreSQL backend (storage/postgres_store.cc and its
// tests; nothing else may include it): one libpqxx connection whose every
// wait on the server is bounded (libpq's connect_timeout while connecting,
// the Watchdog afterwards), its prepared statements and transactions, and the
// mapping of libpqxx exceptions and SQLSTATEs to the SessionStore error
// space.
#ifndef SESSIOND_STORAGE_POSTGRES_CONN_H_
#define SESSIOND_STORAGE_POSTGRES_CONN_H_

#include <cstdint>
#include <memory>
#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/errorhandler>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/socket_watchdog.h"

namespace sessiond::storage::postgres_internal {

using ::sessiond::storage::internal::Watchdog;

// What went wrong in the last failed statement of a connection.
enum class ErrorKind {
  kNone,
  // The connection is gone or unusable (lost, timed out on the client side,
  // server shutting down); it has been marked broken.
  kConnection,
  // Deadlock or serialization failure: the transaction may be retried.
  kRetryable,
  // Anything else (the connection itself is still fine).
  kOther,
};

// A statement the store prepares on each connection (libpqxx sends the
// PREPARE on its first use there). Parameters carry explicit casts in the SQL
// ($1::bytea, $2::bigint, $3::text), so their types never depend on
// inference.
struct Statement {
  // Index in the store's statement table.
  int index;
  // The prepared statement's name on the connection.
  const char* name;
  const char* sql;
};

// A bytea parameter: sent in binary format, any bytes.
pqxx::binarystring Bytea(absl::string_view v);
// A text parameter: sent as text; must be IsStorableText (session_record.h).
inline std::string Text(absl::string_view v) { return std::string(v); }

// Column values of a (text-format) result.
int64_t FieldInt(const pqxx::field& f);
std::string FieldText(const pqxx::field& f);
std::string FieldBytea(const pqxx::field& f);
// Rows an INSERT, UPDATE or DELETE changed.
int64_t Affected(const pqxx::result& r);

// Connection settings.
struct ConnectOptions {
  // libpq keywords and values, in order; a later entry overrides an earlier
  // one. Connection::Open adds connect_timeout.
  std::vector<std::pair<std::string, std::string>> params;
  // Server-side statement timeout, set on every new connection.
  absl::Duration statement_timeout;
  // Removed from every error message (the password), if not empty.
  std::string secret;
  // Registered on every connection (with pqxx::connection::prepare).
  absl::Span<const Statement> statements;
};

// The keyword/value pairs a libpq connection string or URI sets, in order.
// libpqxx takes a single connection string as is; the store must add its own
// settings on top of the operator's DSN, whichever of the two syntaxes it
// uses. On failure, libpq's message (which may quote part of the DSN).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseDsn(
    const std::string& dsn);

// A libpq connection string ("k='v' ...") for the pairs; a later pair
// overrides an earlier one with the same keyword.
std::string ConnectionString(
    const std::vector<std::pair<std::string, std::string>>& params);

// One libpqxx connection. Used by one thread at a time.
//
// Every use of the server happens inside a call: StartCall(deadline) ...
// EndCall(). In between, the connection's socket is watched by the Watchdog,
// which shuts it down if the deadline passes first; libpqxx then fails with
// pqxx::broken_connection and the connection is marked broken. Outside a
// call the connection never talks to the server (except for the Terminate
// message libpq sends when it is destroyed).
//
// Within a call, statements run in the transaction opened by Begin() (a
// pqxx::work) until Commit() or Rollback(), and otherwise each in autocommit
// mode (a pqxx::nontransaction).
class Connection {
 public:
  // Connects (bounded by libpq's connect_timeout, derived from `deadline`:
  // whole seconds, at least 2, per address tried), then sets
  // statement_timeout and checks the server encoding in one round trip
  // (bounded by `deadline` through `watchdog`). UNAVAILABLE on failure (with
  // libpq's message), FAILED_PRECONDITION if the database's encoding is not
  // UTF8. `watchdog` must outlive the connection.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectOptions& options, absl::Time deadline, Watchdog& watchdog);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts a call: until EndCall(), the socket is shut down at `deadline`.
  void StartCall(absl::Time deadline);
  // Ends the call: rolls back a transaction left open (still within the
  // deadline), then stops watching the socket. If the watchdog fired, the
  // connection is marked broken.
  void EndCall();

  // Runs a prepared statement with its parameters (int64_t, Text(...),
  // Bytea(...)), in the open transaction or in autocommit mode.
  template <typename... Args>
  absl::StatusOr<pqxx::result> Exec(const Statement& stmt,
                                    absl::string_view what,
                                    const Args&... args) {
    if (absl::Status s = CheckUsable(what); !s.ok()) return s;
    try {
      return Current().exec_prepared(stmt.name, args...);
    } catch (...) {
      return Fail(what);
    }
  }
  // Runs fixed SQL (may be several statements: the result is the last one's)
  // in the open transaction or in autocommit mode.
  absl::StatusOr<pqxx::result> ExecSql(const std::string& sql,
                                       absl::string_view what);

  // Opens a READ COMMITTED transaction (pqxx::work; sends BEGIN).
  absl::Status Begin(absl::string_view what);
  // Commits the open transaction. On failure the transaction is over on the
  // server (or, if the connection was lost, its outcome is unknown and the
  // connection is broken); Rollback() then only cleans up.
  absl::Status Commit(absl::string_view what);
  // Rolls the open transaction back, if any. Never fails: if the rollback
  // cannot be confirmed, the connection is marked broken.
  void Rollback();
  bool InTransaction() const { return txn_ != nullptr; }

  // True once the connection is unusable; it must then be dropped.
  bool broken() const { return broken_; }
  // Idle: connected, not broken, no transaction open.
  bool Idle() const;
  // For a connection coming out of the pool: false if the server has said
  // or closed anything since the connection was last used (a connection
  // idle in the pool is sent nothing while healthy).
  bool LooksHealthy() const;

  ErrorKind last_error() const { return last_error_; }
  void ClearLastError() { last_error_ = ErrorKind::kNone; }

 private:
  Connection(std::unique_ptr<pqxx::connection> conn, int watch_fd,
             Watchdog& watchdog, std::string secret);

  // UNAVAILABLE if the connection is broken.
  absl::Status CheckUsable(absl::string_view what);
  // The transaction statements run in: the open pqxx::work, or a
  // pqxx::nontransaction (created on demand; it sends nothing by itself).
  pqxx::transaction_base& Current();
  // The status for the exception being handled; records last_error_ and
  // marks the connection broken when it is unusable. Call only from a catch
  // block.
  absl::Status Fail(absl::string_view what);
  absl::Status ConnectionLost(absl::string_view what, absl::string_view detail);
  std::string Scrub(std::string message) const;

  // Declaration order is destruction order in reverse: transactions first,
  // then the error handler, then the connection.
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<pqxx::quiet_errorhandler> quiet_;
  std::unique_ptr<pqxx::work> txn_;
  std::unique_ptr<pqxx::nontransaction> autocommit_;
  // Our own duplicate of libpq's socket descriptor, watched by the watchdog
  // and closed only after the connection is gone (see socket_watchdog.h).
  const int watch_fd_;
  Watchdog& watchdog_;
  // The current call's watch, or 0 outside a call.
  uint64_t ticket_ = 0;
  const std::string secret_;
  bool broken_ = false;
  ErrorKind last_error_ = ErrorKind::kNone;
};

// Removes every occurrence of `secret` from `message`.
std::string ScrubSecret(std::string message, absl::string_view secret);

}  // namespace sessiond::storage::postgres_internal

#endif  // SESSIOND_STORAGE_POSTGRES_CONN_H_
