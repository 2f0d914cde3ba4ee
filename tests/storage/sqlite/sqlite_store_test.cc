// Tests of the SQLite backend: the conformance suite, the shared-backend
// suites (two stores on one file, a write lock held behind the store's
// back), plus what only SQLite has (files, schema versions, WAL reads under
// a held lock, batching, when the time is read).
#include "storage/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "storage/sql/migrations.h"
#include "storage/sql/statements.h"
#include "tests/storage/conformance.h"
#include "tests/storage/numbered_record.h"
#include "tests/storage/shared_backend_suite.h"

namespace sessiond::storage {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kTenant = kDefaultTenant;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// A database path no other test uses.
std::string NewDbPath() {
  static std::atomic<int> counter{0};
  return absl::StrCat(TempDir(), "/sqlite_store_test_", getpid(), "_",
                      counter.fetch_add(1), ".db");
}

// Options for the database file at `path`.
SqliteOptions At(const std::string& path) {
  SqliteOptions options;
  options.path = path;
  return options;
}

// How long a write waits for another connection's write lock before it
// fails (the backend's busy timeout).
constexpr absl::Duration kBusyTimeout = absl::Seconds(5);

// Holds the write lock of the database file at `path` (a connection of its
// own in BEGIN IMMEDIATE) until the returned object is destroyed.
absl::StatusOr<std::shared_ptr<void>> HoldWriteLock(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE,
                                 /*zVfs=*/nullptr);
  std::shared_ptr<sqlite3> held(db, [](sqlite3* db) {
    if (db == nullptr) return;
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close_v2(db);
  });
  if (rc != SQLITE_OK) {
    return absl::InternalError(
        absl::StrCat("cannot open ", path, ": ", sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db, absl::ToInt64Milliseconds(kBusyTimeout));
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    return absl::InternalError(
        absl::StrCat("BEGIN IMMEDIATE: ", sqlite3_errmsg(db)));
  }
  return std::shared_ptr<void>(std::move(held));
}

// A plain SQLite connection to look at the file behind the store's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }

  void Exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << (err != nullptr ? err : "") << " in " << sql;
    sqlite3_free(err);
  }

  // The first column of the first row of `sql`, as an integer.
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_);
    int64_t v = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
  }

  std::string Text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK);
    std::string v;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(stmt, 0);
      if (t != nullptr) v = reinterpret_cast<const char*>(t);
    }
    sqlite3_finalize(stmt);
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<SessionStore> Open(StoreOptions options = {}) {
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenSqliteStore(At(path_), &clock_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  ManualClock clock_;
  const std::string path_ = NewDbPath();
};

TEST_F(SqliteStoreTest, BackendNameAndPing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->backend_name(), "sqlite");
  EXPECT_TRUE(store->Ping().ok());
}

TEST_F(SqliteStoreTest, UsesWalMode) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDb raw(path_);
  EXPECT_EQ(raw.Text("PRAGMA journal_mode"), "wal");
}

TEST_F(SqliteStoreTest, ReopenKeepsSessions) {
  std::vector<SessionRecord> created;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<SessionRecord> r =
          store->Create(NumberedRecord(i, "alice"), {});
      ASSERT_TRUE(r.ok()) << r.status();
      created.push_back(*r);
      clock_.Advance(absl::Seconds(1));
    }
    SessionUpdate update;
    update.sealed_payload = "changed";
    absl::StatusOr<SessionRecord> updated =
        store->Update(kTenant, created[2].token_hash, update);
    ASSERT_TRUE(updated.ok()) << updated.status();
    created[2] = *updated;
    ASSERT_EQ(*store->DeleteById(kTenant, created[4].id), 1);
    created.pop_back();
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (const SessionRecord& want : created) {
    absl::StatusOr<SessionRecord> got = store->Load(kTenant, want.token_hash);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want);
  }
  EXPECT_TRUE(absl::IsNotFound(
      store->Load(kTenant, NumberedRecord(4).token_hash).status()));
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kTenant, "alice", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->sessions.size(), 4u);
  EXPECT_FALSE(page->next.has_value());
}

TEST_F(SqliteStoreTest, RecordsSchemaVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                    " AND name IN ('sessions_by_user', 'sessions_by_expiry',"
                    " 'sessions_by_tenant_user', 'sessions_by_tenant_expiry')"),
            4);
  EXPECT_EQ(raw.Text("SELECT dflt_value FROM pragma_table_info('sessions')"
                     " WHERE name = 'tenant'"),
            "'default'");
}

TEST_F(SqliteStoreTest, ReopeningUpToDateDatabaseWritesNothing) {
  { ASSERT_NE(Open(), nullptr); }
  RawDb raw(path_);
  const std::string schema_before =
      raw.Text("SELECT group_concat(sql, ';') FROM sqlite_schema");
  // data_version changes when another connection commits to the file.
  const int64_t data_version = raw.Int("PRAGMA data_version");
  // Hold the write lock: a reopen that tried to migrate would have to wait
  // for it (and time out).
  raw.Exec("BEGIN IMMEDIATE");
  const absl::Time start = absl::Now();
  auto store = Open();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(
      store->Load(kTenant, NumberedRecord(1).token_hash).status().code() ==
      absl::StatusCode::kNotFound);
  raw.Exec("COMMIT");
  EXPECT_EQ(raw.Int("PRAGMA data_version"), data_version);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.Text("SELECT group_concat(sql, ';') FROM sqlite_schema"),
            schema_before);
}

TEST_F(SqliteStoreTest, NewerSchemaIsFailedPrecondition) {
  { ASSERT_NE(Open(), nullptr); }
  {
    RawDb raw(path_);
    raw.Exec(absl::StrCat("PRAGMA user_version = ", kSqliteSchemaVersion + 1));
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenSqliteStore(At(path_), &clock_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
  EXPECT_THAT(
      store.status().message(),
      HasSubstr(absl::StrCat("schema version ", kSqliteSchemaVersion + 1)));
}

TEST_F(SqliteStoreTest, NegativeSchemaVersionIsFailedPrecondition) {
  {
    RawDb raw(path_);
    raw.Exec("PRAGMA user_version = -3");
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenSqliteStore(At(path_), &clock_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(),
              HasSubstr(absl::StrCat("sqlite: database \"", path_,
                                     "\" has an invalid schema version -3")));
}

TEST_F(SqliteStoreTest, DefaultsArePathBesideTheKeyAndBatchesOf1000) {
  EXPECT_EQ(SqliteOptions().path, "./sessiond.db");
  EXPECT_EQ(SqliteOptions().prune_batch_size, 1000);
}

TEST_F(SqliteStoreTest, BadPathIsAnError) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store = OpenSqliteStore(
      At(TempDir() + "/no/such/directory/sessions.db"), &clock_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(store.status().message(), HasSubstr("cannot open"));
}

TEST_F(SqliteStoreTest, NonDatabaseFileIsAnError) {
  {
    std::ofstream out(path_);
    out << std::string(4096, 'x');
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenSqliteStore(At(path_), &clock_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInternal);
}

// A database file damaged on disk (its pages overwritten, as by a failing
// disk): opening it, or each call on it, is an error, never a crash or a
// record made of the damaged bytes.
TEST_F(SqliteStoreTest, DamagedPagesAreErrorsNotCrashes) {
  constexpr int kSessions = 300;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < kSessions; ++i) {
      SessionRecord record = NumberedRecord(i, "alice");
      record.sealed_payload.append(500, 'p');
      ASSERT_TRUE(store->Create(record, {}).ok());
    }
  }  // The last connection checkpoints the WAL into the file.
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(0, std::ios::end);
    const int64_t size = file.tellg();
    ASSERT_GT(size, 20 * 4096);
    // Every page but the first (the header and the schema) gets a pattern
    // over its middle: cell pointers and payloads alike.
    for (int64_t page = 4096; page + 4096 <= size; page += 4096) {
      file.seekp(page + 8);
      const std::string junk(2000, static_cast<char>(0xA5 ^ (page >> 12)));
      file.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    ASSERT_TRUE(file.good());
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenSqliteStore(At(path_), &clock_, {});
  if (!store.ok()) {
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInternal)
        << store.status();
    return;
  }
  int errors = 0;
  for (int i = 0; i < kSessions; ++i) {
    absl::StatusOr<SessionRecord> got =
        (*store)->Load(kTenant, NumberedTokenHash(i));
    if (got.ok()) {
      // A row that still reads is the row that was written.
      EXPECT_EQ(got->id, NumberedRecord(i).id);
      EXPECT_EQ(got->token_hash, NumberedTokenHash(i));
      continue;
    }
    ASSERT_TRUE(absl::IsInternal(got.status()) ||
                absl::IsNotFound(got.status()))
        << got.status();
    if (absl::IsInternal(got.status())) {
      ++errors;
      EXPECT_THAT(got.status().message(), HasSubstr("malformed"));
    }
  }
  absl::StatusOr<SessionPage> page =
      (*store)->ListForUser(kTenant, "alice", 1000, {});
  if (!page.ok()) {
    EXPECT_TRUE(absl::IsInternal(page.status())) << page.status();
    ++errors;
  }
  EXPECT_GT(errors, 0) << "the damage went unnoticed";
}

TEST_F(SqliteStoreTest, RejectsInMemoryAndBadArguments) {
  EXPECT_EQ(OpenSqliteStore(At(":memory:"), &clock_, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenSqliteStore(At(""), &clock_, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenSqliteStore(At("file:" + path_), &clock_, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenSqliteStore(At(path_), nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  StoreOptions negative;
  negative.live_count_max_age = -absl::Seconds(1);
  EXPECT_EQ(OpenSqliteStore(At(path_), &clock_, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (const int batch : {0, -1}) {
    SqliteOptions o = At(path_);
    o.prune_batch_size = batch;
    const absl::Status status = OpenSqliteStore(o, &clock_, {}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << batch;
    EXPECT_EQ(status.message(), "sqlite: prune_batch_size must be positive");
  }
}

// Each batch of prune_batch_size is a write transaction of its own: a batch
// that fails (here a trigger aborts the 51st delete) leaves the batches
// before it committed.
TEST_F(SqliteStoreTest, PruneCommitsEachBatchOfTheConfiguredSize) {
  SqliteOptions o = At(path_);
  o.prune_batch_size = 7;
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenSqliteStore(o, &clock_, {});
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int kExpired = 100;
  for (int i = 0; i < kExpired; ++i) {
    ASSERT_TRUE(
        (*store)->Create(NumberedRecord(i, "u", absl::Minutes(1)), {}).ok());
  }
  clock_.Advance(absl::Minutes(2));
  RawDb raw(path_);
  raw.Exec(
      "CREATE TABLE pruned (n INTEGER); INSERT INTO pruned VALUES (0);"
      "CREATE TRIGGER stop_after_50 AFTER DELETE ON sessions BEGIN"
      " UPDATE pruned SET n = n + 1;"
      " SELECT RAISE(ABORT, 'stop') WHERE (SELECT n FROM pruned) > 50; END");
  EXPECT_FALSE((*store)->PruneAllExpired().ok());
  // Seven batches of 7 committed; the eighth rolled back.
  EXPECT_EQ(raw.Int("SELECT n FROM pruned"), 49);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), kExpired - 49);
  raw.Exec("DROP TRIGGER stop_after_50");
  absl::StatusOr<int64_t> pruned = (*store)->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, kExpired - 49);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 0);
}

TEST_F(SqliteStoreTest, ExpiredRowsDoNotBlockNewOnes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "", absl::Hours(1)), {}).ok());
  clock_.Advance(absl::Minutes(2));
  // Same id and token hash as the expired session 1, unpruned.
  EXPECT_TRUE(store->Create(NumberedRecord(1), {}).ok());
  // Cycling onto the expired session 2's token hash.
  EXPECT_TRUE(store
                  ->Cycle(kTenant, NumberedRecord(3).token_hash,
                          MakeCycle(NumberedTokenHash(2)), {})
                  .ok());
  // But a live one does block.
  EXPECT_EQ(store->Create(NumberedRecord(1), {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store
                ->Cycle(kTenant, NumberedRecord(1).token_hash,
                        MakeCycle(NumberedTokenHash(2)), {})
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
}

// A delete removes what it names, expired or not, and counts the live ones.
TEST_F(SqliteStoreTest, DeletesRemoveExpiredRowsButCountOnlyLiveOnes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store->Create(NumberedRecord(1, "alice", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(
      store->Create(NumberedRecord(2, "alice", absl::Hours(1)), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(4, "", absl::Minutes(1)), {}).ok());
  clock_.Advance(absl::Minutes(2));
  RawDb raw(path_);
  EXPECT_EQ(*store->DeleteForUser(kTenant, "alice", ""), 1);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions WHERE user_id = 'alice'"),
            0);
  EXPECT_EQ(*store->DeleteById(kTenant, "id-3"), 0);
  EXPECT_EQ(*store->DeleteByTokenHash(kTenant, NumberedRecord(4).token_hash),
            0);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 0);
}

// Under WAL, reads neither wait for nor fail on another connection's write
// lock (LockWaitTest covers the writes that do).
TEST_F(SqliteStoreTest, ReadsGoOnWhileAnotherConnectionHoldsTheWriteLock) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SessionRecord> created =
      store->Create(NumberedRecord(1, "alice"), {});
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<std::shared_ptr<void>> lock = HoldWriteLock(path_);
  ASSERT_TRUE(lock.ok()) << lock.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kTenant, created->token_hash);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, *created);
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kTenant, "alice", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->sessions.size(), 1u);
  EXPECT_TRUE(store->Ping().ok());
  // Well under the busy timeout: none of them waited for the lock.
  EXPECT_LT(absl::Now() - start, kBusyTimeout / 2);
}

TEST_F(SqliteStoreTest, PerUserCapEvictsLeastRecentlyActive) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  TenantLimits limits;
  limits.max_sessions_per_user = 2;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store->Create(NumberedRecord(i, "bob"), limits).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_TRUE(absl::IsNotFound(
      store->Load(kTenant, NumberedRecord(0).token_hash).status()));
  EXPECT_TRUE(store->Load(kTenant, NumberedRecord(1).token_hash).ok());
  EXPECT_TRUE(store->Load(kTenant, NumberedRecord(2).token_hash).ok());
  // A login (Cycle to bob) of an anonymous session keeps it and evicts the
  // oldest other.
  ASSERT_TRUE(store->Create(NumberedRecord(3), limits).ok());
  ASSERT_TRUE(store
                  ->Cycle(kTenant, NumberedTokenHash(3),
                          MakeCycle(NumberedTokenHash(4), "bob"), limits)
                  .ok());
  EXPECT_TRUE(absl::IsNotFound(
      store->Load(kTenant, NumberedRecord(1).token_hash).status()));
  EXPECT_TRUE(store->Load(kTenant, NumberedRecord(2).token_hash).ok());
  EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(4)).ok());
}

// ---------------------------------------------------------------------------
// Schema migrations of a database with sessions in it.

// A database file as sessiond before tenants (schema version 1) left it,
// with sessions stored by its statements.
void MakeVersion1Database(const std::string& path) {
  RawDb raw(path);
  raw.Exec("PRAGMA journal_mode=WAL");
  raw.Exec(absl::StrCat("BEGIN IMMEDIATE;", sql::Migrations()[0].sqlite,
                        "PRAGMA user_version = 1; COMMIT"));
}

// Inserts `r`, live at `now` (created and last active then), with the
// columns and the statement of schema version 1: no tenant.
void InsertVersion1(RawDb& raw, const SessionRecord& r, absl::Time now) {
  std::string hash_hex;
  for (unsigned char c : r.token_hash) {
    absl::StrAppend(&hash_hex, absl::Hex(c, absl::kZeroPad2));
  }
  std::string payload_hex;
  for (unsigned char c : r.sealed_payload) {
    absl::StrAppend(&payload_hex, absl::Hex(c, absl::kZeroPad2));
  }
  const int64_t us = absl::ToUnixMicros(now);
  raw.Exec(absl::StrCat(
      "INSERT INTO sessions (id, token_hash, user_id, sealed, created_at,"
      " last_active_at, idle_timeout_us, absolute_lifetime_us, version,"
      " expires_at) VALUES ('",
      r.id, "', x'", hash_hex, "', '", r.user_id, "', x'", payload_hex, "', ",
      us, ", ", us, ", ", absl::ToInt64Microseconds(r.idle_timeout), ", ",
      absl::ToInt64Microseconds(r.absolute_lifetime), ", 1, ",
      us + absl::ToInt64Microseconds(
               std::min(r.idle_timeout, r.absolute_lifetime)),
      ")"));
}

// What NumberedRecord(i, user) is once stored by version 1 at `now`.
SessionRecord StoredVersion1(int i, const std::string& user, absl::Time now) {
  SessionRecord r = NumberedRecord(i, user);
  r.created_at = r.last_active_at = TruncateToMicros(now);
  r.version = 1;
  return r;
}

TEST_F(SqliteStoreTest, MigratesAVersion1DatabaseKeepingEverySession) {
  MakeVersion1Database(path_);
  const absl::Time now = TruncateToMicros(clock_.Now());
  std::vector<SessionRecord> want;
  {
    RawDb raw(path_);
    for (int i = 1; i <= 20; ++i) {
      const std::string user = i % 3 == 0 ? "" : (i % 2 == 0 ? "bob" : "al");
      SessionRecord r = StoredVersion1(i, user, now);
      InsertVersion1(raw, r, now);
      want.push_back(r);
    }
  }
  clock_.Advance(absl::Seconds(1));
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSqliteSchemaVersion);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 20);
  // Every session is in the default tenant, as it was.
  for (const SessionRecord& r : want) {
    SCOPED_TRACE(r.id);
    absl::StatusOr<SessionRecord> got = store->Load(kTenant, r.token_hash);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, r);
    EXPECT_TRUE(absl::IsNotFound(store->Load("other", r.token_hash).status()));
  }
  absl::StatusOr<SessionPage> bob = store->ListForUser(kTenant, "bob", 100, {});
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(bob->sessions.size(), 7u);
  EXPECT_EQ(*store->CountLive(kTenant), 20);
  EXPECT_EQ(*store->CountLive("other"), 0);
  // And they take writes as any other.
  absl::StatusOr<SessionRecord> cycled =
      store->Cycle(kTenant, want[0].token_hash,
                   MakeCycle(NumberedTokenHash(100), "carol"), {});
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(cycled->version, 2);
}

// During an upgrade a process of before tenants may still write to the
// file (it prepared its statements before the migration; SQLite prepares
// them again on the new schema): its sessions join the default tenant.
TEST_F(SqliteStoreTest,
       SessionsAnOldProcessInsertsAfterTheMigrationAreDefault) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const absl::Time now = TruncateToMicros(clock_.Now());
  {
    RawDb raw(path_);
    InsertVersion1(raw, StoredVersion1(1, "alice", now), now);
  }
  absl::StatusOr<SessionRecord> got =
      store->Load(kTenant, NumberedTokenHash(1));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, StoredVersion1(1, "alice", now));
}

TEST_F(SqliteStoreTest, AFailedMigrationLeavesTheVersion1DatabaseAsItWas) {
  MakeVersion1Database(path_);
  const absl::Time now = TruncateToMicros(clock_.Now());
  {
    RawDb raw(path_);
    InsertVersion1(raw, StoredVersion1(1, "alice", now), now);
    // Version 3 cannot create its index over this one.
    raw.Exec("CREATE INDEX sessions_by_tenant_expiry ON sessions (expires_at)");
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> failed =
      OpenSqliteStore(At(path_), &clock_, {});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal)
      << failed.status();
  {
    RawDb raw(path_);
    EXPECT_EQ(raw.Int("PRAGMA user_version"), 1);
    EXPECT_EQ(raw.Int("SELECT count(*) FROM pragma_table_info('sessions')"
                      " WHERE name = 'tenant'"),
              0);
    raw.Exec("DROP INDEX sessions_by_tenant_expiry");
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(1)).ok());
}

// The per-tenant statements are ranges of the per-tenant indexes, not
// scans of the table or of another tenant's sessions.
TEST_F(SqliteStoreTest, TenantStatementsUseTheTenantIndexes) {
  { ASSERT_NE(Open(), nullptr); }
  RawDb raw(path_);
  auto plan = [&](sql::SqlStatement statement) {
    const std::string text =
        sql::StatementText(statement, sql::SqlDialect::kSqlite);
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + text).c_str(), -1,
                                 &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string details;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      absl::StrAppend(
          &details, reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3)),
          "; ");
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return details;
  };
  for (sql::SqlStatement s :
       {sql::SqlStatement::kListFirst, sql::SqlStatement::kListAfter,
        sql::SqlStatement::kEvictOverCap, sql::SqlStatement::kDeleteForUser}) {
    SCOPED_TRACE(sql::StatementName(s));
    const std::string details = plan(s);
    EXPECT_THAT(details, HasSubstr("INDEX sessions_by_tenant_user (tenant=? "
                                   "AND user_id=?"));
    EXPECT_THAT(details, Not(HasSubstr("TEMP B-TREE")));
  }
  for (sql::SqlStatement s :
       {sql::SqlStatement::kCountLive, sql::SqlStatement::kPruneTenantBatch}) {
    SCOPED_TRACE(sql::StatementName(s));
    EXPECT_THAT(plan(s), HasSubstr("INDEX sessions_by_tenant_expiry (tenant=? "
                                   "AND expires_at"));
  }
  EXPECT_THAT(plan(sql::SqlStatement::kCountLive), HasSubstr("COVERING INDEX"));
  EXPECT_THAT(plan(sql::SqlStatement::kPruneBatch),
              HasSubstr("INDEX sessions_by_expiry (expires_at"));
}

// Ids and token hashes are unique across tenants: a live session of one
// tenant blocks them for another (ALREADY_EXISTS), an expired one does not,
// and it goes when the other tenant takes them. Users are per tenant.
TEST_F(SqliteStoreTest, TenantsShareTheKeysButNotTheSessions) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SessionRecord a = NumberedRecord(1, "alice", absl::Minutes(1));
  a.tenant = "a";
  ASSERT_TRUE(store->Create(a, {}).ok());
  SessionRecord b = NumberedRecord(1, "alice");
  b.tenant = "b";
  EXPECT_EQ(store->Create(b, {}).status().code(),
            absl::StatusCode::kAlreadyExists);
  clock_.Advance(absl::Minutes(2));  // a's session expires, unpruned
  absl::StatusOr<SessionRecord> created = store->Create(b, {});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->tenant, "b");
  RawDb raw(path_);
  EXPECT_EQ(raw.Text("SELECT group_concat(tenant) FROM sessions"), "b");
  EXPECT_TRUE(absl::IsNotFound(store->Load("a", b.token_hash).status()));
  EXPECT_EQ(*store->DeleteForUser("a", "alice", ""), 0);
  EXPECT_EQ(*store->DeleteById("a", b.id), 0);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 1);
  // The cap of one tenant's alice leaves the other's alone.
  TenantLimits one;
  one.max_sessions_per_user = 1;
  SessionRecord a2 = NumberedRecord(2, "alice");
  a2.tenant = "a";
  ASSERT_TRUE(store->Create(a2, one).ok());
  EXPECT_TRUE(store->Load("b", b.token_hash).ok());
  EXPECT_EQ(*store->PruneExpired("a"), 0);
  EXPECT_EQ(*store->CountLive("a"), 1);
  EXPECT_EQ(*store->CountLive("b"), 1);
}

// The shared-backend suites' hooks: each test on a fresh database file,
// which its stores open as separate processes would.
SharedBackend SqliteBackendHooks() {
  // The database file of the running test.
  static std::string* const path = new std::string;
  constexpr int kPruneBatchSize = 50;
  SharedBackend b;
  b.name = "Sqlite";
  // A write waiting for the lock fails after the busy timeout; slack for a
  // loaded machine.
  b.bound = kBusyTimeout + absl::Seconds(2);
  b.prune_batch_size = kPruneBatchSize;
  b.reset = [] {
    *path = NewDbPath();
    return absl::OkStatus();
  };
  b.open = [](const Clock* clock, const StoreOptions& options) {
    SqliteOptions o = At(*path);
    o.prune_batch_size = kPruneBatchSize;
    return OpenSqliteStore(o, clock, options);
  };
  b.hold_lock = [](absl::string_view) { return HoldWriteLock(*path); };
  b.stored_expires_at = [](const SessionRecord& r) -> absl::StatusOr<int64_t> {
    RawDb raw(*path);
    return raw.Int(absl::StrCat("SELECT expires_at FROM sessions WHERE id = '",
                                r.id, "'"));
  };
  // A write waiting for SQLite's lock cannot be seen from outside; a call
  // gets there well within this.
  b.await_lock_waiter = [] {
    absl::SleepFor(absl::Milliseconds(100));
    return true;
  };
  return b;
}

}  // namespace

// The shared-backend suites. SQLite has no server, so no OutageTest.
INSTANTIATE_TEST_SUITE_P(Sqlite, SharedStoreTest,
                         ::testing::Values(SqliteBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Sqlite, StoredExpiryTest,
                         ::testing::Values(SqliteBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Sqlite, LockWaitTest,
                         ::testing::Values(SqliteBackendHooks()),
                         SharedBackendName());

// The conformance suite, each test on a fresh database file.
INSTANTIATE_TEST_SUITE_P(
    Sqlite, SessionStoreConformanceTest,
    testing::Values(StoreFactory{
        "Sqlite",
        [](const Clock* clock, const StoreOptions& options)
            -> absl::StatusOr<std::unique_ptr<SessionStore>> {
          return OpenSqliteStore(At(NewDbPath()), clock, options);
        }}),
    StoreFactoryName());

}  // namespace sessiond::storage
