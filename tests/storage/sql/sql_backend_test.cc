// Tests of SqlBackend and SqlTransaction (storage/sql) over a scripted
// executor: which steps and statements each call runs, when it reads the
// time, and the rules of their own (the eviction re-check loop, a rewrite
// that finds its row changed, counting live rows removed, prune batches).
// The conformance suite runs the same code on real databases
// (tests/storage/sqlite, tests/storage/postgres).
#include "storage/sql/sql_backend.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/sql/executor.h"
#include "storage/sql/rows.h"
#include "storage/sql/statements.h"
#include "tests/storage/sql/fake_row.h"

namespace sessiond::storage::sql {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Rows = std::vector<std::vector<FakeValue>>;

// The tenant of the tests' sessions.
constexpr char kTenant[] = "acme";

// A distinct 32-byte token hash for each n.
std::string TokenHash(int n) {
  std::string h(32, '\0');
  for (int b = 0; b < 4; ++b) h[b] = static_cast<char>(n >> (8 * b));
  h[31] = '\xff';
  return h;
}

// Session n of kTenant as Create takes it: id "id-<n>".
SessionRecord Fresh(int n, const std::string& user = "") {
  SessionRecord r;
  r.tenant = kTenant;
  r.id = "id-" + std::to_string(n);
  r.token_hash = TokenHash(n);
  r.user_id = user;
  r.sealed_payload = "sealed-" + std::to_string(n);
  r.idle_timeout = absl::Minutes(30);
  r.absolute_lifetime = absl::Hours(24);
  return r;
}

SessionCycle CycleTo(int n, std::optional<std::string> user = std::nullopt) {
  SessionCycle c;
  c.new_token_hash = TokenHash(n);
  c.user_id = std::move(user);
  return c;
}

// What happened, in order: steps ("read", "transact", "write alone",
// "commit", "rollback"), statements by name, and "now" for each clock read.
using Log = std::vector<std::string>;

// A parameter as bound, kept beyond the call that bound it.
struct BoundParam {
  SqlType type;
  int64_t number;
  std::string bytes;
};

// Answers each statement as `script` says (by default: no rows, 1 changed).
struct Answer {
  Rows rows;
  int64_t changed = 1;
  absl::Status status;
};

class ScriptedExecutor final : public SqlExecutor {
 public:
  ScriptedExecutor(SqlDialect dialect, Log& log)
      : dialect_(dialect), log_(log) {}

  SqlDialect dialect() const override { return dialect_; }

  absl::StatusOr<int64_t> Execute(
      SqlStatement statement, absl::Span<const SqlParam> params,
      absl::FunctionRef<void(const SqlRow&)> on_row) override {
    log_.push_back(std::string(StatementName(statement)));
    std::vector<BoundParam>& bound = last_params_[statement];
    bound.clear();
    for (const SqlParam& p : params) {
      bound.push_back({p.type, p.number, std::string(p.bytes)});
    }
    Answer answer;
    if (script_) answer = script_(statement);
    if (!answer.status.ok()) return answer.status;
    for (const std::vector<FakeValue>& row : answer.rows) on_row(FakeRow(row));
    return answer.changed;
  }

  std::function<Answer(SqlStatement)> script_;
  std::map<SqlStatement, std::vector<BoundParam>> last_params_;

 private:
  const SqlDialect dialect_;
  Log& log_;
};

// A clock that logs each read.
class LoggingClock final : public Clock {
 public:
  explicit LoggingClock(Log& log) : log_(log) {}
  absl::Time Now() const override {
    log_.push_back("now");
    return manual_.Now();
  }
  ManualClock manual_;

 private:
  Log& log_;
};

// Every step runs its body on the scripted executor.
class FakeSqlBackend final : public SqlBackend {
 public:
  FakeSqlBackend(const Clock* clock, ScriptedExecutor& executor, Log& log)
      : SqlBackend(clock, /*prune_batch_size=*/100),
        executor_(executor),
        log_(log) {}

  using SqlBackend::CallKind;

  absl::string_view name() const override { return "fake"; }

 protected:
  absl::Status RunCall(
      absl::string_view, CallKind kind,
      absl::FunctionRef<absl::Status(SqlSession&)> body) override {
    kinds_.push_back(kind);
    Session session(*this);
    return body(session);
  }

 private:
  class Session final : public SqlSession {
   public:
    explicit Session(FakeSqlBackend& backend) : b_(backend) {}
    absl::Status Read(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      b_.log_.push_back("read");
      SqlTransaction tx(b_.executor_);
      return body(tx);
    }
    absl::Status Transact(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      b_.log_.push_back("transact");
      SqlTransaction tx(b_.executor_);
      absl::Status s = body(tx);
      b_.log_.push_back(s.ok() ? "commit" : "rollback");
      return s;
    }
    absl::Status WriteAlone(
        absl::FunctionRef<absl::Status(SqlTransaction&)> body) override {
      b_.log_.push_back("write alone");
      SqlTransaction tx(b_.executor_);
      return body(tx);
    }

   private:
    FakeSqlBackend& b_;
  };

 public:
  std::vector<CallKind> kinds_;

 private:
  ScriptedExecutor& executor_;
  Log& log_;
};

class SqlBackendTest : public ::testing::Test {
 protected:
  void Make(SqlDialect dialect, int cap = 0) {
    log_.clear();
    executor_.emplace(dialect, log_);
    limits_.max_sessions_per_user = cap;
    backend_.emplace(&clock_, *executor_, log_);
  }

  absl::Time Now() const { return clock_.manual_.Now(); }

  // A live session of `user`, as stored.
  SessionRecord Stored(int n, const std::string& user = "alice") const {
    return NewSession(Fresh(n, user), Now() - absl::Minutes(1));
  }

  // The limits every call is given (Make sets the per-user cap).
  TenantLimits limits_;
  Log log_;
  LoggingClock clock_{log_};
  std::optional<ScriptedExecutor> executor_;
  std::optional<FakeSqlBackend> backend_;
};

TEST_F(SqlBackendTest, CreateLocksTheCappedUserThenReadsTheTime) {
  Make(SqlDialect::kPostgres, /*cap=*/2);
  absl::StatusOr<SessionRecord> r = backend_->Create(Fresh(1, "bob"), limits_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(log_, ElementsAre("transact", "lock_user", "now",
                                "delete_expired_conflicts", "insert",
                                "evict_over_cap", "commit"));
  EXPECT_EQ(r->created_at, Now());
  EXPECT_EQ(r->version, 1);
}

TEST_F(SqlBackendTest, SqliteNeedsNoUserLockAndUncappedStoresNoEviction) {
  Make(SqlDialect::kSqlite, /*cap=*/2);
  ASSERT_TRUE(backend_->Create(Fresh(1, "bob"), limits_).ok());
  EXPECT_THAT(log_, ElementsAre("transact", "now", "delete_expired_conflicts",
                                "insert", "evict_over_cap", "commit"));
  Make(SqlDialect::kPostgres, /*cap=*/0);
  ASSERT_TRUE(backend_->Create(Fresh(1, "bob"), limits_).ok());
  EXPECT_THAT(log_, ElementsAre("transact", "now", "delete_expired_conflicts",
                                "insert", "commit"));
}

TEST_F(SqlBackendTest, EvictionChoosesAgainWhileVictimsChangedThenGivesUp) {
  Make(SqlDialect::kPostgres, /*cap=*/2);
  int rounds = 0;
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kEvictOverCap) {
      a.rows = {{int64_t{++rounds < 3 ? 1 : 0}}};
    }
    return a;
  };
  ASSERT_TRUE(backend_->Create(Fresh(1, "bob"), limits_).ok());
  EXPECT_EQ(rounds, 3);

  rounds = 0;
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kEvictOverCap) {
      ++rounds;
      a.rows = {{int64_t{1}}};
    }
    return a;
  };
  absl::StatusOr<SessionRecord> r = backend_->Create(Fresh(2, "bob"), limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("fake: evict over per-user cap"));
  EXPECT_EQ(rounds, 8);
  EXPECT_EQ(log_.back(), "rollback");
}

TEST_F(SqlBackendTest, CreateOverALiveHolderIsAlreadyExists) {
  Make(SqlDialect::kSqlite);
  executor_->script_ = [](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kInsert) a.status = absl::AlreadyExistsError("uk");
    return a;
  };
  absl::StatusOr<SessionRecord> r = backend_->Create(Fresh(1), limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(r.status().message(), HasSubstr("already exists"));
}

TEST_F(SqlBackendTest, UpdateReadsTheTimeOnceItHoldsTheRowAndNeverEvicts) {
  Make(SqlDialect::kPostgres, /*cap=*/3);
  const SessionRecord stored = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    return a;
  };
  SessionUpdate update;
  update.sealed_payload = "new";
  absl::StatusOr<SessionRecord> r =
      backend_->Update(kTenant, stored.token_hash, update);
  ASSERT_TRUE(r.ok()) << r.status();
  // An update never changes the user: no user lock, no eviction.
  EXPECT_THAT(log_, ElementsAre("transact", "select_by_hash_for_update", "now",
                                "rewrite", "commit"));
  EXPECT_EQ(r->version, 2);
  EXPECT_EQ(r->last_active_at, Now());
  EXPECT_EQ(r->user_id, "alice");
  EXPECT_EQ(r->sealed_payload, "new");
  // The compare-and-set is also in the statement: tenant, id, then the old
  // version.
  const std::vector<BoundParam>& p =
      executor_->last_params_.at(SqlStatement::kRewrite);
  ASSERT_EQ(p.size(), 11u);
  EXPECT_EQ(p[0].bytes, kTenant);
  EXPECT_EQ(p[1].bytes, stored.id);
  EXPECT_EQ(p[2].number, 1);
  EXPECT_EQ(p[9].number, 2);
  // No payload given: the stored one stays.
  r = backend_->Update(kTenant, stored.token_hash, SessionUpdate());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sealed_payload, stored.sealed_payload);
}

TEST_F(SqlBackendTest, CycleThatSetsACappedUserLocksAndEvictsInItsTenant) {
  Make(SqlDialect::kPostgres, /*cap=*/2);
  const SessionRecord stored = Stored(1, "");
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    if (s == SqlStatement::kEvictOverCap) a.rows = {{int64_t{0}}};
    return a;
  };
  SessionCycle cycle = CycleTo(2, "bob");
  cycle.sealed_payload = "resealed";
  absl::StatusOr<SessionRecord> r =
      backend_->Cycle(kTenant, stored.token_hash, cycle, limits_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(log_,
              ElementsAre("transact", "lock_user", "select_by_hash_for_update",
                          "now", "delete_expired_by_hash", "rewrite",
                          "evict_over_cap", "commit"));
  EXPECT_EQ(r->tenant, kTenant);
  EXPECT_EQ(r->user_id, "bob");
  EXPECT_EQ(r->sealed_payload, "resealed");
  EXPECT_EQ(r->token_hash, TokenHash(2));
  const std::vector<BoundParam>& lock =
      executor_->last_params_.at(SqlStatement::kLockUser);
  ASSERT_EQ(lock.size(), 2u);
  EXPECT_EQ(lock[0].bytes, kTenant);
  EXPECT_EQ(lock[1].bytes, "bob");
  const std::vector<BoundParam>& evict =
      executor_->last_params_.at(SqlStatement::kEvictOverCap);
  ASSERT_EQ(evict.size(), 5u);
  EXPECT_EQ(evict[0].bytes, kTenant);
  EXPECT_EQ(evict[1].bytes, "bob");
  EXPECT_EQ(evict[3].bytes, stored.id);
  EXPECT_EQ(evict[4].number, 1);

  // Without a user, or with limits that cap nothing: no lock, no eviction.
  log_.clear();
  ASSERT_TRUE(
      backend_->Cycle(kTenant, stored.token_hash, CycleTo(3), limits_).ok());
  EXPECT_THAT(log_, ElementsAre("transact", "select_by_hash_for_update", "now",
                                "delete_expired_by_hash", "rewrite", "commit"));
  log_.clear();
  ASSERT_TRUE(
      backend_
          ->Cycle(kTenant, stored.token_hash, CycleTo(3, "bob"), TenantLimits())
          .ok());
  EXPECT_THAT(log_, ElementsAre("transact", "select_by_hash_for_update", "now",
                                "delete_expired_by_hash", "rewrite", "commit"));
}

// NOT_FOUND, then ABORTED, then ALREADY_EXISTS: a version mismatch is
// decided before the new hash is looked at, and nothing is written.
TEST_F(SqlBackendTest, CycleVersionMismatchIsAbortedBeforeTheNewHash) {
  Make(SqlDialect::kSqlite);
  const SessionRecord stored = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    if (s == SqlStatement::kRewrite) a.status = absl::AlreadyExistsError("uk");
    return a;
  };
  SessionCycle cycle = CycleTo(2);
  cycle.expected_version = 5;
  absl::StatusOr<SessionRecord> r =
      backend_->Cycle(kTenant, stored.token_hash, cycle, limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(log_, ElementsAre("transact", "select_by_hash_for_update", "now",
                                "rollback"));
  cycle.expected_version = 1;
  r = backend_->Cycle(kTenant, stored.token_hash, cycle, limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
  executor_->script_ = nullptr;
  cycle.expected_version = 5;
  r = backend_->Cycle(kTenant, stored.token_hash, cycle, limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(SqlBackendTest, RewriteThatFindsItsRowChangedIsInternalNotAborted) {
  Make(SqlDialect::kSqlite);
  const SessionRecord stored = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    if (s == SqlStatement::kRewrite) a.changed = 0;
    return a;
  };
  SessionUpdate update;
  update.sealed_payload = "x";
  absl::StatusOr<SessionRecord> updated =
      backend_->Update(kTenant, stored.token_hash, update);
  EXPECT_EQ(updated.status().code(), absl::StatusCode::kInternal)
      << updated.status();
  EXPECT_THAT(updated.status().message(),
              HasSubstr("sqlite: rewrite: the locked session changed"));
  absl::StatusOr<SessionRecord> cycled =
      backend_->Cycle(kTenant, stored.token_hash, CycleTo(2), limits_);
  EXPECT_EQ(cycled.status().code(), absl::StatusCode::kInternal)
      << cycled.status();
  // ABORTED stays the answer to a version mismatch, with nothing written.
  update.expected_version = 7;
  log_.clear();
  EXPECT_EQ(
      backend_->Update(kTenant, stored.token_hash, update).status().code(),
      absl::StatusCode::kAborted);
  EXPECT_THAT(log_, ElementsAre("transact", "select_by_hash_for_update", "now",
                                "rollback"));
}

TEST_F(SqlBackendTest, LastActiveAtNeverMovesBackOnUpdateOrCycle) {
  Make(SqlDialect::kSqlite);
  SessionRecord stored = Stored(1);
  stored.last_active_at = Now() + absl::Minutes(5);  // written by a clock ahead
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    return a;
  };
  absl::StatusOr<SessionRecord> r =
      backend_->Update(kTenant, stored.token_hash, SessionUpdate());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->last_active_at, stored.last_active_at);
  r = backend_->Cycle(kTenant, stored.token_hash, CycleTo(2, "bob"), limits_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->last_active_at, stored.last_active_at);
  EXPECT_EQ(r->user_id, "bob");
}

TEST_F(SqlBackendTest, CycleOntoALiveHashIsAlreadyExists) {
  Make(SqlDialect::kPostgres);
  const SessionRecord stored = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHashForUpdate) a.rows = {RecordRow(stored)};
    if (s == SqlStatement::kRewrite) a.status = absl::AlreadyExistsError("uk");
    return a;
  };
  absl::StatusOr<SessionRecord> r =
      backend_->Cycle(kTenant, stored.token_hash, CycleTo(2), limits_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(log_,
              ElementsAre("transact", "select_by_hash_for_update", "now",
                          "delete_expired_by_hash", "rewrite", "rollback"));
}

TEST_F(SqlBackendTest, LoadDecidesAnExpiredSnapshotAgainUnderTheRowLock) {
  Make(SqlDialect::kPostgres);
  SessionRecord live = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHash) a.rows = {RecordRow(live)};
    return a;
  };
  ASSERT_TRUE(backend_->Load(kTenant, live.token_hash).ok());
  EXPECT_THAT(log_, ElementsAre("read", "now", "select_by_hash"));

  // Expired in the snapshot; brought back to life by a writer it waited for.
  SessionRecord expired = live;
  expired.last_active_at = Now() - absl::Hours(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHash) a.rows = {RecordRow(expired)};
    if (s == SqlStatement::kSelectByHashForShare) a.rows = {RecordRow(live)};
    return a;
  };
  log_.clear();
  absl::StatusOr<SessionRecord> r = backend_->Load(kTenant, live.token_hash);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, live);
  EXPECT_THAT(log_, ElementsAre("read", "now", "select_by_hash", "transact",
                                "select_by_hash_for_share", "now", "commit"));

  // Still expired under the lock: NOT_FOUND.
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHash ||
        s == SqlStatement::kSelectByHashForShare) {
      a.rows = {RecordRow(expired)};
    }
    return a;
  };
  EXPECT_TRUE(
      absl::IsNotFound(backend_->Load(kTenant, live.token_hash).status()));
  EXPECT_EQ(backend_->kinds_.back(), FakeSqlBackend::CallKind::kIdempotent);
}

TEST_F(SqlBackendTest, LoadAndTouchWritesOnlyWhenATouchIsDue) {
  Make(SqlDialect::kPostgres);
  const SessionRecord stored = Stored(1);  // active a minute ago
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHash ||
        s == SqlStatement::kSelectByHashForUpdate) {
      a.rows = {RecordRow(stored)};
    }
    return a;
  };
  absl::StatusOr<SessionRecord> r =
      backend_->LoadAndTouch(kTenant, stored.token_hash, absl::Minutes(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, stored);
  EXPECT_THAT(log_, ElementsAre("read", "now", "select_by_hash"));

  log_.clear();
  r = backend_->LoadAndTouch(kTenant, stored.token_hash, absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->last_active_at, Now());
  EXPECT_EQ(r->version, stored.version);
  EXPECT_THAT(
      log_, ElementsAre("read", "now", "select_by_hash", "transact",
                        "select_by_hash_for_update", "now", "touch", "commit"));
}

TEST_F(SqlBackendTest, DeletesCountTheLiveRowsByATimeReadAfterwards) {
  Make(SqlDialect::kSqlite);
  const int64_t now = TimeToMicros(Now());
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kDeleteForUser) {
      a.rows = {{now - 1}, {now}, {now + 1}, {now + 60'000'000}};
    }
    return a;
  };
  absl::StatusOr<int64_t> n = backend_->DeleteForUser(kTenant, "alice", "keep");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_THAT(log_,
              ElementsAre("transact", "delete_for_user", "now", "commit"));
  EXPECT_EQ(backend_->kinds_.back(), FakeSqlBackend::CallKind::kWrite);
}

TEST_F(SqlBackendTest, PruneRunsBatchesUntilOneIsShort) {
  Make(SqlDialect::kPostgres);
  std::vector<int64_t> batches = {100, 100, 7};
  executor_->script_ = [&](SqlStatement) {
    Answer a;
    a.changed = batches.front();
    batches.erase(batches.begin());
    return a;
  };
  absl::StatusOr<int64_t> n = backend_->PruneExpired(std::nullopt);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 207);
  EXPECT_THAT(log_, ElementsAre("write alone", "now", "prune_batch",
                                "write alone", "now", "prune_batch",
                                "write alone", "now", "prune_batch"));
}

TEST_F(SqlBackendTest, ListForUserPassesTheCursorAndKeepsTheOrder) {
  Make(SqlDialect::kSqlite);
  const SessionRecord a = Stored(1);
  const SessionRecord b = Stored(2);
  executor_->script_ = [&](SqlStatement) {
    Answer answer;
    answer.rows = {RecordRow(b), RecordRow(a)};
    return answer;
  };
  const ListCursor after{Now(), "id-9"};
  absl::StatusOr<std::vector<SessionRecord>> found =
      backend_->ListForUser(kTenant, "alice", 3, 4096, after);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, ElementsAre(b, a));
  EXPECT_THAT(log_, ElementsAre("read", "now", "list_after"));
  const std::vector<BoundParam>& p =
      executor_->last_params_.at(SqlStatement::kListAfter);
  ASSERT_EQ(p.size(), 7u);
  EXPECT_EQ(p[0].bytes, kTenant);
  EXPECT_EQ(p[1].bytes, "alice");
  EXPECT_EQ(p[3].number, 3);
  EXPECT_EQ(p[4].number, 4096);
  EXPECT_EQ(p[5].number, TimeToMicros(after.last_active_at));
  EXPECT_EQ(p[6].bytes, "id-9");
  ASSERT_TRUE(
      backend_->ListForUser(kTenant, "alice", 3, 4096, std::nullopt).ok());
  EXPECT_EQ(executor_->last_params_.at(SqlStatement::kListFirst).size(), 5u);
}

TEST_F(SqlBackendTest, CountLiveReadsTheTenantsCountByTheTimeOfTheRead) {
  Make(SqlDialect::kPostgres);
  executor_->script_ = [](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kCountLive) a.rows = {{int64_t{42}}};
    return a;
  };
  absl::StatusOr<int64_t> n = backend_->CountLive(kTenant);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 42);
  EXPECT_THAT(log_, ElementsAre("read", "now", "count_live"));
  EXPECT_EQ(backend_->kinds_.back(), FakeSqlBackend::CallKind::kIdempotent);
  const std::vector<BoundParam>& p =
      executor_->last_params_.at(SqlStatement::kCountLive);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].bytes, kTenant);
  EXPECT_EQ(p[1].number, TimeToMicros(Now()));
  // A statement that returns no row is the store's own failure.
  executor_->script_ = nullptr;
  EXPECT_EQ(backend_->CountLive(kTenant).status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(SqlBackendTest, PruneOfOneTenantRunsItsOwnStatement) {
  Make(SqlDialect::kSqlite);
  std::vector<int64_t> batches = {100, 3};
  executor_->script_ = [&](SqlStatement) {
    Answer a;
    a.changed = batches.front();
    batches.erase(batches.begin());
    return a;
  };
  absl::StatusOr<int64_t> n = backend_->PruneExpired(kTenant);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 103);
  EXPECT_THAT(log_, ElementsAre("write alone", "now", "prune_tenant_batch",
                                "write alone", "now", "prune_tenant_batch"));
  const std::vector<BoundParam>& p =
      executor_->last_params_.at(SqlStatement::kPruneTenantBatch);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].bytes, kTenant);
  EXPECT_EQ(p[2].number, 100);
}

// Every call on sessions binds its tenant first; the deletes of expired
// holders that Create and Cycle run before writing are of every tenant (ids
// and token hashes are unique across tenants).
TEST_F(SqlBackendTest, EveryCallBindsItsTenant) {
  Make(SqlDialect::kPostgres, /*cap=*/2);
  const SessionRecord stored = Stored(1);
  executor_->script_ = [&](SqlStatement s) {
    Answer a;
    if (s == SqlStatement::kSelectByHash ||
        s == SqlStatement::kSelectByHashForUpdate) {
      a.rows = {RecordRow(stored)};
    }
    if (s == SqlStatement::kEvictOverCap) a.rows = {{int64_t{0}}};
    return a;
  };
  ASSERT_TRUE(backend_->Create(Fresh(5, "alice"), limits_).ok());
  ASSERT_TRUE(backend_->Load(kTenant, stored.token_hash).ok());
  ASSERT_TRUE(
      backend_->LoadAndTouch(kTenant, stored.token_hash, absl::ZeroDuration())
          .ok());
  ASSERT_TRUE(backend_->Update(kTenant, stored.token_hash, {}).ok());
  ASSERT_TRUE(
      backend_->Cycle(kTenant, stored.token_hash, CycleTo(2, "bob"), limits_)
          .ok());
  ASSERT_TRUE(backend_->DeleteByTokenHash(kTenant, stored.token_hash).ok());
  ASSERT_TRUE(backend_->DeleteById(kTenant, "id-1").ok());
  ASSERT_TRUE(backend_->DeleteForUser(kTenant, "alice", "").ok());
  ASSERT_TRUE(
      backend_->ListForUser(kTenant, "alice", 3, 4096, std::nullopt).ok());
  ASSERT_TRUE(backend_->PruneExpired(std::nullopt).ok());
  for (const auto& [statement, params] : executor_->last_params_) {
    SCOPED_TRACE(StatementName(statement));
    switch (statement) {
      case SqlStatement::kDeleteExpiredConflicts:
      case SqlStatement::kDeleteExpiredByHash:
      case SqlStatement::kPruneBatch:
        for (const BoundParam& p : params) EXPECT_NE(p.bytes, kTenant);
        break;
      default:
        ASSERT_FALSE(params.empty());
        EXPECT_EQ(params[0].type, SqlType::kText);
        EXPECT_EQ(params[0].bytes, kTenant);
    }
  }
  EXPECT_EQ(executor_->last_params_.size(), 14u);
}

}  // namespace
}  // namespace sessiond::storage::sql
