#include "storage/postgres/postgres_store.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <pqxx/result>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crypto/secret_file.h"
#include "storage/backend.h"
#include "storage/call_deadline.h"
#include "storage/common/connection_pool.h"
#include "storage/common/password_file.h"
#include "storage/common/socket_watchdog.h"
#include "storage/postgres/postgres_conn.h"
#include "storage/sql/migrations.h"
#include "storage/sql/sql_backend.h"
#include "storage/sql/transaction.h"

namespace sessiond::storage {
namespace {

using internal::Watchdog;
using postgres_internal::Connection;
using postgres_internal::ConnectOptions;
using postgres_internal::ErrorKind;
using postgres_internal::FieldText;
using Pool = ConnectionPool<Connection>;

static_assert(kPostgresSchemaVersion == sql::kSchemaVersion,
              "kPostgresSchemaVersion must be the last migration's version");

// A deadlocked or serialization-failed call is retried this many more times.
constexpr int kMaxConflictRetries = 4;

// Migrations may rewrite large tables: the migrating transaction gets this
// statement timeout instead of the store's.
constexpr absl::Duration kMigrationTimeout = absl::Minutes(5);

// TCP keepalive on pooled connections (seconds): a peer that vanished is
// noticed within about idle + interval * count.
constexpr int kKeepalivesIdle = 5;
constexpr int kKeepalivesInterval = 2;
constexpr int kKeepalivesCount = 3;

// The password file is a secret file of at most this many bytes.

// Jittered exponential backoff before retrying a conflicted transaction.
absl::Duration ConflictBackoff(int attempt) {
  thread_local std::minstd_rand rng(static_cast<uint32_t>(
      std::hash<std::thread::id>()(std::this_thread::get_id()) ^
      static_cast<size_t>(absl::ToUnixNanos(absl::Now()))));
  const int64_t base_ms = int64_t{5} << std::min(attempt, 5);
  std::uniform_int_distribution<int64_t> jitter(0, base_ms);
  return absl::Milliseconds(base_ms + jitter(rng));
}

absl::StatusOr<int64_t> ParseVersion(const pqxx::result& res) {
  int64_t v = 0;
  if (res.size() != 1 || res.columns() != 1 ||
      !absl::SimpleAtoi(FieldText(res[0][0]), &v)) {
    return absl::InternalError("postgres: cannot read the schema version");
  }
  return v;
}

// The migration lock: an advisory lock in the one-bigint key space (the
// per-user locks use the two-int one). The key of schema version 1, whose
// binaries take it with pg_advisory_xact_lock: the two kinds exclude each
// other.
constexpr char kMigrationLockKey[] = "x'73657373696f6e64'::bigint";

// How long a transactional migration waits for its table lock before it
// gives up and tries again (lock_timeout): a waiting ALTER TABLE queues
// every later statement on the table behind it, so it must not wait long
// for a transaction that holds the table.
constexpr absl::Duration kMigrationLockTimeout = absl::Seconds(2);

// How often a migrator that finds the migration lock taken tries again.
constexpr absl::Duration kMigrationLockPoll = absl::Milliseconds(50);

// The schema, recorded in sessiond_schema_migrations and migrated under the
// migration lock (storage/sql/README.md). The lock is held by the session,
// not a transaction, so that steps that cannot run in a transaction (CREATE
// INDEX CONCURRENTLY) run under it too; each migration commits on its own.
// A migrator waiting for the lock polls for it (pg_try_advisory_lock) rather
// than waiting in a statement: a statement waiting holds a snapshot, which a
// concurrent index build waits for in turn, and the two would deadlock.
class PostgresSchema final : public sql::SchemaTarget {
 public:
  // `quick_budget` bounds each step but the migration itself.
  PostgresSchema(Connection& c, absl::Duration quick_budget)
      : c_(c), quick_budget_(quick_budget) {}

  // Whether WithMigrationLock ran: the connection then carries the
  // migration's session settings and is not for the pool.
  bool locked() const { return locked_; }

  absl::StatusOr<int64_t> ReadVersion() override {
    c_.StartCall(absl::Now() + quick_budget_);
    absl::StatusOr<int64_t> version = ReadVersionInCall();
    c_.EndCall();
    return version;
  }

  absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) override {
    locked_ = true;
    const absl::Time deadline = absl::Now() + kMigrationTimeout;
    c_.StartCall(deadline + quick_budget_);
    absl::Status status = MigrateInCall(migrate, deadline);
    c_.EndCall();  // Rolls back what failed.
    return status;
  }

  absl::Status Apply(const sql::Migration& m) override {
    if (m.postgres == nullptr) return ApplyOnline(m);
    return ApplyTransactional(m);
  }

 private:
  absl::StatusOr<int64_t> ReadVersionInCall() {
    absl::StatusOr<pqxx::result> exists = c_.ExecuteScript(
        "SELECT to_regclass('sessiond_schema_migrations') IS NOT NULL",
        "read schema version");
    if (!exists.ok()) return exists.status();
    if (exists->size() != 1 || FieldText((*exists)[0][0]) != "t") return 0;
    absl::StatusOr<pqxx::result> max = c_.ExecuteScript(
        "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations",
        "read schema version");
    if (!max.ok()) return max.status();
    return ParseVersion(*max);
  }

  absl::Status MigrateInCall(
      absl::FunctionRef<absl::Status(int64_t version)> migrate,
      absl::Time deadline) {
    constexpr absl::string_view kWhat = "lock schema for migration";
    // For the rest of the session (the connection is dropped afterwards).
    if (auto r = c_.ExecuteScript(
            absl::StrCat("SET statement_timeout = ",
                         absl::ToInt64Milliseconds(kMigrationTimeout)),
            kWhat);
        !r.ok()) {
      return r.status();
    }
    while (true) {
      absl::StatusOr<pqxx::result> got = c_.ExecuteScript(
          absl::StrCat("SELECT pg_try_advisory_lock(", kMigrationLockKey, ")"),
          kWhat);
      if (!got.ok()) return got.status();
      if (got->size() == 1 && FieldText((*got)[0][0]) == "t") break;
      if (absl::Now() + kMigrationLockPoll >= deadline) {
        return absl::UnavailableError(
            absl::StrCat("postgres: ", kWhat,
                         ": another sessiond has been migrating the "
                         "schema for longer than ",
                         absl::FormatDuration(kMigrationTimeout)));
      }
      absl::SleepFor(kMigrationLockPoll);
    }
    absl::Status status = MigrateLocked(migrate);
    // Released with the session anyway; at once is kinder to the others.
    (void)c_.ExecuteScript(
        absl::StrCat("SELECT pg_advisory_unlock(", kMigrationLockKey, ")"),
        "unlock schema");
    return status;
  }

  absl::Status MigrateLocked(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) {
    absl::StatusOr<pqxx::result> version_row = c_.ExecuteScript(
        "CREATE TABLE IF NOT EXISTS sessiond_schema_migrations ("
        " version integer PRIMARY KEY,"
        " description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now()); "
        "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations",
        "lock schema for migration");
    if (!version_row.ok()) return version_row.status();
    absl::StatusOr<int64_t> version = ParseVersion(*version_row);
    if (!version.ok()) return version.status();
    return migrate(*version);
  }

  // Our own constants: no values from outside.
  static std::string RecordVersion(const sql::Migration& m) {
    return absl::StrCat(
        "INSERT INTO sessiond_schema_migrations (version, description) "
        "VALUES (",
        m.version, ", '", m.description, "')");
  }

  // The DDL and the version record in one transaction. A lock wait longer
  // than kMigrationLockTimeout (a transaction holding the table) rolls it
  // back, and it is tried again after a pause, while the budget lasts.
  absl::Status ApplyTransactional(const sql::Migration& m) {
    const std::string what = absl::StrCat("migrate to version ", m.version);
    for (int attempt = 0;; ++attempt) {
      absl::Status status = TransactOnce(m, what);
      if (status.ok()) return status;
      c_.Rollback();
      const bool lock_timeout =
          absl::IsUnavailable(status) && !c_.broken() &&
          absl::StrContains(status.message(), "SQLSTATE 55P03");
      if (!lock_timeout || attempt >= 20) return status;
      absl::SleepFor(
          std::min(absl::Milliseconds(100) * (attempt + 1), absl::Seconds(1)));
    }
  }

  absl::Status TransactOnce(const sql::Migration& m, const std::string& what) {
    if (absl::Status s = c_.Begin(what); !s.ok()) return s;
    if (auto r = c_.ExecuteScript(
            absl::StrCat("SET LOCAL lock_timeout = ",
                         absl::ToInt64Milliseconds(kMigrationLockTimeout)),
            what);
        !r.ok()) {
      return r.status();
    }
    if (auto r = c_.ExecuteScript(m.postgres, what); !r.ok()) {
      return r.status();
    }
    if (auto r = c_.ExecuteScript(RecordVersion(m), what); !r.ok()) {
      return r.status();
    }
    return c_.Commit(what);
  }

  // Each index step on its own, outside any transaction, then the version.
  // Every step may run again: a valid index is kept, an INVALID one (a
  // build that was interrupted) dropped and built again.
  absl::Status ApplyOnline(const sql::Migration& m) {
    const std::string what = absl::StrCat("migrate to version ", m.version);
    for (const sql::OnlineIndex& index : m.postgres_online) {
      const std::string drop =
          absl::StrCat("DROP INDEX CONCURRENTLY IF EXISTS ", index.name);
      if (index.definition == nullptr) {
        if (auto r = c_.ExecuteScript(drop, what); !r.ok()) return r.status();
        continue;
      }
      absl::StatusOr<pqxx::result> valid = c_.ExecuteScript(
          absl::StrCat("SELECT indisvalid FROM pg_index WHERE indexrelid ="
                       " to_regclass('",
                       index.name, "')"),
          what);
      if (!valid.ok()) return valid.status();
      if (valid->size() == 1) {
        if (FieldText((*valid)[0][0]) == "t") continue;
        if (auto r = c_.ExecuteScript(drop, what); !r.ok()) return r.status();
      }
      if (auto r =
              c_.ExecuteScript(absl::StrCat("CREATE INDEX CONCURRENTLY ",
                                            index.name, " ", index.definition),
                               what);
          !r.ok()) {
        return r.status();
      }
    }
    return c_.ExecuteScript(RecordVersion(m), what).status();
  }

  Connection& c_;
  const absl::Duration quick_budget_;
  bool locked_ = false;
};

class PostgresBackend final : public sql::SqlBackend {
 public:
  PostgresBackend(ConnectOptions connect, const PostgresOptions& options,
                  const Clock* clock)
      : SqlBackend(clock, options.prune_batch_size,
                   options.follow_database_clock ? TimeSource::kDatabase
                                                 : TimeSource::kLocal),
        connect_(std::move(connect)),
        connect_timeout_(options.connect_timeout),
        call_budget_(options.connect_timeout + options.statement_timeout +
                     absl::Seconds(1)),
        watchdog_(std::make_unique<Watchdog>()),
        pool_("postgres", options.pool_size, options.connect_timeout,
              [this](absl::Time deadline) {
                // A database no longer UTF8 fails the call
                // (FAILED_PRECONDITION, which the front reports as INTERNAL:
                // only an open says it).
                return Connection::Open(connect_, deadline, *watchdog_);
              }) {}

  absl::string_view name() const override { return "postgres"; }
  PoolStats pool_stats() const override { return pool_.Stats(); }

  // Opens the first connection, migrates the schema on it and pools it
  // (unless it migrated: the pool opens fresh ones, without the migration's
  // session settings).
  absl::Status Start(absl::Duration quick_budget) {
    absl::StatusOr<std::unique_ptr<Connection>> first =
        Connection::Open(connect_, absl::Now() + connect_timeout_, *watchdog_);
    if (!first.ok()) return first.status();
    PostgresSchema schema(**first, quick_budget);
    if (absl::Status s = sql::MigrateSchema(schema, sql::Migrations(),
                                            "postgres: the database");
        !s.ok()) {
      return s;
    }
    if (!schema.locked()) pool_.AddIdle(*std::move(first));
    return MeasureDatabaseClock();
  }

 protected:
  // One call on a pooled connection, on which every wait is bounded by the
  // call's deadline (call_budget_, and at most CallDeadline()). A call that
  // meets a dead pooled connection starts again once on a new one, if its kind
  // allows; deadlocks and serialization failures are retried up to
  // kMaxConflictRetries times.
  absl::Status RunCall(
      absl::string_view what, CallKind kind,
      absl::FunctionRef<absl::Status(sql::SqlSession&)> body) override {
    const absl::Time deadline =
        std::min(CallDeadline(), absl::Now() + call_budget_);
    int conflicts = 0;
    bool reconnected = false;
    while (true) {
      absl::Status result;
      ErrorKind error = ErrorKind::kNone;
      bool reused = false;
      bool may_have_written = false;
      {
        absl::StatusOr<Pool::Lease> lease = Acquire(deadline, reconnected);
        if (!lease.ok()) return lease.status();
        reused = lease->reused();
        Connection& c = **lease;
        c.StartCall(deadline);
        c.ClearLastError();
        Session session(c, what);
        result = body(session);
        may_have_written = session.may_have_written();
        error = c.last_error();
        // Rolls back what is left open; if that fails too, the connection
        // is marked broken and the pool drops it.
        c.EndCall();
      }
      if (result.ok()) return result;
      if (error == ErrorKind::kRetryable) {
        const absl::Duration pause = ConflictBackoff(conflicts);
        if (conflicts < kMaxConflictRetries && absl::Now() + pause < deadline) {
          ++conflicts;
          absl::SleepFor(pause);
          continue;
        }
        return absl::UnavailableError(absl::StrCat(
            "postgres: ", what, ": gave up after ", conflicts + 1,
            " attempts ended in a deadlock or serialization failure; "
            "nothing was written: ",
            result.message()));
      }
      if (error == ErrorKind::kConnection && reused && !reconnected &&
          (kind == CallKind::kIdempotent || !may_have_written) &&
          absl::Now() < deadline) {
        reconnected = true;
        continue;
      }
      return result;
    }
  }

 private:
  // The steps of one call, all on its connection.
  class Session final : public sql::SqlSession {
   public:
    Session(Connection& c, absl::string_view what) : c_(c), what_(what) {}

    absl::Status Read(
        absl::FunctionRef<absl::Status(sql::SqlTransaction&)> body) override {
      sql::SqlTransaction tx(c_);
      return body(tx);
    }

    absl::Status Transact(
        absl::FunctionRef<absl::Status(sql::SqlTransaction&)> body) override {
      if (absl::Status s = c_.Begin(what_); !s.ok()) return s;
      sql::SqlTransaction tx(c_);
      absl::Status status = body(tx);
      if (status.ok()) {
        may_have_written_ = true;
        status = c_.Commit(what_);
      }
      c_.Rollback();
      return status;
    }

    absl::Status WriteAlone(
        absl::FunctionRef<absl::Status(sql::SqlTransaction&)> body) override {
      may_have_written_ = true;
      sql::SqlTransaction tx(c_);
      return body(tx);
    }

    // Whether a write may have been committed: COMMIT was sent, or an
    // autocommit write ran.
    bool may_have_written() const { return may_have_written_; }

   private:
    Connection& c_;
    const absl::string_view what_;
    bool may_have_written_ = false;
  };

  // A connection for one call: a pooled one that is still alive or, with
  // `fresh` (a retry after a pooled connection died: its neighbours in the
  // pool likely died with it), a newly opened one.
  absl::StatusOr<Pool::Lease> Acquire(absl::Time call_deadline, bool fresh) {
    return pool_.Acquire(
        std::min(call_deadline, absl::Now() + connect_timeout_), call_deadline,
        fresh);
  }

  const ConnectOptions connect_;
  const absl::Duration connect_timeout_;
  const absl::Duration call_budget_;
  // Declared before the pool: outlives every connection.
  const std::unique_ptr<Watchdog> watchdog_;
  Pool pool_;
};

absl::Status CheckOptions(const PostgresOptions& options) {
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("postgres: pool_size must be positive");
  }
  if (options.connect_timeout < absl::Milliseconds(1) ||
      options.connect_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "postgres: connect_timeout must be positive and finite");
  }
  if (options.statement_timeout < absl::Milliseconds(1) ||
      options.statement_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "postgres: statement_timeout must be positive and finite");
  }
  if (options.prune_batch_size < 1) {
    return absl::InvalidArgumentError(
        "postgres: prune_batch_size must be positive");
  }
  return absl::OkStatus();
}

// The connection settings of `options`: the DSN's, with the store's own
// around them.
absl::StatusOr<ConnectOptions> MakeConnectOptions(
    const PostgresOptions& options) {
  ConnectOptions connect;
  connect.statement_timeout = options.statement_timeout;
  if (!options.password_file.empty()) {
    absl::StatusOr<crypto::Secret> password =
        ReadPasswordFile("postgres", options.password_file);
    if (!password.ok()) return password.status();
    connect.secret = *std::move(password);
  }
  // Before the DSN, so that the DSN may override it.
  connect.params.emplace_back("application_name", "sessiond");
  if (!options.dsn.empty()) {
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> dsn =
        postgres_internal::ParseDsn(options.dsn);
    if (!dsn.ok()) {
      return absl::UnavailableError(postgres_internal::ScrubSecret(
          absl::StrCat("postgres: cannot connect: ", dsn.status().message()),
          connect.secret.view()));
    }
    connect.params.insert(connect.params.end(), dsn->begin(), dsn->end());
  }
  // After the DSN: these override it (and Connection::Open adds the
  // password and connect_timeout).
  connect.params.emplace_back("client_encoding", "UTF8");
  connect.params.emplace_back("keepalives", "1");
  connect.params.emplace_back("keepalives_idle", absl::StrCat(kKeepalivesIdle));
  connect.params.emplace_back("keepalives_interval",
                              absl::StrCat(kKeepalivesInterval));
  connect.params.emplace_back("keepalives_count",
                              absl::StrCat(kKeepalivesCount));
  connect.params.emplace_back(
      "tcp_user_timeout",
      absl::StrCat(absl::ToInt64Milliseconds(options.connect_timeout +
                                             options.statement_timeout)));
  return connect;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> OpenPostgresStore(
    const PostgresOptions& options, const Clock* clock,
    const StoreOptions& store_options) {
  return SessionStore::Open(
      clock, store_options,
      [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
        if (absl::Status s = CheckOptions(options); !s.ok()) return s;
        absl::StatusOr<ConnectOptions> connect = MakeConnectOptions(options);
        if (!connect.ok()) return connect.status();
        auto backend = std::make_unique<PostgresBackend>(*std::move(connect),
                                                         options, clock);
        if (absl::Status s = backend->Start(options.connect_timeout +
                                            options.statement_timeout);
            !s.ok()) {
          return s;
        }
        return backend;
      });
}

}  // namespace sessiond::storage
