// Tests of the SQLite backend: the shared conformance suite, plus what only
// SQLite has (files, schema versions, batching, locking).
#include "storage/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "tests/storage/conformance.h"

namespace sessiond::storage {
namespace {

using ::testing::HasSubstr;

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
          store->Create(NumberedRecord(i, "alice"));
      ASSERT_TRUE(r.ok()) << r.status();
      created.push_back(*r);
      clock_.Advance(absl::Seconds(1));
    }
    SessionUpdate update;
    update.user_id = "alice";
    update.sealed_payload = "changed";
    absl::StatusOr<SessionRecord> updated =
        store->Update(created[2].token_hash, update);
    ASSERT_TRUE(updated.ok()) << updated.status();
    created[2] = *updated;
    ASSERT_EQ(*store->DeleteById(created[4].id), 1);
    created.pop_back();
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (const SessionRecord& want : created) {
    absl::StatusOr<SessionRecord> got = store->Load(want.token_hash);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want);
  }
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(NumberedRecord(4).token_hash).status()));
  absl::StatusOr<SessionPage> page = store->ListForUser("alice", 10, {});
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
                    " AND name IN ('sessions_by_user', 'sessions_by_expiry')"),
            2);
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
  EXPECT_TRUE(store->Load(NumberedRecord(1).token_hash).status().code() ==
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

TEST_F(SqliteStoreTest, DefaultPathIsBesideTheKey) {
  EXPECT_EQ(SqliteOptions().path, "./sessiond.db");
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
  negative.max_sessions_per_user = -1;
  EXPECT_EQ(OpenSqliteStore(At(path_), &clock_, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, PruneDeletesInBatchesAndCountsExactly) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kExpired = 2500;
  for (int i = 0; i < kExpired; ++i) {
    ASSERT_TRUE(store->Create(NumberedRecord(i, "u", absl::Minutes(1))).ok());
  }
  for (int i = kExpired; i < kExpired + 3; ++i) {
    ASSERT_TRUE(store->Create(NumberedRecord(i, "u", absl::Hours(1))).ok());
  }
  clock_.Advance(absl::Minutes(2));
  absl::StatusOr<int64_t> pruned = store->PruneExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, kExpired);
  EXPECT_EQ(*store->PruneExpired(), 0);
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 3);
  for (int i = kExpired; i < kExpired + 3; ++i) {
    EXPECT_TRUE(store->Load(NumberedRecord(i).token_hash).ok());
  }
}

TEST_F(SqliteStoreTest, StoredExpiryFollowsEveryWrite) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDb raw(path_);
  auto stored_expiry = [&raw](const SessionRecord& r) {
    return raw.Int(absl::StrCat("SELECT expires_at FROM sessions WHERE id = '",
                                r.id, "'"));
  };
  absl::StatusOr<SessionRecord> r = store->Create(
      NumberedRecord(1, "", absl::Minutes(10), absl::Minutes(25)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(stored_expiry(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(5) + absl::Nanoseconds(1500));
  r = store->LoadAndTouch(r->token_hash, absl::Minutes(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->last_active_at, TruncateToMicros(clock_.Now()));
  EXPECT_EQ(stored_expiry(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(9));
  SessionUpdate update;
  update.sealed_payload = "x";
  update.idle_timeout = absl::Minutes(20);
  r = store->Update(r->token_hash, update);
  ASSERT_TRUE(r.ok()) << r.status();
  // Now capped by the absolute lifetime.
  EXPECT_EQ(r->ExpiresAt(), r->created_at + absl::Minutes(25));
  EXPECT_EQ(stored_expiry(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(1));
  r = store->Cycle(r->token_hash, NumberedRecord(2).token_hash, std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(stored_expiry(*r), absl::ToUnixMicros(r->ExpiresAt()));
}

TEST_F(SqliteStoreTest, ExpiredRowsDoNotBlockNewOnes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "", absl::Minutes(1))).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "", absl::Minutes(1))).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "", absl::Hours(1))).ok());
  clock_.Advance(absl::Minutes(2));
  // Same id and token hash as the expired session 1, unpruned.
  EXPECT_TRUE(store->Create(NumberedRecord(1)).ok());
  // Cycling onto the expired session 2's token hash.
  EXPECT_TRUE(store
                  ->Cycle(NumberedRecord(3).token_hash,
                          NumberedRecord(2).token_hash, {})
                  .ok());
  // But a live one does block.
  EXPECT_EQ(store->Create(NumberedRecord(1)).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store
                ->Cycle(NumberedRecord(1).token_hash,
                        NumberedRecord(2).token_hash, {})
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
}

// A delete removes what it names, expired or not, and counts the live ones.
TEST_F(SqliteStoreTest, DeletesRemoveExpiredRowsButCountOnlyLiveOnes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice", absl::Minutes(1))).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "alice", absl::Hours(1))).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "", absl::Minutes(1))).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(4, "", absl::Minutes(1))).ok());
  clock_.Advance(absl::Minutes(2));
  RawDb raw(path_);
  EXPECT_EQ(*store->DeleteForUser("alice", ""), 1);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions WHERE user_id = 'alice'"),
            0);
  EXPECT_EQ(*store->DeleteById("id-3"), 0);
  EXPECT_EQ(*store->DeleteByTokenHash(NumberedRecord(4).token_hash), 0);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"), 0);
}

TEST_F(SqliteStoreTest, LockHeldTooLongIsUnavailable) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1)).ok());
  RawDb raw(path_);
  raw.Exec("BEGIN IMMEDIATE");
  absl::StatusOr<SessionRecord> r = store->Create(NumberedRecord(2));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  // Reads go on under WAL while another connection holds the write lock.
  EXPECT_TRUE(store->Load(NumberedRecord(1).token_hash).ok());
  raw.Exec("ROLLBACK");
  // Nothing was written, and the store works again.
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(NumberedRecord(2).token_hash).status()));
  EXPECT_TRUE(store->Create(NumberedRecord(2)).ok());
}

// Two stores on one file stand in for two processes: their writes meet at
// SQLite's lock (busy timeout), not at the in-process mutex.
TEST_F(SqliteStoreTest, TwoStoresOnOneFileWriteConcurrently) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Create(NumberedRecord(0)).ok());
  const std::string hash = NumberedRecord(0).token_hash;
  constexpr int kThreads = 8;
  constexpr int kIncrementsPerThread = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    SessionStore* store = (t % 2 == 0 ? a : b).get();
    threads.emplace_back([store, &hash, &failures, t] {
      for (int i = 0; i < kIncrementsPerThread; ++i) {
        // A create and a compare-and-swap increment, retried on ABORTED.
        if (!store->Create(NumberedRecord(1000 + t * 1000 + i)).ok())
          ++failures;
        while (true) {
          absl::StatusOr<SessionRecord> cur = store->Load(hash);
          if (!cur.ok()) {
            ++failures;
            break;
          }
          SessionUpdate update;
          update.sealed_payload = absl::StrCat(t, ":", i);
          update.expected_version = cur->version;
          absl::StatusOr<SessionRecord> next = store->Update(hash, update);
          if (next.ok()) break;
          if (!absl::IsAborted(next.status())) {
            ++failures;
            ADD_FAILURE() << next.status();
            break;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  absl::StatusOr<SessionRecord> final_record = a->Load(hash);
  ASSERT_TRUE(final_record.ok());
  EXPECT_EQ(final_record->version, 1 + kThreads * kIncrementsPerThread);
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sessions"),
            1 + kThreads * kIncrementsPerThread);
}

TEST_F(SqliteStoreTest, PerUserCapEvictsLeastRecentlyActive) {
  StoreOptions options;
  options.max_sessions_per_user = 2;
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store->Create(NumberedRecord(i, "bob")).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(NumberedRecord(0).token_hash).status()));
  EXPECT_TRUE(store->Load(NumberedRecord(1).token_hash).ok());
  EXPECT_TRUE(store->Load(NumberedRecord(2).token_hash).ok());
  // Moving an anonymous session to bob keeps it and evicts the oldest other.
  ASSERT_TRUE(store->Create(NumberedRecord(3)).ok());
  SessionUpdate update;
  update.user_id = "bob";
  ASSERT_TRUE(store->Update(NumberedRecord(3).token_hash, update).ok());
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(NumberedRecord(1).token_hash).status()));
  EXPECT_TRUE(store->Load(NumberedRecord(2).token_hash).ok());
  EXPECT_TRUE(store->Load(NumberedRecord(3).token_hash).ok());
}

// A ManualClock that counts how often it is read.
class CountingClock : public Clock {
 public:
  absl::Time Now() const override {
    reads_.fetch_add(1);
    return manual_.Now();
  }
  int reads() const { return reads_.load(); }
  ManualClock& manual() { return manual_; }

 private:
  ManualClock manual_;
  mutable std::atomic<int> reads_{0};
};

// A write that has to wait for the write lock reads the time only once it
// holds it. Here the session is live when the write is called and expires
// while it waits (another connection holds the lock); the write must then
// see it expired, not commit with the time from before the wait (which
// would revive it, or count it as a live session removed).
TEST(SqliteStoreTimeTest, WriteThatWaitsForTheLockReadsTheTimeAfterwards) {
  struct Case {
    const char* name;
    std::function<std::string(SessionStore&, const std::string& hash)> call;
    std::string want;
  };
  auto code = [](const absl::Status& s) {
    return absl::StatusCodeToString(s.code());
  };
  const std::vector<Case> cases = {
      {"Update",
       [&](SessionStore& store, const std::string& hash) {
         SessionUpdate update;
         update.sealed_payload = "late";
         return code(store.Update(hash, update).status());
       },
       "NOT_FOUND"},
      {"LoadAndTouch",
       [&](SessionStore& store, const std::string& hash) {
         return code(store.LoadAndTouch(hash, absl::ZeroDuration()).status());
       },
       "NOT_FOUND"},
      {"Cycle",
       [&](SessionStore& store, const std::string& hash) {
         return code(store.Cycle(hash, NumberedRecord(999).token_hash, "alice")
                         .status());
       },
       "NOT_FOUND"},
      {"DeleteByTokenHash",
       [](SessionStore& store, const std::string& hash) {
         absl::StatusOr<int64_t> n = store.DeleteByTokenHash(hash);
         return n.ok() ? absl::StrCat("deleted ", *n) : n.status().ToString();
       },
       "deleted 0"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.name);
    CountingClock clock;
    const std::string path = NewDbPath();
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenSqliteStore(At(path), &clock, {});
    ASSERT_TRUE(store.ok()) << store.status();
    const SessionRecord in =
        NumberedRecord(static_cast<int>(i), "alice", absl::Minutes(1));
    absl::StatusOr<SessionRecord> created = (*store)->Create(in);
    ASSERT_TRUE(created.ok()) << created.status();
    clock.manual().Set(created->ExpiresAt() - absl::Milliseconds(1));

    RawDb raw(path);
    raw.Exec("BEGIN IMMEDIATE");
    const int reads_before = clock.reads();
    std::string got;
    std::thread writer([&] { got = c.call(**store, in.token_hash); });
    // A store with the defect reads the time at once and then waits; give
    // it that chance. A correct one reads nothing until it has the lock,
    // so for it this only costs the timeout.
    const absl::Time deadline = absl::Now() + absl::Milliseconds(300);
    while (clock.reads() == reads_before && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    absl::SleepFor(absl::Milliseconds(20));  // into the wait for the lock
    clock.manual().Advance(absl::Milliseconds(2));  // past the expiry
    raw.Exec("ROLLBACK");
    writer.join();
    EXPECT_EQ(got, c.want);
    EXPECT_TRUE(absl::IsNotFound((*store)->Load(in.token_hash).status()));
    absl::StatusOr<SessionPage> page = (*store)->ListForUser("alice", 10, {});
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_TRUE(page->sessions.empty());
  }
}

}  // namespace

// The shared suite, each test on a fresh database file.
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
