// Internal to the PostgreSQL backend (postgres_store.cc and its tests;
// nothing else may include it): one libpqxx connection whose every wait on
// the server is bounded (libpq's connect_timeout while connecting, the
// Watchdog afterwards), its prepared statements and transactions, and the
// mapping of libpqxx exceptions and SQLSTATEs to the SessionStore error
// space.
#ifndef SESSIOND_STORAGE_POSTGRES_POSTGRES_CONN_H_
#define SESSIOND_STORAGE_POSTGRES_POSTGRES_CONN_H_

#include <cstdint>
#include <memory>
#include <pqxx/connection>
#include <pqxx/errorhandler>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "crypto/secret_file.h"
#include "storage/common/host_lookup.h"
#include "storage/common/socket_watchdog.h"
#include "storage/sql/executor.h"

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

// Column values of a (text-format) result.
int64_t FieldInt(const pqxx::field& f);
std::string FieldText(const pqxx::field& f);
std::string FieldBytea(const pqxx::field& f);

// Connection settings.
struct ConnectOptions {
  // libpq keywords and values, in order; a later entry overrides an earlier
  // one. Connection::Open adds the password and connect_timeout.
  std::vector<std::pair<std::string, std::string>> params;
  // Server-side statement timeout, set on every new connection.
  absl::Duration statement_timeout;
  // The password, if any: sent when connecting, removed from every error
  // message.
  crypto::Secret secret;
};

// The keyword/value pairs a libpq connection string or URI sets, in order.
// libpqxx takes a single connection string as is; the store must add its own
// settings on top of the operator's DSN, whichever of the two syntaxes it
// uses. On failure, libpq's message (which may quote part of the DSN).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseDsn(
    const std::string& dsn);

// Adds hostaddr to `params` (libpq keywords, as ParseDsn gives them) for
// each host they name by name, looked up with `lookup` by `deadline`, so
// that libpq looks up no name itself (it would do so without a deadline).
// A name with several addresses becomes that many entries of the host
// list, each with its address (and its port, if ports are listed per
// host); the names stay, for TLS and the password file. Socket paths, and
// params that set hostaddr already, are left as they are. UNAVAILABLE if a
// lookup fails or is not done in time.
absl::Status PinHostAddresses(
    std::vector<std::pair<std::string, std::string>>& params,
    internal::HostLookup& lookup, absl::Time deadline);

// A libpq connection string ("k='v' ...") for the pairs; a later pair
// overrides an earlier one with the same keyword.
std::string ConnectionString(
    const std::vector<std::pair<std::string, std::string>>& params);

// One libpqxx connection, on which the catalogue's statements
// (storage/sql/statements.h) are prepared. Used by one thread at a time.
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
class Connection final : public sql::SqlExecutor {
 public:
  // Connects (bounded by libpq's connect_timeout, derived from `deadline`:
  // whole seconds, at least 2, per address tried), then sets
  // statement_timeout and checks the server encoding in one round trip
  // (bounded by `deadline` through `watchdog`). UNAVAILABLE on failure (with
  // libpq's message), FAILED_PRECONDITION if the database's encoding is not
  // UTF8. `options` and `watchdog` must outlive the connection.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectOptions& options, absl::Time deadline, Watchdog& watchdog);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts a call: until EndCall(), the socket is shut down at `deadline`.
  void StartCall(absl::Time deadline);
  // Ends the call: rolls back a transaction left open (still within the
  // deadline), then stops watching the socket. If the watchdog fired, the
  // connection is marked broken.
  void EndCall();

  sql::SqlDialect dialect() const override {
    return sql::SqlDialect::kPostgres;
  }
  // Runs the prepared statement in the open transaction or in autocommit
  // mode. Every parameter is sent in binary format (a bigint as 8 bytes,
  // big-endian; text and bytea as their bytes), so their values never
  // pass through a text form. Rows arrive in text format.
  absl::StatusOr<int64_t> Execute(
      sql::SqlStatement statement, absl::Span<const sql::SqlParam> params,
      absl::FunctionRef<void(const sql::SqlRow&)> on_row) override;
  // Runs fixed SQL (may be several statements: the result is the last one's)
  // in the open transaction or in autocommit mode.
  absl::StatusOr<pqxx::result> ExecuteScript(const std::string& sql,
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

  // True once the connection is unusable; it must then be dropped.
  bool broken() const { return broken_; }
  // For ConnectionPool, after a call: connected, not broken, no transaction
  // open.
  bool Reusable() const;
  // For ConnectionPool, before a call on an idle connection: false if the
  // server has said or closed anything since the connection was last used (a
  // connection idle in the pool is sent nothing while healthy).
  bool StillAlive() const;

  ErrorKind last_error() const { return last_error_; }
  void ClearLastError() { last_error_ = ErrorKind::kNone; }

 private:
  Connection(std::unique_ptr<pqxx::asyncconnection> conn, int watch_fd,
             Watchdog& watchdog, absl::string_view secret);

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
  std::unique_ptr<pqxx::asyncconnection> conn_;
  std::unique_ptr<pqxx::quiet_errorhandler> quiet_;
  std::unique_ptr<pqxx::work> txn_;
  std::unique_ptr<pqxx::nontransaction> autocommit_;
  // Our own duplicate of libpq's socket descriptor, watched by the watchdog
  // and closed only after the connection is gone (see socket_watchdog.h).
  const int watch_fd_;
  Watchdog& watchdog_;
  // The current call's watch, or 0 outside a call.
  uint64_t ticket_ = 0;
  // ConnectOptions::secret, which outlives the connection.
  const absl::string_view secret_;
  bool broken_ = false;
  ErrorKind last_error_ = ErrorKind::kNone;
};

// Removes every occurrence of `secret` from `message`.
std::string ScrubSecret(std::string message, absl::string_view secret);

}  // namespace sessiond::storage::postgres_internal

#endif  // SESSIOND_STORAGE_POSTGRES_POSTGRES_CONN_H_
