// Tests of the PostgreSQL backend against a real server (one for the whole
// binary, started by tests/testing/postgres_server): the conformance suite on
// a fresh database per store, the shared-backend suites (two stores on one
// database, a row lock held behind the store's back, the server stopped,
// crashed and hung) on a fresh database per test, plus what only PostgreSQL
// has (migrations, locking across processes, prune batches and SKIP LOCKED,
// writes racing a crash, password files, the connection pool).
#include "storage/postgres/postgres_store.h"

#include <postgresql/libpq-fe.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/postgres/postgres_conn.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "storage/sql/migrations.h"
#include "storage/sql/statements.h"
#include "tests/storage/conformance.h"
#include "tests/storage/numbered_record.h"
#include "tests/storage/shared_backend_suite.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/threads.h"

namespace sessiond::storage {
namespace {

using ::sessiond::testing::PostgresServer;
using ::testing::HasSubstr;
using ::testing::Not;

// The tenant of the sessions the tests store.
constexpr absl::string_view kTenant = kDefaultTenant;

// Limits with this per-user cap.
TenantLimits CapOf(int max_sessions_per_user) {
  TenantLimits limits;
  limits.max_sessions_per_user = max_sessions_per_user;
  return limits;
}

// ---------------------------------------------------------------------------
// One server for the whole binary.

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    server_ = std::make_unique<PostgresServer>();
    status_ = server_->Start();
    // Not an assertion here: gtest would then skip every test. Each test
    // fails instead, with this status (tests must never silently skip).
    if (!status_.ok())
      std::cerr << "PostgreSQL did not start: " << status_ << "\n";
  }
  void TearDown() override { server_.reset(); }

  // The running server, or why there is none.
  absl::StatusOr<PostgresServer*> server() const {
    if (server_ == nullptr) {
      return absl::FailedPreconditionError("the test server was not started");
    }
    if (!status_.ok()) return status_;
    return server_.get();
  }

 private:
  std::unique_ptr<PostgresServer> server_;
  absl::Status status_;
};

PostgresEnvironment* const kEnv = static_cast<PostgresEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment));

// ---------------------------------------------------------------------------
// Helpers.

using ::sessiond::testing::RunThreads;

// How long `fn` took.
template <typename Fn>
absl::Duration Timed(Fn fn) {
  const absl::Time start = absl::Now();
  fn();
  return absl::Now() - start;
}

// A plain libpq connection, to look at or lock the database behind the
// store's back.
class RawConn {
 public:
  explicit RawConn(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
    EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
  }
  ~RawConn() { PQfinish(conn_); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // Runs `sql`; returns the first column of the first row ("" if none).
  std::string Exec(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    const ExecStatusType status = PQresultStatus(res);
    EXPECT_TRUE(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        << sql << ": " << PQerrorMessage(conn_);
    std::string value;
    if (PQntuples(res) > 0 && PQnfields(res) > 0) value = PQgetvalue(res, 0, 0);
    PQclear(res);
    return value;
  }

  // Runs `sql`, which is to fail; returns the error message ("" if it did
  // not fail).
  std::string ExecFailing(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    const ExecStatusType status = PQresultStatus(res);
    PQclear(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return "";
    return PQerrorMessage(conn_);
  }

  // Every row's first column, joined by "\n".
  std::string ExecAll(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    EXPECT_EQ(PQresultStatus(res), PGRES_TUPLES_OK)
        << sql << ": " << PQerrorMessage(conn_);
    std::string all;
    for (int i = 0; i < PQntuples(res); ++i) {
      absl::StrAppend(&all, i > 0 ? "\n" : "", PQgetvalue(res, i, 0));
    }
    PQclear(res);
    return all;
  }

 private:
  PGconn* conn_;
};

// Waits until exactly `n` of the stores' connections to `db` are waiting
// for a lock (a row, a transaction or an advisory lock:
// pg_stat_activity.wait_event_type = 'Lock'); false if that does not happen
// within 10 s. For tests that need a call to be inside its lock wait: a
// fixed sleep can end before the call even started.
bool AwaitLockWaiters(PostgresServer& server, const std::string& db, int n) {
  RawConn observer(server.dsn(db));
  const std::string sql = absl::StrCat(
      "SELECT count(*) FROM pg_stat_activity WHERE datname = '", db,
      "' AND application_name = 'sessiond' AND wait_event_type = 'Lock'");
  const std::string want = absl::StrCat(n);
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up) {
    if (observer.Exec(sql) == want) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<PostgresServer*> server = kEnv->server();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *server;
    absl::StatusOr<std::string> db = server_->CreateDatabase("pgtest");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *db;
  }

  PostgresOptions Options() const {
    PostgresOptions options;
    options.dsn = server_->dsn(db_);
    return options;
  }

  std::unique_ptr<SessionStore> Open(StoreOptions store_options = {}) {
    return Open(Options(), store_options);
  }
  std::unique_ptr<SessionStore> Open(const PostgresOptions& options,
                                     StoreOptions store_options = {}) {
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenPostgresStore(options, &clock_, store_options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // The first value of `sql` in this test's database.
  std::string Query(const std::string& sql) {
    absl::StatusOr<std::string> v = server_->QueryValue(sql, db_);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : "";
  }
  int64_t QueryInt(const std::string& sql) {
    int64_t n = -1;
    EXPECT_TRUE(absl::SimpleAtoi(Query(sql), &n)) << sql;
    return n;
  }
  void Exec(const std::string& sql) {
    absl::Status s = server_->Exec(sql, db_);
    EXPECT_TRUE(s.ok()) << s;
  }

  // Inserts `n` sessions that expired a minute ago (by the test clock)
  // directly, ids "<prefix>-1" .. "<prefix>-n".
  void InsertExpired(int n, const std::string& prefix) {
    const int64_t now = absl::ToUnixMicros(TruncateToMicros(clock_.Now()));
    const int64_t created = now - 120'000'000;
    Exec(absl::StrCat(
        "INSERT INTO sessiond_sessions (id, token_hash, user_id, sealed,"
        " created_at, last_active_at, idle_timeout_us, absolute_lifetime_us,"
        " version, expires_at) SELECT '",
        prefix, "-' || g, sha256(('", prefix,
        "-' || g)::bytea), 'bulk', '\\x00'::bytea, ", created, ", ", created,
        ", 60000000, 86400000000, 1, ", created + 60'000'000,
        " FROM generate_series(1, ", n, ") g"));
  }

  int64_t CountRows() {
    return QueryInt("SELECT count(*) FROM sessiond_sessions");
  }

  // Waits until exactly `n` of the stores' connections to this test's
  // database are waiting for a lock (a row, a transaction or an advisory
  // lock: pg_stat_activity.wait_event_type = 'Lock'); false if that does not
  // happen within 10 s. For tests that need a call to be inside its lock
  // wait: a fixed sleep can end before the call even started.
  bool WaitForLockWaiters(int n) { return AwaitLockWaiters(*server_, db_, n); }

  ManualClock clock_;
  PostgresServer* server_ = nullptr;
  std::string db_;
};

// Resumes the server if it is paused, and starts it if it is not running.
absl::Status EnsureRunning(PostgresServer& server) {
  if (absl::Status s = server.Resume(); !s.ok()) return s;
  return server.running() ? absl::OkStatus() : server.Restart();
}

// Makes sure the shared server runs again when a test that stops, kills or
// pauses it ends (even by a failed assertion).
class ServerGuard {
 public:
  explicit ServerGuard(PostgresServer* server) : server_(server) {}
  ~ServerGuard() {
    const absl::Status s = EnsureRunning(*server_);
    EXPECT_TRUE(s.ok()) << s;
  }

 private:
  PostgresServer* server_;
};

// ---------------------------------------------------------------------------
// Basics and options.

TEST_F(PostgresStoreTest, BackendNameAndPing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->backend_name(), "postgres");
  EXPECT_TRUE(store->Ping().ok());
}

TEST_F(PostgresStoreTest, RejectsBadOptions) {
  auto code = [&](const PostgresOptions& o, const Clock* clock = nullptr,
                  StoreOptions so = {}) {
    return OpenPostgresStore(o, clock, so).status().code();
  };
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(Options(), nullptr), kInvalid);
  StoreOptions negative;
  negative.live_count_max_age = -absl::Seconds(1);
  EXPECT_EQ(code(Options(), &clock_, negative), kInvalid);
  PostgresOptions o = Options();
  o.pool_size = 0;
  EXPECT_EQ(code(o, &clock_), kInvalid);
  o = Options();
  o.connect_timeout = absl::ZeroDuration();
  EXPECT_EQ(code(o, &clock_), kInvalid);
  o = Options();
  o.statement_timeout = absl::ZeroDuration();
  EXPECT_EQ(code(o, &clock_), kInvalid);
  o = Options();
  o.prune_batch_size = 0;
  EXPECT_EQ(code(o, &clock_), kInvalid);
  o = Options();
  o.password_file = "/nonexistent/password";
  EXPECT_EQ(code(o, &clock_), kInvalid);
}

TEST_F(PostgresStoreTest, UnreachableServerIsUnavailableQuickly) {
  PostgresOptions o;
  o.dsn = absl::StrCat("host=127.0.0.1 port=", testing::PickFreePort(),
                       " user=postgres dbname=x");
  o.connect_timeout = absl::Seconds(2);
  absl::Status status;
  const absl::Duration took =
      Timed([&] { status = OpenPostgresStore(o, &clock_, {}).status(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("cannot connect"));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(PostgresStoreTest, RejectsTextPostgresCannotStore) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (const std::string& bad :
       {std::string("a\0b", 3), std::string("\xff"), std::string("\xc3\x28"),
        std::string("\xed\xa0\x80")}) {
    SessionRecord r = NumberedRecord(1);
    r.id = bad;
    EXPECT_EQ(store->Create(r, {}).status().code(),
              absl::StatusCode::kInvalidArgument);
    r = NumberedRecord(1, bad);
    EXPECT_EQ(store->Create(r, {}).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->DeleteById(kTenant, bad).value_or(-1), 0);
    EXPECT_EQ(store->DeleteForUser(kTenant, bad, "").value_or(-1), 0);
    absl::StatusOr<SessionPage> none = store->ListForUser(kTenant, bad, 10, {});
    ASSERT_TRUE(none.ok()) << none.status();
    EXPECT_TRUE(none->sessions.empty());
  }
  // Valid UTF-8 round-trips and sorts byte-wise, whatever the database's
  // collation: "é" (0xc3 0xa9) > "z" > "a" > "B".
  for (const auto& [i, id] : std::vector<std::pair<int, std::string>>{
           {1, "B"}, {2, "a"}, {3, "z"}, {4, "\xc3\xa9"}}) {
    SessionRecord r = NumberedRecord(i, "\xe2\x9c\x93-user");
    r.id = id;
    ASSERT_TRUE(store->Create(r, {}).ok());
  }
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kTenant, "\xe2\x9c\x93-user", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> ids;
  for (const SessionRecord& r : page->sessions) ids.push_back(r.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"\xc3\xa9", "z", "a", "B"}));
  for (const std::string& bad : {std::string("\0", 1), std::string("\xff")}) {
    EXPECT_EQ(store
                  ->Cycle(kTenant, NumberedTokenHash(1),
                          MakeCycle(NumberedTokenHash(9), bad), {})
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// SQLSTATEs that the store's statements do not provoke by themselves,
// raised by a trigger on the table.
TEST_F(PostgresStoreTest, ServerErrorsMapToTheContract) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  Exec(
      "CREATE FUNCTION sessiond_test_fail() RETURNS trigger LANGUAGE plpgsql"
      " AS $$ BEGIN RAISE EXCEPTION 'injected failure'"
      " USING ERRCODE = TG_ARGV[0]; END $$");
  struct Case {
    const char* state;
    absl::StatusCode want;
  };
  const Case kCases[] = {
      // Statement completion unknown: a write may or may not have happened.
      {"40003", absl::StatusCode::kUnavailable},
      // Serialization failure and deadlock: retried, then UNAVAILABLE.
      {"40001", absl::StatusCode::kUnavailable},
      {"40P01", absl::StatusCode::kUnavailable},
      // Statement timeout, lock timeout.
      {"57014", absl::StatusCode::kUnavailable},
      {"55P03", absl::StatusCode::kUnavailable},
      {"22023", absl::StatusCode::kInvalidArgument},
      {"P0001", absl::StatusCode::kInternal},
      {"XX000", absl::StatusCode::kInternal},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.state);
    Exec(absl::StrCat(
        "CREATE TRIGGER sessiond_test_fail BEFORE INSERT ON sessiond_sessions"
        " FOR EACH ROW EXECUTE FUNCTION sessiond_test_fail('",
        c.state, "')"));
    const absl::Status status = store->Create(NumberedRecord(1), {}).status();
    EXPECT_EQ(status.code(), c.want) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.state));
    Exec("DROP TRIGGER sessiond_test_fail ON sessiond_sessions");
  }
  EXPECT_EQ(CountRows(), 0);
  EXPECT_TRUE(store->Create(NumberedRecord(1), {}).ok());
}

// FAILED_PRECONDITION is OpenPostgresStore's answer to a database that is
// not UTF8. A call must never return it (the server reads it from Cycle as a
// token collision), not even when a connection it opens finds the database
// behind the DSN replaced by one that is not UTF8.
TEST_F(PostgresStoreTest, NonUtf8DatabaseIsFailedPreconditionOnlyAtOpen) {
  auto create_ascii = [&](const std::string& name) {
    return server_->Exec(
        absl::StrCat("CREATE DATABASE ", name,
                     " ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
                     " TEMPLATE template0"),
        "postgres");
  };
  const std::string ascii = absl::StrCat(db_, "_ascii");
  ASSERT_TRUE(create_ascii(ascii).ok());
  PostgresOptions o;
  o.dsn = server_->dsn(ascii);
  const absl::Status at_open = OpenPostgresStore(o, &clock_, {}).status();
  EXPECT_EQ(at_open.code(), absl::StatusCode::kFailedPrecondition) << at_open;
  EXPECT_THAT(at_open.message(), HasSubstr("UTF8"));

  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1), {}).ok());
  // Terminates the store's pooled connection too.
  ASSERT_TRUE(server_
                  ->Exec(absl::StrCat("DROP DATABASE ", db_, " WITH (FORCE)"),
                         "postgres")
                  .ok());
  ASSERT_TRUE(create_ascii(db_).ok());
  SessionUpdate update;
  update.sealed_payload = "x";
  const std::vector<std::pair<std::string, std::function<absl::Status()>>>
      calls = {
          {"Cycle",
           [&] {
             return store
                 ->Cycle(kTenant, NumberedTokenHash(1),
                         MakeCycle(NumberedTokenHash(2)), {})
                 .status();
           }},
          {"Create",
           [&] { return store->Create(NumberedRecord(3), {}).status(); }},
          {"Load",
           [&] { return store->Load(kTenant, NumberedTokenHash(1)).status(); }},
          {"Update",
           [&] {
             return store->Update(kTenant, NumberedTokenHash(1), update)
                 .status();
           }},
          {"Ping", [&] { return store->Ping(); }},
      };
  for (const auto& [name, call] : calls) {
    const absl::Status status = call();
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal)
        << name << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("UTF8")) << name;
  }
}

// libpq opens a new socket for each address it tries: statements must be
// watched on the one of the address that answered (127.0.0.2 refuses).
TEST_F(PostgresStoreTest, StatementsAreBoundedOnTheSocketOfTheAddressUsed) {
  PostgresOptions options = Options();
  options.dsn = absl::StrReplaceAll(
      options.dsn, {{"host=127.0.0.1", "host=127.0.0.2,127.0.0.1"}});
  ASSERT_NE(options.dsn, Options().dsn);
  options.pool_size = 1;
  options.connect_timeout = absl::Seconds(1);
  options.statement_timeout = absl::Seconds(1);
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1), {}).ok());
  ASSERT_TRUE(server_->Pause().ok());
  // Should the bound fail, the server is resumed and the call ends late.
  std::thread resume([&] {
    absl::SleepFor(absl::Seconds(8));
    (void)server_->Resume();
  });
  absl::Status loaded;
  const absl::Duration took = Timed(
      [&] { loaded = store->Load(kTenant, NumberedTokenHash(1)).status(); });
  resume.join();
  EXPECT_EQ(loaded.code(), absl::StatusCode::kUnavailable) << loaded;
  EXPECT_LT(took, absl::Seconds(5));
}

// ---------------------------------------------------------------------------
// Schema and migrations.

TEST_F(PostgresStoreTest, RecordsSchemaVersionAndIndexes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Query("SELECT string_agg(version::text, ',' ORDER BY version)"
                  " FROM sessiond_schema_migrations"),
            "1,2,3");
  EXPECT_EQ(QueryInt("SELECT max(version) FROM sessiond_schema_migrations"),
            kPostgresSchemaVersion);
  EXPECT_EQ(QueryInt("SELECT count(*) FROM pg_indexes WHERE tablename ="
                     " 'sessiond_sessions' AND indexname IN"
                     " ('sessiond_sessions_by_user',"
                     " 'sessiond_sessions_by_expiry',"
                     " 'sessiond_sessions_by_tenant_user',"
                     " 'sessiond_sessions_by_tenant_expiry')"),
            4);
  EXPECT_EQ(Query("SELECT indexdef FROM pg_indexes WHERE indexname ="
                  " 'sessiond_sessions_by_tenant_user'"),
            "CREATE INDEX sessiond_sessions_by_tenant_user ON"
            " public.sessiond_sessions USING btree (tenant, user_id,"
            " last_active_at DESC, id DESC)");
  EXPECT_EQ(Query("SELECT indexdef FROM pg_indexes WHERE indexname ="
                  " 'sessiond_sessions_by_tenant_expiry'"),
            "CREATE INDEX sessiond_sessions_by_tenant_expiry ON"
            " public.sessiond_sessions USING btree (tenant, expires_at)");
  EXPECT_EQ(QueryInt("SELECT count(*) FROM pg_index WHERE indrelid ="
                     " 'sessiond_sessions'::regclass AND NOT indisvalid"),
            0);
  EXPECT_EQ(Query("SELECT collation_name || ' ' || column_default"
                  " FROM information_schema.columns"
                  " WHERE table_name = 'sessiond_sessions'"
                  " AND column_name = 'tenant'"),
            "C 'default'::text");
  EXPECT_EQ(Query("SELECT indexdef FROM pg_indexes WHERE indexname ="
                  " 'sessiond_sessions_by_user'"),
            "CREATE INDEX sessiond_sessions_by_user ON public.sessiond_sessions"
            " USING btree (user_id, last_active_at DESC, id DESC)");
  EXPECT_EQ(Query("SELECT collation_name FROM information_schema.columns"
                  " WHERE table_name = 'sessiond_sessions'"
                  " AND column_name = 'id'"),
            "C");
  EXPECT_EQ(QueryInt("SELECT count(*) FROM pg_constraint WHERE conrelid ="
                     " 'sessiond_sessions'::regclass AND contype = 'u'"),
            1);
}

TEST_F(PostgresStoreTest, ReopeningUpToDateDatabaseTakesNoLockWritesNothing) {
  { ASSERT_NE(Open(), nullptr); }
  const std::string before = Query(
      "SELECT string_agg(version || '@' || applied_at, ',')"
      " FROM sessiond_schema_migrations");
  // Hold the migration lock: a reopen that tried to migrate would wait for
  // it (and time out).
  RawConn raw(server_->dsn(db_));
  raw.Exec("SELECT pg_advisory_lock(x'73657373696f6e64'::bigint)");
  std::unique_ptr<SessionStore> store;
  const absl::Duration took = Timed([&] { store = Open(); });
  ASSERT_NE(store, nullptr);
  EXPECT_LT(took, absl::Seconds(2));
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(kTenant, NumberedTokenHash(1)).status()));
  raw.Exec("SELECT pg_advisory_unlock_all()");
  EXPECT_EQ(Query("SELECT string_agg(version || '@' || applied_at, ',')"
                  " FROM sessiond_schema_migrations"),
            before);
}

TEST_F(PostgresStoreTest, ConcurrentFirstOpensMigrateOnce) {
  constexpr int kStores = 6;
  std::vector<std::unique_ptr<SessionStore>> stores(kStores);
  std::vector<absl::Status> statuses(kStores);
  RunThreads(kStores, [&](int i) {
    absl::StatusOr<std::unique_ptr<SessionStore>> s =
        OpenPostgresStore(Options(), &clock_, {});
    statuses[i] = s.status();
    if (s.ok()) stores[i] = *std::move(s);
  });
  for (int i = 0; i < kStores; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i];
  }
  EXPECT_EQ(QueryInt("SELECT count(*) FROM sessiond_schema_migrations"),
            kPostgresSchemaVersion);
  EXPECT_EQ(QueryInt("SELECT count(*) FROM pg_tables"
                     " WHERE tablename = 'sessiond_sessions'"),
            1);
  // They all work on the one table.
  for (int i = 0; i < kStores; ++i) {
    ASSERT_TRUE(stores[i]->Create(NumberedRecord(i), {}).ok());
  }
  for (int i = 0; i < kStores; ++i) {
    EXPECT_TRUE(stores[0]->Load(kTenant, NumberedTokenHash(i)).ok()) << i;
  }
}

// Databases that sessiond before tenants (schema version 1) left, with
// sessions in them, migrated by this one.
class PostgresMigrationTest : public PostgresStoreTest {
 protected:
  // The schema as the migrations up to `version` left it, as a binary of
  // then would have: version 1's table and history, then the later
  // migrations' DDL (each shipped migration is kept as it was).
  void MakeSchema(int version) {
    Exec(absl::StrCat(sql::Migrations()[0].postgres,
                      "; CREATE TABLE sessiond_schema_migrations ("
                      " version integer PRIMARY KEY, description text NOT NULL,"
                      " applied_at timestamptz NOT NULL DEFAULT now());"
                      " INSERT INTO sessiond_schema_migrations VALUES (1, "
                      "'sessions table')"));
    for (int v = 2; v <= version; ++v) {
      const sql::Migration& m = sql::Migrations()[v - 1];
      ASSERT_NE(m.postgres, nullptr) << v;
      Exec(absl::StrCat(m.postgres,
                        "; INSERT INTO sessiond_schema_migrations"
                        " VALUES (",
                        v, ", '", m.description, "')"));
    }
  }

  // Inserts `n` sessions "old-1".."old-n" live at the test clock's now, of
  // users "u0".."u4", with the columns and the INSERT of version 1 (no
  // tenant), as a replica of before tenants does; returns what Load must
  // find for each.
  std::vector<SessionRecord> InsertVersion1(int n) {
    const absl::Time now = TruncateToMicros(clock_.Now());
    const int64_t us = absl::ToUnixMicros(now);
    Exec(absl::StrCat(
        "INSERT INTO sessiond_sessions (id, token_hash, user_id, sealed,"
        " created_at, last_active_at, idle_timeout_us, absolute_lifetime_us,"
        " version, expires_at) SELECT 'old-' || g, sha256(('old-' || "
        "g)::bytea),"
        " 'u' || (g % 5), ('payload-' || g)::bytea, ",
        us, ", ", us, ", 1800000000, 86400000000, 1, ", us + 1'800'000'000,
        " FROM generate_series(1, ", n, ") g"));
    std::vector<SessionRecord> want;
    for (int g = 1; g <= n; ++g) {
      SessionRecord r;
      r.tenant = std::string(kDefaultTenant);
      r.id = absl::StrCat("old-", g);
      r.token_hash = TokenHashOf(r.id);
      r.user_id = absl::StrCat("u", g % 5);
      r.sealed_payload = absl::StrCat("payload-", g);
      r.created_at = r.last_active_at = now;
      r.idle_timeout = absl::Minutes(30);
      r.absolute_lifetime = absl::Hours(24);
      r.version = 1;
      want.push_back(r);
    }
    return want;
  }

  // sha256(id) as the server computes it.
  std::string TokenHashOf(const std::string& id) {
    std::string hex =
        Query(absl::StrCat("SELECT encode(sha256('", id, "'::bytea), 'hex')"));
    std::string raw;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      raw.push_back(
          static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return raw;
  }

  // Every session of `want` is there, in the default tenant only, as it
  // was.
  void ExpectAllThere(SessionStore& store,
                      const std::vector<SessionRecord>& want) {
    for (const SessionRecord& r : want) {
      SCOPED_TRACE(r.id);
      absl::StatusOr<SessionRecord> got = store.Load(kTenant, r.token_hash);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, r);
      EXPECT_TRUE(absl::IsNotFound(store.Load("other", r.token_hash).status()));
    }
    absl::StatusOr<int64_t> live = store.CountLive(kTenant);
    ASSERT_TRUE(live.ok()) << live.status();
    EXPECT_EQ(*live, static_cast<int64_t>(want.size()));
  }

  std::string Versions() {
    return Query(
        "SELECT string_agg(version::text, ',' ORDER BY version)"
        " FROM sessiond_schema_migrations");
  }
  int64_t InvalidIndexes() {
    return QueryInt(
        "SELECT count(*) FROM pg_index WHERE indrelid ="
        " 'sessiond_sessions'::regclass AND NOT indisvalid");
  }
};

TEST_F(PostgresMigrationTest, Version1DatabaseKeepsEverySessionInTheDefault) {
  MakeSchema(1);
  const std::vector<SessionRecord> want = InsertVersion1(300);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Versions(), "1,2,3");
  EXPECT_EQ(InvalidIndexes(), 0);
  EXPECT_EQ(CountRows(), 300);
  ExpectAllThere(*store, want);
  absl::StatusOr<SessionPage> page = store->ListForUser(kTenant, "u1", 100, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->sessions.size(), 60u);
  // A replica of before tenants, still running, goes on inserting with its
  // own statement: its sessions are the default tenant's.
  clock_.Advance(absl::Seconds(1));
  std::vector<SessionRecord> more = want;
  Exec("DELETE FROM sessiond_sessions WHERE id LIKE 'old-%'");
  more = InsertVersion1(10);
  ExpectAllThere(*store, more);
  // And the sessions take writes as any other.
  absl::StatusOr<SessionRecord> cycled =
      store->Cycle(kTenant, more[0].token_hash,
                   MakeCycle(NumberedTokenHash(1), "carol"), {});
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(cycled->version, 2);
}

// An index build that was interrupted (here: by its statement timeout,
// while a writer's transaction kept it waiting) leaves an INVALID index
// behind, which a plain IF NOT EXISTS would take for done. The next
// migrator drops it and builds it again.
TEST_F(PostgresMigrationTest, InterruptedIndexBuildIsDroppedAndBuiltAgain) {
  MakeSchema(2);
  const std::vector<SessionRecord> want = InsertVersion1(50);
  {
    RawConn writer(server_->dsn(db_));
    writer.Exec("BEGIN");
    writer.Exec(
        "UPDATE sessiond_sessions SET version = version WHERE id = 'old-1'");
    RawConn migrator(server_->dsn(db_));
    migrator.Exec("SET statement_timeout = '300ms'");
    const std::string error = migrator.ExecFailing(
        absl::StrCat("CREATE INDEX CONCURRENTLY ",
                     sql::Migrations()[2].postgres_online[0].name, " ",
                     sql::Migrations()[2].postgres_online[0].definition));
    EXPECT_THAT(error, HasSubstr("statement timeout"));
    writer.Exec("ROLLBACK");
  }
  ASSERT_EQ(InvalidIndexes(), 1);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Versions(), "1,2,3");
  EXPECT_EQ(InvalidIndexes(), 0);
  EXPECT_EQ(QueryInt("SELECT count(*) FROM pg_indexes WHERE indexname LIKE"
                     " 'sessiond_sessions_by_tenant_%'"),
            2);
  ExpectAllThere(*store, want);
  // A valid index of a step is kept as it is.
  const std::string oid =
      Query("SELECT 'sessiond_sessions_by_tenant_user'::regclass::oid::text");
  Exec("DELETE FROM sessiond_schema_migrations WHERE version = 3");
  auto again = Open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(Versions(), "1,2,3");
  EXPECT_EQ(Query("SELECT 'sessiond_sessions_by_tenant_user'::regclass::oid"
                  "::text"),
            oid);
}

// The ALTER TABLE of version 2 needs the table to itself for an instant. A
// transaction that holds the table must not make it wait in the queue (and
// every statement after it queue behind it): it gives up after its lock
// timeout and tries again, while writers get through in between.
TEST_F(PostgresMigrationTest, AddingTheColumnRetriesInsteadOfQueueingWriters) {
  MakeSchema(1);
  const std::vector<SessionRecord> want = InsertVersion1(5);
  RawConn reader(server_->dsn(db_));
  reader.Exec("BEGIN");
  reader.Exec("SELECT count(*) FROM sessiond_sessions");
  absl::StatusOr<std::unique_ptr<SessionStore>> opened;
  std::thread opener(
      [&] { opened = OpenPostgresStore(Options(), &clock_, {}); });
  // The migration is waiting for the table; an old replica's write gets
  // through within the lock timeout (2 s) at the latest.
  ASSERT_TRUE(WaitForLockWaiters(1));
  RawConn old_replica(server_->dsn(db_));
  const absl::Duration took = Timed([&] {
    old_replica.Exec(
        "UPDATE sessiond_sessions SET version = version WHERE id = 'old-2'");
  });
  EXPECT_LT(took, absl::Seconds(3));
  absl::SleepFor(absl::Seconds(1));
  reader.Exec("COMMIT");
  opener.join();
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(Versions(), "1,2,3");
  ExpectAllThere(**opened, want);
}

// The per-user lock of the default tenant's users is the one replicas of
// before tenants take (the user id alone), so that capped writes of both
// serialise during a rolling upgrade; another tenant's same user id is
// another lock.
TEST_F(PostgresStoreTest, DefaultTenantUsersKeepTheirLockOfBeforeTenants) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawConn old_replica(server_->dsn(db_));
  old_replica.Exec("BEGIN");
  old_replica.Exec(
      "SELECT pg_advisory_xact_lock(x'73657373'::int, hashtext('alice'))");
  SessionRecord other = NumberedRecord(2, "alice");
  other.tenant = "other";
  EXPECT_TRUE(store->Create(other, CapOf(1)).ok());
  absl::StatusOr<SessionRecord> created;
  std::thread creator(
      [&] { created = store->Create(NumberedRecord(1, "alice"), CapOf(1)); });
  const bool waited = WaitForLockWaiters(1);
  old_replica.Exec("COMMIT");
  creator.join();
  EXPECT_TRUE(waited) << "the capped Create did not wait for the user's lock";
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(store->Load("other", NumberedTokenHash(2)).ok());
}

// With many tenants that share user ids, the per-tenant statements are
// ranges of the per-tenant indexes (not of version 1's user and expiry
// indexes, which hold every tenant's sessions).
TEST_F(PostgresStoreTest, TenantStatementsUseTheTenantIndexes) {
  { ASSERT_NE(Open(), nullptr); }
  Exec(
      "INSERT INTO sessiond_sessions (tenant, id, token_hash, user_id, sealed,"
      " created_at, last_active_at, idle_timeout_us, absolute_lifetime_us,"
      " version, expires_at) SELECT 't' || ((g / 100) % 50), 'id-' || g,"
      " sha256(('id-' || g)::bytea), 'u' || (g % 100), '\\x00'::bytea,"
      " g, g, 1000, 1000, 1, g + 1000 FROM generate_series(1, 50000) g;"
      " ANALYZE sessiond_sessions");
  RawConn raw(server_->dsn(db_));
  auto plan = [&](sql::SqlStatement statement, const std::string& args) {
    const std::string name(sql::StatementName(statement));
    raw.Exec(absl::StrCat(
        "PREPARE ", name, " AS ",
        sql::StatementText(statement, sql::SqlDialect::kPostgres)));
    return raw.ExecAll(absl::StrCat("EXPLAIN EXECUTE ", name, "(", args, ")"));
  };
  for (const auto& [statement, args] :
       std::vector<std::pair<sql::SqlStatement, std::string>>{
           {sql::SqlStatement::kListFirst, "'t7', 'u7', 10, 20, 4096"},
           {sql::SqlStatement::kListAfter,
            "'t7', 'u7', 10, 20, 4096, 40000, 'id-9'"},
           {sql::SqlStatement::kDeleteForUser, "'t7', 'u7', ''"},
           {sql::SqlStatement::kEvictOverCap, "'t7', 'u7', 10, 'id-7', 1"},
       }) {
    SCOPED_TRACE(sql::StatementName(statement));
    EXPECT_THAT(plan(statement, args),
                HasSubstr("sessiond_sessions_by_tenant_user"));
  }
  // Nearly every row is live at 2000, so that the tenant, not the expiry,
  // is what is selective: at 40000 (22% live) the planner sometimes chose
  // the expiry index, from the sampled statistics.
  EXPECT_THAT(plan(sql::SqlStatement::kCountLive, "'t7', 2000"),
              HasSubstr("sessiond_sessions_by_tenant_expiry"));
  EXPECT_THAT(plan(sql::SqlStatement::kPruneTenantBatch, "'t7', 40000, 1000"),
              HasSubstr("sessiond_sessions_by_tenant_expiry"));
}

TEST_F(PostgresStoreTest, NewerSchemaIsFailedPrecondition) {
  { ASSERT_NE(Open(), nullptr); }
  Exec(
      absl::StrCat("INSERT INTO sessiond_schema_migrations (version,"
                   " description) VALUES (",
                   kPostgresSchemaVersion + 1, ", 'from the future')"));
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenPostgresStore(Options(), &clock_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
  EXPECT_THAT(
      store.status().message(),
      HasSubstr(absl::StrCat("schema version ", kPostgresSchemaVersion + 1)));
}

// ---------------------------------------------------------------------------
// Two stores on one database stand in for two sessiond processes
// (SharedStoreTest has compare-and-set and the cap across them).

// Sessions moving between two capped users in both directions make writers
// lock each other's rows in opposite orders: PostgreSQL breaks such
// deadlocks, and the store retries the victim. No call fails for it, and
// the cap holds.
TEST_F(PostgresStoreTest, CrossUserMovesSurviveDeadlocks) {
  const TenantLimits limits = CapOf(2);
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kThreads = 4;
  constexpr int kMoves = 15;
  std::atomic<int> errors{0};
  RunThreads(kThreads, [&](int t) {
    SessionStore* store = (t % 2 == 0 ? a : b).get();
    for (int k = 0; k < kMoves; ++k) {
      // Each thread keeps one session alive and moves it to the other user;
      // the other threads' moves evict it now and then.
      const int n = 1 + t * 1000 + k;
      const std::string from = (t + k) % 2 == 0 ? "alice" : "bob";
      const std::string to = from == "alice" ? "bob" : "alice";
      if (!store->Create(NumberedRecord(n, from), limits).ok()) {
        errors.fetch_add(1);
        continue;
      }
      SessionCycle cycle = MakeCycle(NumberedTokenHash(n + 100'000), to);
      cycle.sealed_payload = "moved";
      absl::Status s =
          store->Cycle(kTenant, NumberedTokenHash(n), cycle, limits).status();
      if (!s.ok() && !absl::IsNotFound(s)) {
        ADD_FAILURE() << s;
        errors.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(errors.load(), 0);
  for (const char* user : {"alice", "bob"}) {
    EXPECT_LE(QueryInt(absl::StrCat("SELECT count(*) FROM sessiond_sessions"
                                    " WHERE user_id = '",
                                    user, "'")),
              2)
        << user;
  }
}

// Each process reads its own clock: the row lock orders the writes, not the
// clocks. A write from a process whose clock is behind must not move
// last_active_at (and the expiry that follows from it) back.
TEST_F(PostgresStoreTest, WriteFromAProcessWhoseClockIsBehindKeepsLastActive) {
  ManualClock behind(clock_.Now() - absl::Milliseconds(50));
  auto a = Open();
  ASSERT_NE(a, nullptr);
  absl::StatusOr<std::unique_ptr<SessionStore>> opened =
      OpenPostgresStore(Options(), &behind, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<SessionStore> b = *std::move(opened);
  auto stored = [&](const char* column) {
    return QueryInt(absl::StrCat("SELECT ", column,
                                 " FROM sessiond_sessions WHERE id = 'id-1'"));
  };
  ASSERT_TRUE(a->Create(NumberedRecord(1, "alice"), {}).ok());
  clock_.Advance(absl::Seconds(1));
  behind.Advance(absl::Seconds(1));

  absl::StatusOr<SessionRecord> touched =
      a->LoadAndTouch(kTenant, NumberedTokenHash(1), absl::ZeroDuration());
  ASSERT_TRUE(touched.ok()) << touched.status();
  const absl::Time last_active = clock_.Now();
  ASSERT_EQ(touched->last_active_at, last_active);

  SessionUpdate update;
  update.sealed_payload = "from b";
  absl::StatusOr<SessionRecord> updated =
      b->Update(kTenant, NumberedTokenHash(1), update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->last_active_at, last_active);
  EXPECT_EQ(stored("last_active_at"), absl::ToUnixMicros(last_active));
  EXPECT_EQ(stored("expires_at"), absl::ToUnixMicros(updated->ExpiresAt()));

  absl::StatusOr<SessionRecord> cycled = b->Cycle(
      kTenant, NumberedTokenHash(1), MakeCycle(NumberedTokenHash(2)), {});
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(cycled->version, 3);
  EXPECT_EQ(cycled->last_active_at, last_active);
  EXPECT_EQ(stored("last_active_at"), absl::ToUnixMicros(last_active));
  EXPECT_EQ(stored("expires_at"), absl::ToUnixMicros(cycled->ExpiresAt()));
  absl::StatusOr<SessionRecord> loaded = a->Load(kTenant, NumberedTokenHash(2));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, *cycled);

  // Once B's clock has passed it, B's writes move it forward again.
  behind.Advance(absl::Milliseconds(100));
  updated = b->Update(kTenant, NumberedTokenHash(2), update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->last_active_at, behind.Now());
}

// The per-user cap evicts the least recently active session as of the moment
// it deletes it, even when a touch (which does not take the user's lock)
// makes its chosen victim the most recently active just before. Forced
// interleaving: a raw connection holds the victim's row; the touch queues for
// it first, then the eviction (whose snapshot still has the old order);
// then the row is let go.
TEST_F(PostgresStoreTest, CapEvictionRacingATouchEvictsTheLeastRecentlyActive) {
  const TenantLimits limits = CapOf(2);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), limits).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(store->Create(NumberedRecord(2, "alice"), limits).ok());
  clock_.Advance(absl::Seconds(1));
  // id-1 is the least recently active, until the touch below.

  RawConn raw(server_->dsn(db_));
  raw.Exec("BEGIN");
  raw.Exec("SELECT id FROM sessiond_sessions WHERE id = 'id-1' FOR UPDATE");
  absl::StatusOr<SessionRecord> touched;
  std::thread toucher([&] {
    touched = store->LoadAndTouch(kTenant, NumberedTokenHash(1),
                                  absl::ZeroDuration());
  });
  const bool touch_waited = WaitForLockWaiters(1);
  absl::StatusOr<SessionRecord> created;
  std::thread creator(
      [&] { created = store->Create(NumberedRecord(3, "alice"), limits); });
  const bool eviction_waited = touch_waited && WaitForLockWaiters(2);
  raw.Exec("ROLLBACK");
  toucher.join();
  creator.join();
  ASSERT_TRUE(touch_waited) << "the touch never waited for the row";
  ASSERT_TRUE(eviction_waited) << "the eviction never waited for the row";

  ASSERT_TRUE(touched.ok()) << touched.status();
  EXPECT_EQ(touched->last_active_at, clock_.Now());
  ASSERT_TRUE(created.ok()) << created.status();
  // id-1 was touched before the eviction got to it: id-2 is the least
  // recently active one now, and the one to go.
  EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(1)).ok());
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(kTenant, NumberedTokenHash(2)).status()));
  EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(3)).ok());
  EXPECT_EQ(QueryInt("SELECT count(*) FROM sessiond_sessions"
                     " WHERE user_id = 'alice'"),
            2);
}

// ---------------------------------------------------------------------------
// Pruning (SharedStoreTest has the counts, and stores pruning at once).

// PruneExpired deletes prune_batch_size rows per statement until one comes
// back short (a statement trigger logs how many rows each DELETE removed),
// here of rows inserted behind the store's back.
TEST_F(PostgresStoreTest, PruneDeletesBatchesOfTheConfiguredSize) {
  Exec(
      "CREATE TABLE prune_log (n bigserial PRIMARY KEY, deleted bigint);"
      "CREATE FUNCTION log_prune() RETURNS trigger LANGUAGE plpgsql AS $$"
      " BEGIN INSERT INTO prune_log (deleted) SELECT count(*) FROM gone;"
      " RETURN NULL; END $$");
  for (const int batch : {1000, 7}) {
    SCOPED_TRACE(batch);
    PostgresOptions o = Options();
    o.prune_batch_size = batch;
    auto store = Open(o);
    ASSERT_NE(store, nullptr);
    constexpr int kExpired = 2500;
    InsertExpired(kExpired, absl::StrCat("b", batch));
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(store->Create(NumberedRecord(batch * 10 + i, "u"), {}).ok());
    }
    Exec(
        "CREATE TRIGGER log_prune AFTER DELETE ON sessiond_sessions"
        " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT"
        " EXECUTE FUNCTION log_prune()");
    absl::StatusOr<int64_t> pruned = store->PruneAllExpired();
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_EQ(*pruned, kExpired);
    // Full batches, then the short one that ends the prune.
    std::string want;
    for (int i = 0; i < kExpired / batch; ++i) {
      absl::StrAppend(&want, batch, ",");
    }
    absl::StrAppend(&want, kExpired % batch);
    EXPECT_EQ(Query("SELECT string_agg(deleted::text, ',' ORDER BY n)"
                    " FROM prune_log"),
              want);
    Exec("DROP TRIGGER log_prune ON sessiond_sessions; TRUNCATE prune_log");
    pruned = store->PruneAllExpired();
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_EQ(*pruned, 0);
    EXPECT_EQ(QueryInt(absl::StrCat("SELECT count(*) FROM sessiond_sessions"
                                    " WHERE id LIKE 'b",
                                    batch, "-%'")),
              0);
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(batch * 10 + i)).ok());
    }
  }
  EXPECT_EQ(CountRows(), 6);
}

TEST_F(PostgresStoreTest, PruneSkipsRowsOthersHoldInsteadOfWaiting) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  InsertExpired(10, "held");
  RawConn raw(server_->dsn(db_));
  raw.Exec("BEGIN");
  raw.Exec("SELECT id FROM sessiond_sessions WHERE id = 'held-3' FOR UPDATE");
  absl::StatusOr<int64_t> pruned;
  const absl::Duration took = Timed([&] { pruned = store->PruneAllExpired(); });
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 9);
  EXPECT_LT(took, absl::Seconds(2));
  raw.Exec("ROLLBACK");
  pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 1);
}

// ---------------------------------------------------------------------------
// Time is read only once a call holds the rows it decides on.

// An expiry seen in a snapshot is not final: a writer that found the session
// live (before it expired) may be about to commit it live again. Load waits
// for such a writer before it reports NOT_FOUND.
TEST_F(PostgresStoreTest, LoadWaitsForAWriterBeforeReportingExpired) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SessionRecord> created =
      store->Create(NumberedRecord(1, "alice", absl::Minutes(1)), {});
  ASSERT_TRUE(created.ok()) << created.status();
  const int64_t later = absl::ToUnixMicros(created->ExpiresAt()) - 1;
  RawConn raw(server_->dsn(db_));
  // A touch in flight, from just before the expiry.
  raw.Exec("BEGIN");
  raw.Exec(absl::StrCat("UPDATE sessiond_sessions SET last_active_at = ", later,
                        ", expires_at = ", later + 60'000'000,
                        " WHERE id = 'id-1'"));
  clock_.Set(created->ExpiresAt());
  absl::StatusOr<SessionRecord> loaded;
  std::atomic<bool> returned{false};
  std::thread reader([&] {
    loaded = store->Load(kTenant, NumberedTokenHash(1));
    returned.store(true);
  });
  const bool waited = WaitForLockWaiters(1);
  const bool returned_before_commit = returned.load();
  raw.Exec("COMMIT");
  reader.join();
  EXPECT_TRUE(waited) << "Load did not wait for the writer";
  EXPECT_FALSE(returned_before_commit);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(absl::ToUnixMicros(loaded->last_active_at), later);
}

// ---------------------------------------------------------------------------
// Timeouts and the pool.

TEST_F(PostgresStoreTest, PoolExhaustionWaitsThenFailsUnavailable) {
  PostgresOptions o = Options();
  o.pool_size = 1;
  o.connect_timeout = absl::Seconds(1);
  o.statement_timeout = absl::Seconds(8);
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2), {}).ok());
  RawConn raw(server_->dsn(db_));
  raw.Exec("BEGIN");
  raw.Exec("SELECT id FROM sessiond_sessions WHERE id = 'id-1' FOR UPDATE");
  // Holds the only connection, waiting for the row lock.
  absl::StatusOr<SessionRecord> blocked;
  std::thread writer([&] {
    SessionUpdate update;
    update.sealed_payload = "after";
    blocked = store->Update(kTenant, NumberedTokenHash(1), update);
  });
  if (!WaitForLockWaiters(1)) {
    raw.Exec("ROLLBACK");
    writer.join();
    FAIL() << "the Update never waited for the row";
  }
  absl::Status waited;
  const absl::Duration took = Timed(
      [&] { waited = store->Load(kTenant, NumberedTokenHash(2)).status(); });
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable) << waited;
  EXPECT_THAT(waited.message(), HasSubstr("stayed busy"));
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(3));
  raw.Exec("ROLLBACK");
  writer.join();
  ASSERT_TRUE(blocked.ok()) << blocked.status();
  EXPECT_EQ(blocked->version, 2);
  EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(2)).ok());
}

TEST_F(PostgresStoreTest, TerminatedConnectionsAreReplacedTransparently) {
  PostgresOptions o = Options();
  o.pool_size = 4;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  // Open all four connections.
  RunThreads(4, [&](int) {
    for (int i = 0; i < 20; ++i)
      EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(1)).ok());
  });
  EXPECT_GE(QueryInt(absl::StrCat("SELECT count(*) FROM pg_stat_activity"
                                  " WHERE application_name = 'sessiond'"
                                  " AND datname = '",
                                  db_, "'")),
            2);
  Exec(
      absl::StrCat("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE application_name = 'sessiond' AND datname = '",
                   db_, "'"));
  // pg_terminate_backend does not wait: some connections may be dying
  // while they are used. Every call succeeds all the same: dead pooled
  // connections are replaced on the way, and a read (or a transaction that
  // did not get to COMMIT) that meets one is retried on a new connection.
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(1)).ok()) << i;
  }
  EXPECT_TRUE(store->Create(NumberedRecord(2, "alice"), {}).ok());
  EXPECT_TRUE(store->Ping().ok());
}

// ---------------------------------------------------------------------------
// Server crashes (OutageTest has restarts, crashes and hangs).

// Writers race the crash; every write they got OK for survives it.
// (OutageTest crashes the server between writes.)
TEST_F(PostgresStoreTest, WritesRacingACrashKeepEveryAcknowledgedOne) {
  ServerGuard guard(server_);
  PostgresOptions o = Options();
  o.connect_timeout = absl::Seconds(2);
  o.statement_timeout = absl::Seconds(2);
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  std::atomic<bool> stop{false};
  std::vector<std::vector<SessionRecord>> per_thread(4);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        absl::StatusOr<SessionRecord> r =
            store->Create(NumberedRecord(1000 * (t + 1) + i, "bob"), {});
        if (r.ok()) per_thread[t].push_back(*r);
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Status killed = server_->Kill();
  absl::SleepFor(absl::Milliseconds(200));
  stop.store(true);
  for (std::thread& w : writers) w.join();
  ASSERT_TRUE(killed.ok()) << killed;
  std::vector<SessionRecord> acked;
  for (const auto& v : per_thread) {
    acked.insert(acked.end(), v.begin(), v.end());
  }
  ASSERT_FALSE(acked.empty());
  // A crashed server sends nothing before it goes: calls notice all the
  // same, and fail in time.
  for (const auto& [name, call] :
       std::vector<std::pair<std::string, std::function<absl::Status()>>>{
           {"Load",
            [&] {
              return store->Load(kTenant, NumberedTokenHash(1)).status();
            }},
           {"Create",
            [&] {
              return store->Create(NumberedRecord(2, "bob"), {}).status();
            }},
           {"Ping", [&] { return store->Ping(); }},
       }) {
    absl::Status status;
    const absl::Duration took = Timed([&] { status = call(); });
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable)
        << name << ": " << status;
    EXPECT_LT(took, absl::Seconds(10)) << name;
  }

  ASSERT_TRUE(server_->Restart().ok());
  for (const SessionRecord& want : acked) {
    absl::StatusOr<SessionRecord> got = store->Load(kTenant, want.token_hash);
    ASSERT_TRUE(got.ok()) << want.id << ": " << got.status();
    EXPECT_EQ(*got, want);
  }
  EXPECT_TRUE(store->Create(NumberedRecord(1, "bob"), {}).ok());
}

// ---------------------------------------------------------------------------
// Passwords.

// Writes `content` to `path` with exactly `mode` (whatever the umask);
// returns the path.
std::string WritePasswordFile(const std::string& path,
                              const std::string& content, mode_t mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  EXPECT_EQ(chmod(path.c_str(), mode), 0) << path;
  return path;
}

TEST_F(PostgresStoreTest, PasswordFromFile) {
  const std::string role = absl::StrCat("pw_", db_);
  const std::string password = "Corr3ct-h0rse-battery";
  ASSERT_TRUE(server_->CreatePasswordRole(role, password).ok());
  Exec(absl::StrCat("ALTER DATABASE ", db_, " OWNER TO ", role));
  const std::string dir = testing::MakeTempDir("pgpass");
  auto write = [&](const std::string& name, const std::string& content) {
    return WritePasswordFile(dir + "/" + name, content, 0600);
  };
  PostgresOptions o;
  o.dsn = absl::StrCat("host=127.0.0.1 port=", server_->port(), " user=", role,
                       " dbname=", db_, " sslmode=disable");
  o.password_file = write("right", password + "\n");
  {
    auto store = Open(o);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Create(NumberedRecord(1), {}).ok());
    EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(1)).ok());
  }
  EXPECT_EQ(Query("SELECT tableowner FROM pg_tables"
                  " WHERE tablename = 'sessiond_sessions'"),
            role);

  const std::string wrong = "Wr0ng-pa55word-x";
  o.password_file = write("wrong", wrong + "\n");
  absl::Status status = OpenPostgresStore(o, &clock_, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("password authentication failed"));

  // The server never quotes the password it was sent, so the message above
  // proves nothing about scrubbing. It does quote the user's name: with the
  // name as the (wrong) password, the message holds the secret, and the
  // store must take it out.
  o.password_file = write("name", role + "\n");
  status = OpenPostgresStore(o, &clock_, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("password authentication failed for user "
                        "\"<redacted>\""));
  EXPECT_THAT(status.message(), Not(HasSubstr(role)));

  o.password_file = write("empty", "");
  EXPECT_EQ(OpenPostgresStore(o, &clock_, {}).status().code(),
            absl::StatusCode::kInvalidArgument);

  // CR LF line ends are not part of the password either.
  o.password_file = write("crlf", password + "\r\n");
  {
    auto store = Open(o);
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->Ping().ok());
  }
  testing::RemoveTree(dir);
}

// A password file that group or others may read is refused before any
// connection is made, whatever it holds.
TEST_F(PostgresStoreTest, PasswordFileOthersMayReadIsFailedPrecondition) {
  const std::string dir = testing::MakeTempDir("pgpass");
  for (const mode_t mode : {0640, 0604, 0620, 0666}) {
    SCOPED_TRACE(mode);
    PostgresOptions o = Options();
    o.password_file = WritePasswordFile(absl::StrCat(dir, "/pw", mode),
                                        "Corr3ct-h0rse-battery\n", mode);
    const absl::Status status = OpenPostgresStore(o, &clock_, {}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(status.message(), HasSubstr("postgres: "));
    EXPECT_THAT(status.message(), HasSubstr("chmod 600"));
    EXPECT_THAT(status.message(), Not(HasSubstr("h0rse")));
  }
  // The same file, private to its owner, is read.
  PostgresOptions o = Options();
  o.password_file =
      WritePasswordFile(dir + "/private", "Corr3ct-h0rse-battery\n", 0600);
  EXPECT_NE(Open(o), nullptr);
  testing::RemoveTree(dir);
}

// By name, as operators write it: sessiond looks "localhost" up itself,
// within the call's deadline, and libpq connects to the address.
TEST_F(PostgresStoreTest, ConnectsToAHostGivenByName) {
  PostgresOptions o = Options();
  o.dsn = absl::StrReplaceAll(o.dsn, {{"host=127.0.0.1", "host=localhost"}});
  ASSERT_NE(o.dsn, Options().dsn);
  std::unique_ptr<SessionStore> store = Open(o);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Ping().ok());
}

TEST(PostgresPinHostAddressesTest, NamesBecomeAddressesAndSocketsStay) {
  using postgres_internal::PinHostAddresses;
  int lookups = 0;
  internal::HostLookup lookup(
      [&](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
        ++lookups;
        if (host == "db-a")
          return std::vector<std::string>{"10.0.0.1", "fd::2"};
        if (host == "db-b") return std::vector<std::string>{"10.0.0.3"};
        return absl::UnavailableError("cannot look up " + host + ": unknown");
      });
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  using Params = std::vector<std::pair<std::string, std::string>>;
  Params params = {{"host", "db-a,/run/pg,db-b"},
                   {"port", "5432,5433,5434"},
                   {"dbname", "s"}};
  ASSERT_TRUE(PinHostAddresses(params, lookup, deadline).ok());
  EXPECT_EQ(params, (Params{{"host", "db-a,db-a,/run/pg,db-b"},
                            {"port", "5432,5432,5433,5434"},
                            {"dbname", "s"},
                            {"hostaddr", "10.0.0.1,fd::2,,10.0.0.3"}}));
  // One port for all hosts stays one.
  params = {{"host", "db-b"}, {"port", "6432"}};
  ASSERT_TRUE(PinHostAddresses(params, lookup, deadline).ok());
  EXPECT_EQ(
      params,
      (Params{{"host", "db-b"}, {"port", "6432"}, {"hostaddr", "10.0.0.3"}}));
  // Nothing to look up: no host (the default socket), or hostaddr given.
  lookups = 0;
  for (Params untouched :
       {Params{{"dbname", "s"}}, Params{{"host", "/run/pg"}},
        Params{{"host", "db-a"}, {"hostaddr", "10.9.9.9"}}}) {
    Params copy = untouched;
    ASSERT_TRUE(PinHostAddresses(copy, lookup, deadline).ok());
    EXPECT_EQ(copy, untouched);
  }
  EXPECT_EQ(lookups, 0);
  params = {{"host", "db-a,nowhere"}};
  const absl::Status failed = PinHostAddresses(params, lookup, deadline);
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.message(),
              HasSubstr("postgres: cannot connect: cannot look up nowhere"));
}

// What every error message of the backend goes through.
TEST(PostgresScrubSecretTest, RemovesEveryOccurrenceOfTheSecret) {
  using postgres_internal::ScrubSecret;
  const std::string secret = "s3cr3t-Pa55";
  const std::string scrubbed =
      ScrubSecret(absl::StrCat("postgres: cannot connect: password='", secret,
                               "' rejected (", secret, secret, ")"),
                  secret);
  EXPECT_THAT(scrubbed, Not(HasSubstr(secret)));
  EXPECT_EQ(scrubbed,
            "postgres: cannot connect: password='<redacted>' rejected "
            "(<redacted><redacted>)");
  EXPECT_EQ(ScrubSecret("nothing secret here", secret), "nothing secret here");
  // No password configured: nothing to scrub.
  EXPECT_EQ(ScrubSecret("s3cr3t-Pa55", ""), "s3cr3t-Pa55");
}

// ---------------------------------------------------------------------------
// The shared-backend suites' hooks: each test on a fresh database of the
// shared server, which its stores open as separate processes would.

// Holds `FOR UPDATE` on the row of `token_hash` in `database`, on a
// connection of its own, until the returned object is destroyed.
absl::StatusOr<std::shared_ptr<void>> HoldRowLock(
    PostgresServer& server, const std::string& database,
    absl::string_view token_hash) {
  std::shared_ptr<PGconn> conn(PQconnectdb(server.dsn(database).c_str()),
                               [](PGconn* c) { PQfinish(c); });
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::InternalError(
        absl::StrCat("cannot connect: ", PQerrorMessage(conn.get())));
  }
  auto exec = [&](const char* sql, int want_rows) -> absl::Status {
    const char* values[] = {token_hash.data()};
    const int lengths[] = {static_cast<int>(token_hash.size())};
    const int formats[] = {1};  // binary: the hash's bytes as they are
    PGresult* res =
        PQexecParams(conn.get(), sql, want_rows < 0 ? 0 : 1, nullptr, values,
                     lengths, formats, /*resultFormat=*/0);
    const ExecStatusType status = PQresultStatus(res);
    const int rows = PQntuples(res);
    PQclear(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      return absl::InternalError(
          absl::StrCat(sql, ": ", PQerrorMessage(conn.get())));
    }
    if (want_rows >= 0 && rows != want_rows) {
      return absl::FailedPreconditionError(
          absl::StrCat(sql, ": ", rows, " rows, not ", want_rows));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = exec("BEGIN", -1); !s.ok()) return s;
  if (absl::Status s =
          exec("SELECT id FROM sessiond_sessions WHERE token_hash = $1::bytea"
               " FOR UPDATE",
               1);
      !s.ok()) {
    return s;
  }
  return std::shared_ptr<void>(std::move(conn));
}

// The shared suites' store options.
constexpr absl::Duration kSharedConnectTimeout = absl::Seconds(1);
constexpr absl::Duration kSharedStatementTimeout = absl::Seconds(1);
constexpr int kSharedPruneBatchSize = 50;

SharedBackend PostgresBackendHooks() {
  // The database of the running test.
  static std::string* const database = new std::string;
  auto control = [](absl::Status (PostgresServer::*action)()) {
    return [action]() -> absl::Status {
      absl::StatusOr<PostgresServer*> server = kEnv->server();
      if (!server.ok()) return server.status();
      return ((*server)->*action)();
    };
  };
  SharedBackend b;
  b.name = "Postgres";
  // A call's budget (connect_timeout + statement_timeout + 1 s,
  // postgres_store.h), and slack for a loaded machine. On a hung server each
  // call takes up to the budget, and OutageTest's hung-server test makes
  // about a dozen in a row: it takes about half a minute.
  b.bound = kSharedConnectTimeout + kSharedStatementTimeout + absl::Seconds(1) +
            absl::Seconds(2);
  b.prune_batch_size = kSharedPruneBatchSize;
  b.reset = []() -> absl::Status {
    absl::StatusOr<PostgresServer*> server = kEnv->server();
    if (!server.ok()) return server.status();
    // In case a test before this one left the server stopped or paused.
    if (absl::Status s = EnsureRunning(**server); !s.ok()) return s;
    absl::StatusOr<std::string> db = (*server)->CreateDatabase("shared");
    if (!db.ok()) return db.status();
    *database = *db;
    return absl::OkStatus();
  };
  auto open = [](bool follow_database_clock) {
    return
        [follow_database_clock](const Clock* clock, const StoreOptions& options)
            -> absl::StatusOr<std::unique_ptr<SessionStore>> {
          absl::StatusOr<PostgresServer*> server = kEnv->server();
          if (!server.ok()) return server.status();
          PostgresOptions o;
          o.dsn = (*server)->dsn(*database);
          o.connect_timeout = kSharedConnectTimeout;
          o.statement_timeout = kSharedStatementTimeout;
          o.pool_size = 4;
          o.prune_batch_size = kSharedPruneBatchSize;
          o.follow_database_clock = follow_database_clock;
          return OpenPostgresStore(o, clock, options);
        };
  };
  b.open = open(false);
  b.open_by_database_clock = open(true);
  b.hold_lock = [](absl::string_view token_hash)
      -> absl::StatusOr<std::shared_ptr<void>> {
    absl::StatusOr<PostgresServer*> server = kEnv->server();
    if (!server.ok()) return server.status();
    return HoldRowLock(**server, *database, token_hash);
  };
  b.stored_expires_at = [](const SessionRecord& r) -> absl::StatusOr<int64_t> {
    absl::StatusOr<PostgresServer*> server = kEnv->server();
    if (!server.ok()) return server.status();
    absl::StatusOr<std::string> value = (*server)->QueryValue(
        absl::StrCat("SELECT expires_at FROM sessiond_sessions WHERE id = '",
                     r.id, "'"),
        *database);
    if (!value.ok()) return value.status();
    int64_t us = 0;
    if (!absl::SimpleAtoi(*value, &us)) {
      return absl::InternalError(absl::StrCat("not a number: ", *value));
    }
    return us;
  };
  b.await_lock_waiter = [] {
    absl::StatusOr<PostgresServer*> server = kEnv->server();
    return server.ok() && AwaitLockWaiters(**server, *database, 1);
  };
  b.stop = control(&PostgresServer::Stop);
  b.kill = control(&PostgresServer::Kill);
  b.start = control(&PostgresServer::Restart);
  b.pause = control(&PostgresServer::Pause);
  b.resume = control(&PostgresServer::Resume);
  return b;
}

}  // namespace

// The shared-backend suites.
INSTANTIATE_TEST_SUITE_P(Postgres, SharedStoreTest,
                         ::testing::Values(PostgresBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Postgres, StoredExpiryTest,
                         ::testing::Values(PostgresBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Postgres, DatabaseClockTest,
                         ::testing::Values(PostgresBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Postgres, LockWaitTest,
                         ::testing::Values(PostgresBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Postgres, OutageTest,
                         ::testing::Values(PostgresBackendHooks()),
                         SharedBackendName());

// The conformance suite, each store on a fresh database of the shared server.
INSTANTIATE_TEST_SUITE_P(
    Postgres, SessionStoreConformanceTest,
    ::testing::Values(StoreFactory{
        "Postgres",
        [](const Clock* clock, const StoreOptions& options)
            -> absl::StatusOr<std::unique_ptr<SessionStore>> {
          absl::StatusOr<PostgresServer*> server = kEnv->server();
          if (!server.ok()) return server.status();
          absl::StatusOr<std::string> db =
              (*server)->CreateDatabase("conformance");
          if (!db.ok()) return db.status();
          PostgresOptions o;
          o.dsn = (*server)->dsn(*db);
          return OpenPostgresStore(o, clock, options);
        }}),
    StoreFactoryName());

}  // namespace sessiond::storage
