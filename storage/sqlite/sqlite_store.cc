#include "storage/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/backend.h"
#include "storage/call_deadline.h"
#include "storage/common/connection_pool.h"
#include "storage/sql/executor.h"
#include "storage/sql/migrations.h"
#include "storage/sql/sql_backend.h"
#include "storage/sql/statements.h"
#include "storage/sql/transaction.h"

namespace sessiond::storage {
namespace {

using sql::SqlParam;
using sql::SqlRow;
using sql::SqlStatement;
using sql::SqlTransaction;

static_assert(kSqliteSchemaVersion == sql::kSchemaVersion,
              "kSqliteSchemaVersion must be the last migration's version");

// How long a connection waits for another process's lock before the call
// fails with UNAVAILABLE, when the call's deadline (call_deadline.h) is not
// earlier. Threads of this process never get here for the write lock: they
// wait for SqliteBackend's writer first.
constexpr absl::Duration kBusyTimeout = absl::Seconds(5);

// Upper bound on reader connections; the pool grows on demand up to it.
int MaxReaders() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 2, 8);
}

// This backend's own statements, cached on each connection after the
// catalogue's (storage/sql/statements.h).
enum Control : int {
  // Takes the write lock up front (waiting up to the busy timeout), so a
  // transaction never fails half-way on lock upgrade.
  kBegin = sql::kNumStatements,
  kCommit,
  kRollback,
  kUserVersion,
  kNumCached,
};

constexpr const char* kControlText[] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK",
                                        "PRAGMA user_version"};
static_assert(std::size(kControlText) == kNumCached - kBegin);

// Maps a SQLite result code to the SessionStore error space. The message
// carries SQLite's text (which names tables and columns, never bound
// values).
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message =
      absl::StrCat("sqlite: ", what, ": ", detail, " (code ", rc, ")");
  // The id primary key and token_hash UNIQUE: a key that is taken. Other
  // constraints (NOT NULL, STRICT types) are the store's own mistake.
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return absl::AlreadyExistsError(message);
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    // The disk (or the file size limit) is full: the statement, and its
    // transaction, wrote nothing; reads go on.
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

class SqliteRow final : public SqlRow {
 public:
  explicit SqliteRow(sqlite3_stmt* stmt) : stmt_(stmt) {}

  int64_t Int(int column) const override {
    return sqlite3_column_int64(stmt_, column);
  }
  std::string Text(int column) const override { return Bytes(column); }
  std::string Bytes(int column) const override {
    // Pointer first, then size, as SQLite documents.
    const void* p = sqlite3_column_blob(stmt_, column);
    const int n = sqlite3_column_bytes(stmt_, column);
    if (p == nullptr || n <= 0) return std::string();
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  sqlite3_stmt* const stmt_;
};

// One SQLite connection with its statement cache. Used by one thread at a
// time (opened with SQLITE_OPEN_NOMUTEX; the backend hands it out
// exclusively).
class Connection final : public sql::SqlExecutor {
 public:
  enum class Role { kWriter, kReader };

  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, Role role) {
    sqlite3* db = nullptr;
    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status status = SqliteError(
          db, rc, absl::StrCat("cannot open database \"", path, "\""));
      sqlite3_close_v2(db);  // A handle is returned even on failure.
      return status;
    }
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    if (absl::Status s = conn->Configure(role); !s.ok()) return s;
    return conn;
  }

  ~Connection() override {
    for (sqlite3_stmt* stmt : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sql::SqlDialect dialect() const override { return sql::SqlDialect::kSqlite; }

  absl::StatusOr<int64_t> Execute(
      SqlStatement statement, absl::Span<const SqlParam> params,
      absl::FunctionRef<void(const SqlRow&)> on_row) override {
    return ExecuteCached(
        static_cast<int>(statement),
        sql::StatementText(statement, sql::SqlDialect::kSqlite),
        sql::StatementName(statement), params, on_row);
  }

  // Runs one of the backend's own statements that returns no value.
  absl::Status ExecuteControl(Control control, absl::string_view what) {
    return ExecuteCached(control, kControlText[control - kBegin], what, {},
                         [](const SqlRow&) {})
        .status();
  }

  // Runs fixed SQL (schema and pragmas only; never values).
  absl::Status ExecuteScript(const std::string& sql, absl::string_view what) {
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, what);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> UserVersion() {
    std::optional<int64_t> version;
    absl::StatusOr<int64_t> done =
        ExecuteCached(kUserVersion, kControlText[kUserVersion - kBegin],
                      "read schema version", {},
                      [&](const SqlRow& row) { version = row.Int(0); });
    if (!done.ok()) return done.status();
    if (!version.has_value()) {
      return absl::InternalError("sqlite: no user_version row");
    }
    return *version;
  }

  // For ConnectionPool: a reader is always fit to go back to the pool, and
  // to be lent again.
  bool Reusable() const { return true; }
  bool StillAlive() const { return true; }

  // Ends any open transaction without keeping its changes. Some errors make
  // SQLite roll back by itself; then there is nothing left to do.
  void RollbackIfOpen() {
    if (sqlite3_get_autocommit(db_) != 0) return;
    if (!ExecuteControl(kRollback, "rollback").ok()) {
      // Last resort: the uncached form, in case the cached one is unusable.
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) { stmts_.fill(nullptr); }

  // sqlite3_busy_handler: while another process holds the lock, sleeps with
  // backoff and retries, until kBusyTimeout after the first refusal or the
  // call's deadline, whichever is earlier; then SQLITE_BUSY.
  static int WaitWhileBusy(void* self, int attempts) {
    Connection& c = *static_cast<Connection*>(self);
    const absl::Time now = absl::Now();
    if (attempts == 0) c.busy_since_ = now;
    const absl::Time give_up =
        std::min(CallDeadline(), c.busy_since_ + kBusyTimeout);
    if (now >= give_up) return 0;
    const absl::Duration backoff =
        std::min(absl::Milliseconds(1) * (int64_t{1} << std::min(attempts, 6)),
                 absl::Milliseconds(50));
    absl::SleepFor(std::min(backoff, give_up - now));
    return 1;
  }

  // Runs the statement cached in `slot` (prepared from `sql` on first use)
  // with `params`; rows go to `on_row`. Leaves the statement reset, so it
  // never keeps a read transaction open.
  absl::StatusOr<int64_t> ExecuteCached(
      int slot, const char* sql, absl::string_view what,
      absl::Span<const SqlParam> params,
      absl::FunctionRef<void(const SqlRow&)> on_row) {
    sqlite3_stmt*& stmt = stmts_[slot];
    if (stmt == nullptr) {
      const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                        &stmt, nullptr);
      if (rc != SQLITE_OK) {
        absl::Status s = SqliteError(db_, rc, "prepare");
        sqlite3_finalize(stmt);
        stmt = nullptr;
        return s;
      }
    }
    struct Reset {
      sqlite3_stmt* stmt;
      ~Reset() {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const SqlParam& p = params[i];
      // A null pointer would bind SQL NULL; "" binds an empty value.
      const char* bytes = p.bytes.data() != nullptr ? p.bytes.data() : "";
      const int rc =
          p.type == sql::SqlType::kInt
              ? sqlite3_bind_int64(stmt, index, p.number)
          : p.type == sql::SqlType::kText
              ? sqlite3_bind_text64(stmt, index, bytes, p.bytes.size(),
                                    SQLITE_TRANSIENT, SQLITE_UTF8)
              : sqlite3_bind_blob64(stmt, index, bytes, p.bytes.size(),
                                    SQLITE_TRANSIENT);
      if (rc != SQLITE_OK) return SqliteError(db_, rc, what);
    }
    while (true) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqliteError(db_, rc, what);
      on_row(SqliteRow(stmt));
    }
    if (sqlite3_stmt_readonly(stmt) != 0) return 0;
    return static_cast<int64_t>(sqlite3_changes64(db_));
  }

  absl::Status Configure(Role role) {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_handler(db_, &Connection::WaitWhileBusy, this);
    if (role == Role::kWriter) {
      // WAL is a property of the file and persists; the writer sets it
      // before any reader is opened.
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &stmt,
                                  nullptr);
      std::string mode;
      if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
          const unsigned char* text = sqlite3_column_text(stmt, 0);
          if (text != nullptr) mode = reinterpret_cast<const char*>(text);
          rc = SQLITE_OK;
        }
      }
      absl::Status status = rc == SQLITE_OK || rc == SQLITE_DONE
                                ? absl::OkStatus()
                                : SqliteError(db_, rc, "set journal_mode=WAL");
      sqlite3_finalize(stmt);
      if (!status.ok()) return status;
      if (mode != "wal") {
        return absl::FailedPreconditionError(absl::StrCat(
            "sqlite: could not switch the database to WAL mode (got \"", mode,
            "\"); is it on a file system without shared memory support?"));
      }
    }
    // Durable across a process crash; on power loss the last commits may be
    // rolled back (never corrupted). See README.md for why.
    if (absl::Status s =
            ExecuteScript("PRAGMA synchronous=NORMAL", "set synchronous");
        !s.ok()) {
      return s;
    }
    if (role == Role::kReader) {
      // Readers never write; make any attempt fail loudly.
      if (absl::Status s =
              ExecuteScript("PRAGMA query_only=ON", "set query_only");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  sqlite3* const db_;
  std::array<sqlite3_stmt*, kNumCached> stmts_;
  // When the lock being waited for was first refused (WaitWhileBusy).
  absl::Time busy_since_;
};

// The schema in `PRAGMA user_version`, migrated on the writer connection.
class SqliteSchema final : public sql::SchemaTarget {
 public:
  explicit SqliteSchema(Connection& conn) : conn_(conn) {}

  absl::StatusOr<int64_t> ReadVersion() override { return conn_.UserVersion(); }

  absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) override {
    if (absl::Status s = conn_.ExecuteControl(kBegin, "begin migration");
        !s.ok()) {
      return s;
    }
    absl::StatusOr<int64_t> version = conn_.UserVersion();
    absl::Status status = version.ok() ? migrate(*version) : version.status();
    if (status.ok()) status = conn_.ExecuteControl(kCommit, "commit migration");
    if (!status.ok()) conn_.RollbackIfOpen();
    return status;
  }

  absl::Status Apply(const sql::Migration& m) override {
    if (absl::Status s = conn_.ExecuteScript(
            m.sqlite, absl::StrCat("migrate to version ", m.version));
        !s.ok()) {
      return s;
    }
    // PRAGMA takes no parameters; the value is our own constant.
    return conn_.ExecuteScript(
        absl::StrCat("PRAGMA user_version = ", m.version),
        "record schema version");
  }

 private:
  Connection& conn_;
};

class SqliteBackend final : public sql::SqlBackend {
 public:
  SqliteBackend(std::string path, const Clock* clock, int prune_batch_size,
                std::unique_ptr<Connection> writer)
      : SqlBackend(clock, prune_batch_size),
        path_(std::move(path)),
        writer_("sqlite writer", 1, absl::InfiniteDuration(),
                [this](absl::Time) {
                  return Connection::Open(path_, Connection::Role::kWriter);
                }),
        readers_("sqlite", MaxReaders(), absl::InfiniteDuration(),
                 [this](absl::Time) {
                   return Connection::Open(path_, Connection::Role::kReader);
                 }) {
    writer_.AddIdle(std::move(writer));
  }

  absl::string_view name() const override { return "sqlite"; }
  // The writer and the readers together.
  PoolStats pool_stats() const override {
    const PoolStats writer = writer_.Stats();
    const PoolStats readers = readers_.Stats();
    return PoolStats{writer.open + readers.open,
                     writer.max_open + readers.max_open,
                     writer.in_use + readers.in_use};
  }

 protected:
  absl::Status RunCall(
      absl::string_view, CallKind,
      absl::FunctionRef<absl::Status(sql::SqlSession&)> body) override {
    Session session(*this);
    return body(session);
  }

 private:
  // Reads on a reader connection, writes on the writer.
  class Session final : public sql::SqlSession {
   public:
    explicit Session(SqliteBackend& backend) : backend_(backend) {}

    absl::Status Read(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      return backend_.OnReader(body);
    }
    absl::Status Transact(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      return backend_.InWriteTransaction(body);
    }
    absl::Status WriteAlone(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      return backend_.InWriteTransaction(body);
    }

   private:
    SqliteBackend& backend_;
  };

  // Runs `body` on a reader connection, waiting for one if all are busy.
  absl::Status OnReader(absl::FunctionRef<absl::Status(SqlTransaction&)> body) {
    absl::StatusOr<ConnectionPool<Connection>::Lease> reader =
        readers_.Acquire(CallDeadline(), CallDeadline());
    if (!reader.ok()) return reader.status();
    SqlTransaction tx(**reader);
    return body(tx);
  }

  // Runs `body` in one BEGIN IMMEDIATE transaction on the writer connection
  // and commits if it succeeds; rolls back (nothing written) if it fails.
  // `body` reads the time only then, once the transaction holds the write
  // lock (README.md).
  absl::Status InWriteTransaction(
      absl::FunctionRef<absl::Status(SqlTransaction&)> body) {
    absl::StatusOr<ConnectionPool<Connection>::Lease> writer =
        writer_.Acquire(CallDeadline(), CallDeadline());
    if (!writer.ok()) return writer.status();
    Connection& c = **writer;
    absl::Status status = c.ExecuteControl(kBegin, "begin");
    if (status.ok()) {
      SqlTransaction tx(c);
      status = body(tx);
    }
    if (status.ok()) status = c.ExecuteControl(kCommit, "commit");
    if (!status.ok()) c.RollbackIfOpen();
    return status;
  }

  const std::string path_;
  // The one writer connection, lent to one write at a time.
  ConnectionPool<Connection> writer_;
  ConnectionPool<Connection> readers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> OpenSqliteStore(
    const SqliteOptions& options, const Clock* clock,
    const StoreOptions& store_options) {
  return SessionStore::Open(
      clock, store_options,
      [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
        const std::string& path = options.path;
        if (path.empty() || path == ":memory:" ||
            absl::string_view(path).substr(0, 5) == "file:") {
          return absl::InvalidArgumentError(
              "sqlite: path must name a database file (\":memory:\", \"\" and "
              "URIs are not supported: the store opens several connections)");
        }
        if (options.prune_batch_size < 1) {
          return absl::InvalidArgumentError(
              "sqlite: prune_batch_size must be positive");
        }
        absl::StatusOr<std::unique_ptr<Connection>> writer =
            Connection::Open(path, Connection::Role::kWriter);
        if (!writer.ok()) return writer.status();
        SqliteSchema schema(**writer);
        if (absl::Status s = sql::MigrateSchema(
                schema, sql::Migrations(),
                absl::StrCat("sqlite: database \"", path, "\""));
            !s.ok()) {
          return s;
        }
        return std::make_unique<SqliteBackend>(
            path, clock, options.prune_batch_size, *std::move(writer));
      });
}

}  // namespace sessiond::storage
