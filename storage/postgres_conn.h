// Private to the PostgreSQL backend (storage/postgres_store.cc): one libpq
// connection whose every wait is bounded by a deadline, binary-format
// parameters and results, and the mapping of libpq/SQLSTATE errors to the
// SessionStore error space.
#ifndef SESSIOND_STORAGE_POSTGRES_CONN_H_
#define SESSIOND_STORAGE_POSTGRES_CONN_H_

#include <postgresql/libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::storage::postgres_internal {

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

// A statement the store prepares on each connection.
struct Statement {
  // Index in the store's statement table, < 64; also names the prepared
  // statement ("sessiond_<index>").
  int index;
  const char* sql;
  // One letter per parameter: 'i' bigint, 'b' bytea, 't' text.
  const char* param_types;
};

// Parameters in binary format.
class Params {
 public:
  Params& Int(int64_t v);
  Params& Bytes(absl::string_view v);  // bytea, or text (raw UTF-8)

  int size() const { return static_cast<int>(values_.size()); }
  // Pointers into this object; valid while it lives and is not modified.
  std::vector<const char*> Values() const;
  const std::vector<int>& Lengths() const { return lengths_; }
  const std::vector<int>& Formats() const { return formats_; }

 private:
  std::vector<std::string> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// A successful result. Binary columns for prepared statements, text for
// ExecSimple.
class Result {
 public:
  explicit Result(PGresult* res) : res_(res) {}
  Result(Result&& other) noexcept : res_(std::exchange(other.res_, nullptr)) {}
  Result& operator=(Result&& other) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  // Rows an INSERT, UPDATE or DELETE changed.
  int64_t affected() const;
  bool IsNull(int row, int col) const;
  // A binary bigint column.
  int64_t Int(int row, int col) const;
  // The raw bytes of a column (binary bytea/text, or any text-format value).
  std::string Bytes(int row, int col) const;

 private:
  PGresult* res_;
};

// Connection settings.
struct ConnectOptions {
  // libpq keywords and values, in order; a later entry overrides an earlier
  // one (the "dbname" entry is expanded as a connection string or URI).
  std::vector<std::pair<std::string, std::string>> params;
  // Server-side statement timeout, set on every new connection.
  absl::Duration statement_timeout;
  // Removed from every error message (the password), if not empty.
  std::string secret;
};

// One libpq connection in non-blocking mode. Used by one thread at a time.
class Connection {
 public:
  // Connects, waiting at most until `deadline`, and sets statement_timeout.
  // UNAVAILABLE on failure (with libpq's message), FAILED_PRECONDITION if the
  // database's encoding is not UTF8.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectOptions& options, absl::Time deadline);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs a prepared statement (preparing it on first use); binary results.
  absl::StatusOr<Result> Exec(const Statement& stmt, const Params& params,
                              absl::Time deadline, absl::string_view what);
  // Runs fixed SQL (may be several statements) with the simple protocol;
  // text results of the last statement.
  absl::StatusOr<Result> ExecSimple(absl::string_view sql, absl::Time deadline,
                                    absl::string_view what);

  // True once the connection is unusable; it must then be dropped.
  bool broken() const { return broken_; }
  // Idle: connected and not inside a transaction.
  bool Idle() const;
  bool InTransaction() const;
  // For a connection coming out of the pool: false if the server has said
  // or closed anything since the connection was last used (a connection
  // idle in the pool is sent nothing while healthy).
  bool LooksHealthy();

  ErrorKind last_error() const { return last_error_; }
  void ClearLastError() { last_error_ = ErrorKind::kNone; }

 private:
  Connection(PGconn* conn, std::string secret)
      : conn_(conn), secret_(std::move(secret)) {}

  // Sends what libpq buffered, then collects every result of the command in
  // flight; returns the first error or the last result.
  absl::StatusOr<Result> Finish(absl::Time deadline, absl::string_view what);
  // Waits until the socket is ready for `events` (POLLIN/POLLOUT).
  // UNAVAILABLE (and broken) at the deadline.
  absl::Status Wait(int events, absl::Time deadline, absl::string_view what);
  // The status for a failed result (or null: a connection-level failure).
  absl::Status Fail(const PGresult* res, absl::string_view what);
  absl::Status ConnectionLost(absl::string_view what);
  std::string Scrub(std::string message) const;

  PGconn* const conn_;
  const std::string secret_;
  bool broken_ = false;
  ErrorKind last_error_ = ErrorKind::kNone;
  // Bit i: statement i is prepared on this connection.
  uint64_t prepared_ = 0;
};

// Removes every occurrence of `secret` from `message`.
std::string ScrubSecret(std::string message, absl::string_view secret);

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) and
// no NUL byte: what a PostgreSQL text value can hold.
bool IsStorableText(absl::string_view s);

}  // namespace sessiond::storage::postgres_internal

#endif  // SESSIOND_STORAGE_POSTGRES_CONN_H_
