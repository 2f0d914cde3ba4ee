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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crypto/secret_file.h"
#include "storage/backend.h"
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

// The schema, recorded in sessiond_schema_migrations and migrated under an
// advisory lock (the one-bigint key space; the per-user locks use the
// two-int one) on one connection, each step its own call on it.
class PostgresSchema final : public sql::SchemaTarget {
 public:
  // `quick_budget` bounds each step but the migration itself.
  PostgresSchema(Connection& c, absl::Duration quick_budget)
      : c_(c), quick_budget_(quick_budget) {}

  absl::StatusOr<int64_t> ReadVersion() override {
    c_.StartCall(absl::Now() + quick_budget_);
    absl::StatusOr<int64_t> version = ReadVersionInCall();
    c_.EndCall();
    return version;
  }

  absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) override {
    c_.StartCall(absl::Now() + kMigrationTimeout + quick_budget_);
    absl::Status status = MigrateInCall(migrate);
    c_.EndCall();  // Rolls back what failed.
    return status;
  }

  absl::Status Apply(const sql::Migration& m) override {
    const std::string what = absl::StrCat("migrate to version ", m.version);
    if (auto r = c_.ExecuteScript(m.postgres, what); !r.ok()) {
      return r.status();
    }
    // Our own constants: no values from outside.
    return c_
        .ExecuteScript(
            absl::StrCat("INSERT INTO sessiond_schema_migrations (version, "
                         "description) VALUES (",
                         m.version, ", '", m.description, "')"),
            what)
        .status();
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
      absl::FunctionRef<absl::Status(int64_t version)> migrate) {
    if (absl::Status s = c_.Begin("lock schema for migration"); !s.ok()) {
      return s;
    }
    absl::StatusOr<pqxx::result> locked = c_.ExecuteScript(
        absl::StrCat(
            "SET LOCAL statement_timeout = ",
            absl::ToInt64Milliseconds(kMigrationTimeout),
            "; SELECT pg_advisory_xact_lock(x'73657373696f6e64'::bigint); "
            "CREATE TABLE IF NOT EXISTS sessiond_schema_migrations ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now()); "
            "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations"),
        "lock schema for migration");
    if (!locked.ok()) return locked.status();
    absl::StatusOr<int64_t> version = ParseVersion(*locked);
    if (!version.ok()) return version.status();
    if (absl::Status s = migrate(*version); !s.ok()) return s;
    return c_.Commit("commit migration");
  }

  Connection& c_;
  const absl::Duration quick_budget_;
};

class PostgresBackend final : public sql::SqlBackend {
 public:
  PostgresBackend(ConnectOptions connect, const PostgresOptions& options,
                  const Clock* clock, const StoreOptions& store_options)
      : SqlBackend(clock, store_options, options.prune_batch_size),
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

  // Opens the first connection, migrates the schema on it and pools it.
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
    pool_.AddIdle(*std::move(first));
    return absl::OkStatus();
  }

 protected:
  // One call on a pooled connection, on which every wait is bounded by the
  // call's deadline. A call that meets a dead pooled connection starts
  // again once on a new one, if its kind allows; deadlocks and
  // serialization failures are retried up to kMaxConflictRetries times.
  absl::Status RunCall(
      absl::string_view what, CallKind kind,
      absl::FunctionRef<absl::Status(sql::SqlSession&)> body) override {
    const absl::Time deadline = absl::Now() + call_budget_;
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
        auto backend = std::make_unique<PostgresBackend>(
            *std::move(connect), options, clock, store_options);
        if (absl::Status s = backend->Start(options.connect_timeout +
                                            options.statement_timeout);
            !s.ok()) {
          return s;
        }
        return backend;
      });
}

}  // namespace sessiond::storage
