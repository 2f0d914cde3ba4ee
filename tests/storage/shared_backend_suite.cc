#include "tests/storage/shared_backend_suite.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/storage/numbered_record.h"
#include "tests/testing/status_macros.h"
#include "tests/testing/threads.h"

namespace sessiond::storage {

void PrintTo(const SharedBackend& backend, std::ostream* os) {
  *os << "SharedBackend{" << backend.name << "}";
}

namespace {

using absl::StatusCode;

using ::sessiond::testing::RunThreads;

// The tenant of NumberedRecord, and of most sessions here; the prune tests
// add another.
constexpr absl::string_view kTenant = kDefaultTenant;
constexpr absl::string_view kOther = "other-tenant";

}  // namespace

void SharedBackendTest::SetUp() {
  const absl::Status reset = GetParam().reset();
  ASSERT_TRUE(reset.ok()) << reset;
}

std::unique_ptr<SessionStore> SharedBackendTest::Open(
    const StoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      GetParam().open(&clock_, options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

void OutageTest::TearDown() {
  if (paused_) {
    EXPECT_TRUE(GetParam().resume().ok());
  }
  if (stopped_) {
    EXPECT_TRUE(GetParam().start().ok());
  }
}

// ---------------------------------------------------------------------------
// Two stores over one data set stand in for two sessiond processes.

TEST_P(SharedStoreTest, TwoStoresCompareAndSetLoseNoUpdate) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  SessionRecord counter = NumberedRecord(0, "alice");
  counter.sealed_payload = "0";
  ASSERT_TRUE(a->Create(counter, {}).ok());
  constexpr int kThreads = 8;
  constexpr int kIncrements = 25;
  std::atomic<int> errors{0};
  std::atomic<int> aborts{0};
  RunThreads(kThreads, [&](int t) {
    SessionStore& store = t % 2 == 0 ? *a : *b;
    for (int k = 0; k < kIncrements; ++k) {
      for (;;) {
        absl::StatusOr<SessionRecord> cur =
            store.Load(kTenant, NumberedTokenHash(0));
        int64_t n = 0;
        if (!cur.ok() || !absl::SimpleAtoi(cur->sealed_payload, &n)) {
          ADD_FAILURE() << cur.status();
          errors.fetch_add(1);
          return;
        }
        absl::StatusOr<SessionRecord> next =
            store.Update(kTenant, NumberedTokenHash(0),
                         MakeUpdate(absl::StrCat(n + 1), cur->version));
        if (next.ok()) break;
        if (!absl::IsAborted(next.status())) {
          ADD_FAILURE() << next.status();
          errors.fetch_add(1);
          return;
        }
        aborts.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(errors.load(), 0);
  absl::StatusOr<SessionRecord> from_a = a->Load(kTenant, NumberedTokenHash(0));
  absl::StatusOr<SessionRecord> from_b = b->Load(kTenant, NumberedTokenHash(0));
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  EXPECT_EQ(*from_a, *from_b);
  EXPECT_EQ(from_a->sealed_payload, absl::StrCat(kThreads * kIncrements));
  EXPECT_EQ(from_a->version, 1 + kThreads * kIncrements);
}

TEST_P(SharedStoreTest, TwoStoresCreatingAtOnceKeepTheCap) {
  TenantLimits limits;
  limits.max_sessions_per_user = 3;
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kThreads = 6;
  constexpr int kEach = 10;
  RunThreads(kThreads, [&](int t) {
    SessionStore& store = t % 2 == 0 ? *a : *b;
    for (int i = 0; i < kEach; ++i) {
      absl::StatusOr<SessionRecord> r =
          store.Create(NumberedRecord(t * kEach + i, "carol"), limits);
      EXPECT_TRUE(r.ok()) << r.status();
    }
  });
  // Both stores see the same three: one cap over the shared data.
  absl::StatusOr<SessionPage> from_a =
      a->ListForUser(kTenant, "carol", 100, {});
  absl::StatusOr<SessionPage> from_b =
      b->ListForUser(kTenant, "carol", 100, {});
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  EXPECT_EQ(from_b->sessions.size(), 3u);
  EXPECT_EQ(from_a->sessions, from_b->sessions);
}

TEST_P(SharedStoreTest, PruneGoesInBatchesAndCountsExactly) {
  const int batch = GetParam().prune_batch_size;
  ASSERT_GT(batch, 0);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  // In each of two tenants, two full batches and a partial one expire; a
  // few sessions stay live.
  const int expired = 2 * batch + batch / 2 + 1;
  int n = 0;
  for (absl::string_view tenant : {kTenant, kOther}) {
    for (int i = 0; i < expired; ++i) {
      ASSERT_TRUE(store
                      ->Create(NumberedRecord(n++, absl::StrCat("u", i % 7),
                                              absl::Minutes(1), absl::Hours(24),
                                              tenant),
                               {})
                      .ok());
    }
  }
  clock_.Advance(absl::Minutes(2));
  for (absl::string_view tenant : {kTenant, kOther}) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(store
                      ->Create(NumberedRecord(n + i, "live", absl::Minutes(30),
                                              absl::Hours(24), tenant),
                               {})
                      .ok());
    }
    n += 3;
  }
  // One tenant's, then everyone's (the rest).
  absl::StatusOr<int64_t> pruned = store->PruneExpired(kTenant);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, expired);
  pruned = store->PruneExpired(kTenant);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 0);
  pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, expired);
  pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(store->Load(kTenant, NumberedTokenHash(2 * expired + i)).ok());
    EXPECT_TRUE(
        store->Load(kOther, NumberedTokenHash(2 * expired + 3 + i)).ok());
  }
  for (absl::string_view tenant : {kTenant, kOther}) {
    absl::StatusOr<int64_t> live = store->CountLive(tenant);
    ASSERT_TRUE(live.ok()) << live.status();
    EXPECT_EQ(*live, 3);
  }
}

TEST_P(SharedStoreTest, StoresPruningAtOnceRemoveEachSessionOnce) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // Expired sessions in two tenants, pruned at once by tenant and by all.
  const int expired = 3 * GetParam().prune_batch_size + 11;
  for (int i = 0; i < expired; ++i) {
    ASSERT_TRUE(
        a->Create(NumberedRecord(i, "", absl::Minutes(1), absl::Hours(1),
                                 i % 3 == 0 ? kOther : kTenant),
                  {})
            .ok());
  }
  clock_.Advance(absl::Minutes(2));
  ASSERT_TRUE(a->Create(NumberedRecord(expired, "live"), {}).ok());
  constexpr int kThreads = 6;
  std::vector<absl::StatusOr<int64_t>> results(kThreads, int64_t{0});
  RunThreads(kThreads, [&](int t) {
    SessionStore& store = t % 2 == 0 ? *a : *b;
    switch (t % 3) {
      case 0:
        results[t] = store.PruneAllExpired();
        break;
      case 1:
        results[t] = store.PruneExpired(kTenant);
        break;
      default:
        results[t] = store.PruneExpired(kOther);
        break;
    }
  });
  int64_t total = 0;
  for (const absl::StatusOr<int64_t>& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    total += *r;
  }
  EXPECT_EQ(total, expired);
  EXPECT_TRUE(b->Load(kTenant, NumberedTokenHash(expired)).ok());
  absl::StatusOr<int64_t> left = b->PruneAllExpired();
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(*left, 0);
}

// With live_count_max_age zero, and the clock moving between calls, each
// store reads the tenant's count anew for every capped Create: the cap
// holds exactly over both stores' sessions, per tenant.
TEST_P(SharedStoreTest, TwoStoresKeepTheLiveCapOfEachTenant) {
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  auto a = Open(options);
  auto b = Open(options);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  TenantLimits limits;
  limits.max_live_sessions = 3;
  auto create = [&](SessionStore& store, int i, absl::string_view tenant) {
    clock_.Advance(absl::Milliseconds(1));
    return store
        .Create(
            NumberedRecord(i, "", absl::Minutes(30), absl::Hours(24), tenant),
            limits)
        .status()
        .code();
  };
  EXPECT_EQ(create(*a, 1, kTenant), StatusCode::kOk);
  EXPECT_EQ(create(*b, 2, kTenant), StatusCode::kOk);
  EXPECT_EQ(create(*a, 3, kTenant), StatusCode::kOk);
  EXPECT_EQ(create(*b, 4, kTenant), StatusCode::kResourceExhausted);
  EXPECT_EQ(create(*a, 4, kTenant), StatusCode::kResourceExhausted);
  // The other tenant has its own room.
  EXPECT_EQ(create(*b, 11, kOther), StatusCode::kOk);
  EXPECT_EQ(create(*a, 12, kOther), StatusCode::kOk);
  // A delete through one store makes room for the other.
  absl::StatusOr<int64_t> deleted = b->DeleteById(kTenant, "id-1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(create(*a, 4, kTenant), StatusCode::kOk);
  EXPECT_EQ(create(*b, 5, kTenant), StatusCode::kResourceExhausted);
  EXPECT_FALSE(a->Load(kTenant, NumberedTokenHash(5)).ok());
  for (SessionStore* store : {a.get(), b.get()}) {
    absl::StatusOr<int64_t> live = store->CountLive(kTenant);
    ASSERT_TRUE(live.ok()) << live.status();
    EXPECT_EQ(*live, 3);
    live = store->CountLive(kOther);
    ASSERT_TRUE(live.ok()) << live.status();
    EXPECT_EQ(*live, 2);
  }
}

// ---------------------------------------------------------------------------
// The expiry a backend keeps beside each session.

TEST_P(StoredExpiryTest, FollowsEveryWrite) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto stored = [&](const SessionRecord& r) -> int64_t {
    absl::StatusOr<int64_t> us = GetParam().stored_expires_at(r);
    EXPECT_TRUE(us.ok()) << us.status();
    return us.ok() ? *us : -1;
  };
  absl::StatusOr<SessionRecord> r = store->Create(
      NumberedRecord(1, "", absl::Minutes(10), absl::Minutes(25)), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(stored(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(5) + absl::Nanoseconds(1500));
  r = store->LoadAndTouch(kTenant, r->token_hash, absl::Minutes(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->last_active_at, TruncateToMicros(clock_.Now()));
  EXPECT_EQ(stored(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(9));
  SessionUpdate update = MakeUpdate("x");
  update.idle_timeout = absl::Minutes(20);
  r = store->Update(kTenant, r->token_hash, update);
  ASSERT_TRUE(r.ok()) << r.status();
  // Now capped by the absolute lifetime.
  EXPECT_EQ(r->ExpiresAt(), r->created_at + absl::Minutes(25));
  EXPECT_EQ(stored(*r), absl::ToUnixMicros(r->ExpiresAt()));

  clock_.Advance(absl::Minutes(1));
  r = store->Cycle(kTenant, r->token_hash, MakeCycle(NumberedTokenHash(2)), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(stored(*r), absl::ToUnixMicros(r->ExpiresAt()));

  // Infinite durations are kept as int64 max and come back infinite.
  r = store->Create(
      NumberedRecord(3, "", absl::InfiniteDuration(), absl::InfiniteDuration()),
      {});
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kTenant, NumberedTokenHash(3));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, *r);
  EXPECT_EQ(stored(*r), std::numeric_limits<int64_t>::max());
}

// ---------------------------------------------------------------------------
// A lock held behind the store's back.

TEST_P(LockWaitTest, WriteWaitingPastItsBoundIsUnavailableAndWritesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  {
    absl::StatusOr<std::shared_ptr<void>> lock =
        GetParam().hold_lock(NumberedTokenHash(1));
    ASSERT_TRUE(lock.ok()) << lock.status();
    const absl::Time start = absl::Now();
    absl::StatusOr<SessionRecord> r =
        store->Update(kTenant, NumberedTokenHash(1), MakeUpdate("new"));
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
    EXPECT_LT(absl::Now() - start, GetParam().bound);
  }
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kTenant, NumberedTokenHash(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->version, 1);
  EXPECT_EQ(loaded->user_id, "alice");
  // Once the lock is gone the same store writes again.
  EXPECT_TRUE(
      store->Update(kTenant, NumberedTokenHash(1), MakeUpdate("new")).ok());
}

// A write that waits for the lock reads the time only once it holds it. The
// session is live when the write is called and expires while it waits; the
// write must then find it expired, not commit with a time from before the
// wait (which would revive it, or count it as a live session removed).
TEST_P(LockWaitTest, WriteWaitingForTheLockReadsTheTimeOnceItHasIt) {
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
         return code(store.Update(kTenant, hash, MakeUpdate("late")).status());
       },
       "NOT_FOUND"},
      {"LoadAndTouch",
       [&](SessionStore& store, const std::string& hash) {
         return code(
             store.LoadAndTouch(kTenant, hash, absl::ZeroDuration()).status());
       },
       "NOT_FOUND"},
      {"Cycle",
       [&](SessionStore& store, const std::string& hash) {
         return code(store
                         .Cycle(kTenant, hash,
                                MakeCycle(NumberedTokenHash(999), "alice"), {})
                         .status());
       },
       "NOT_FOUND"},
      {"DeleteByTokenHash",
       [](SessionStore& store, const std::string& hash) {
         absl::StatusOr<int64_t> n = store.DeleteByTokenHash(kTenant, hash);
         return n.ok() ? absl::StrCat("deleted ", *n) : n.status().ToString();
       },
       "deleted 0"},
  };
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.name);
    const SessionRecord in =
        NumberedRecord(static_cast<int>(i), "alice", absl::Minutes(1));
    absl::StatusOr<SessionRecord> created = store->Create(in, {});
    ASSERT_TRUE(created.ok()) << created.status();
    clock_.Set(created->ExpiresAt() - absl::Milliseconds(1));

    absl::StatusOr<std::shared_ptr<void>> lock =
        GetParam().hold_lock(in.token_hash);
    ASSERT_TRUE(lock.ok()) << lock.status();
    std::string got;
    std::thread writer([&] { got = c.call(*store, in.token_hash); });
    // Only once the call waits for the lock does the session expire.
    const bool waited = GetParam().await_lock_waiter();
    clock_.Advance(absl::Milliseconds(2));
    lock->reset();
    writer.join();
    ASSERT_TRUE(waited) << "the call never waited for the lock";
    EXPECT_EQ(got, c.want);
    EXPECT_TRUE(absl::IsNotFound(store->Load(kTenant, in.token_hash).status()));
    absl::StatusOr<SessionPage> page =
        store->ListForUser(kTenant, "alice", 10, {});
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_TRUE(page->sessions.empty());
  }
}

// ---------------------------------------------------------------------------
// Outages.

// ---------------------------------------------------------------------------
// DatabaseClockTest. The database runs on this machine: its clock is
// absl::Now(), while the test clock of this "replica" is an hour off.

// Whether `t` is within a few seconds of the real time.
bool IsAboutNow(absl::Time t) {
  return absl::AbsDuration(t - absl::Now()) < absl::Seconds(10);
}

TEST_P(DatabaseClockTest, ExpiryFollowsTheDatabasesClock) {
  clock_.Set(absl::Now() + absl::Hours(1));  // a replica an hour fast
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      GetParam().open_by_database_clock(&clock_, StoreOptions{});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_OK_AND_ASSIGN(SessionRecord created,
                       (*store)->Create(NumberedRecord(1), TenantLimits{}));
  EXPECT_TRUE(IsAboutNow(created.created_at)) << created.created_at;
  // A store by the local clock would have stamped it an hour later.
  std::unique_ptr<SessionStore> local = Open();
  ASSERT_NE(local, nullptr);
  ASSERT_OK_AND_ASSIGN(SessionRecord stamped,
                       local->Create(NumberedRecord(2), TenantLimits{}));
  EXPECT_FALSE(IsAboutNow(stamped.created_at)) << stamped.created_at;

  // The local clock steps two hours back; a ping measures it again.
  clock_.Set(absl::Now() - absl::Hours(1));
  ASSERT_OK((*store)->Ping());
  ASSERT_OK_AND_ASSIGN(SessionRecord later,
                       (*store)->Create(NumberedRecord(3), TenantLimits{}));
  EXPECT_TRUE(IsAboutNow(later.created_at)) << later.created_at;
  // By the database's clock, the first session is still live.
  ASSERT_OK((*store)->Load(kDefaultTenant, NumberedTokenHash(1)).status());
}

namespace {

// Every kind of call, each expected to fail with UNAVAILABLE within
// `bound`. None of them would change a session the tests check later if
// the server ran it after all (a paused server does, once resumed).
void ExpectEveryCallUnavailable(SessionStore& store, absl::Duration bound,
                                int round) {
  const std::vector<std::pair<std::string, std::function<absl::Status()>>>
      calls = {
          {"Create",
           [&] {
             return store.Create(NumberedRecord(1000 + round), {}).status();
           }},
          {"Create (live cap)",
           [&] {
             TenantLimits limits;
             limits.max_live_sessions = 1000;
             return store.Create(NumberedRecord(2000 + round), limits).status();
           }},
          {"Load",
           [&] { return store.Load(kTenant, NumberedTokenHash(1)).status(); }},
          {"LoadAndTouch",
           [&] {
             return store
                 .LoadAndTouch(kTenant, NumberedTokenHash(1), absl::Hours(1))
                 .status();
           }},
          {"Update",
           [&] {
             return store
                 .Update(kTenant, NumberedTokenHash(1), MakeUpdate("x", 999))
                 .status();
           }},
          {"Cycle",
           [&] {
             return store
                 .Cycle(kTenant, NumberedTokenHash(5000),
                        MakeCycle(NumberedTokenHash(5001)), {})
                 .status();
           }},
          {"DeleteByTokenHash",
           [&] {
             return store.DeleteByTokenHash(kTenant, NumberedTokenHash(5000))
                 .status();
           }},
          {"DeleteById",
           [&] { return store.DeleteById(kTenant, "no-such-id").status(); }},
          {"DeleteForUser",
           [&] { return store.DeleteForUser(kTenant, "nobody", "").status(); }},
          {"ListForUser",
           [&] {
             return store.ListForUser(kTenant, "alice", 10, {}).status();
           }},
          {"CountLive", [&] { return store.CountLive(kTenant).status(); }},
          {"PruneExpired",
           [&] { return store.PruneExpired(kTenant).status(); }},
          {"PruneAllExpired", [&] { return store.PruneAllExpired().status(); }},
          {"Ping", [&] { return store.Ping(); }},
      };
  for (const auto& [name, call] : calls) {
    SCOPED_TRACE(name);
    const absl::Time start = absl::Now();
    const absl::Status status = call();
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
    EXPECT_LT(absl::Now() - start, bound);
  }
}

// Calls succeed again on `store`, which still holds `anchor`.
void ExpectWorking(SessionStore& store, const SessionRecord& anchor,
                   int new_session) {
  absl::StatusOr<SessionRecord> loaded = store.Load(kTenant, anchor.token_hash);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, anchor);
  absl::StatusOr<SessionPage> page =
      store.ListForUser(kTenant, "alice", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_OK(store.Ping());
  ASSERT_TRUE(store.Create(NumberedRecord(new_session, "alice"), {}).ok());
  EXPECT_TRUE(store.Load(kTenant, NumberedTokenHash(new_session)).ok());
}

}  // namespace

TEST_P(OutageTest, StoppedServerFailsEveryCallInTimeThenTheSameStoreWorks) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SessionRecord> anchor =
      store->Create(NumberedRecord(1, "alice"), {});
  ASSERT_TRUE(anchor.ok()) << anchor.status();
  // Every pooled connection has been used.
  RunThreads(4, [&](int) {
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(store->Ping().ok());
  });

  ASSERT_OK(GetParam().stop());
  stopped_ = true;
  ExpectEveryCallUnavailable(*store, GetParam().bound, 1);
  ExpectEveryCallUnavailable(*store, GetParam().bound, 2);
  ASSERT_OK(GetParam().start());
  stopped_ = false;
  // The very first calls already work: dead connections are noticed before
  // use, and replaced.
  ExpectWorking(*store, *anchor, 2000);
}

TEST_P(OutageTest, AcknowledgedWritesSurviveRestartAndCrash) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<SessionRecord> expected;
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<SessionRecord> r =
        store->Create(NumberedRecord(i, absl::StrCat("user", i % 4)), {});
    ASSERT_TRUE(r.ok()) << r.status();
    expected.push_back(*r);
    clock_.Advance(absl::Milliseconds(10));
  }
  for (int i = 0; i < 40; i += 3) {
    absl::StatusOr<SessionRecord> r = store->Update(
        kTenant, NumberedTokenHash(i), MakeUpdate(absl::StrCat("v2-", i)));
    ASSERT_TRUE(r.ok()) << r.status();
    expected[i] = *r;
  }
  ASSERT_EQ(*store->DeleteById(kTenant, "id-39"), 1);
  expected.pop_back();
  auto check_all = [&](absl::string_view when) {
    SCOPED_TRACE(when);
    for (const SessionRecord& want : expected) {
      absl::StatusOr<SessionRecord> got = store->Load(kTenant, want.token_hash);
      ASSERT_TRUE(got.ok()) << want.id << ": " << got.status();
      EXPECT_EQ(*got, want);
    }
    EXPECT_TRUE(
        absl::IsNotFound(store->Load(kTenant, NumberedTokenHash(39)).status()));
    absl::StatusOr<SessionPage> page =
        store->ListForUser(kTenant, "user1", 100, {});
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_EQ(page->sessions.size(), 10u);
  };

  // A clean shutdown, then calls on the same store: no reopen.
  ASSERT_OK(GetParam().stop());
  stopped_ = true;
  ASSERT_OK(GetParam().start());
  stopped_ = false;
  check_all("after a restart");

  // More acknowledged writes, then a crash: none of them is lost.
  for (int i = 0; i < 36; i += 4) {
    absl::StatusOr<SessionRecord> r = store->LoadAndTouch(
        kTenant, expected[i].token_hash, absl::ZeroDuration());
    ASSERT_TRUE(r.ok()) << r.status();
    expected[i] = *r;
    clock_.Advance(absl::Milliseconds(1));
  }
  absl::StatusOr<SessionRecord> cycled =
      store->Cycle(kTenant, NumberedTokenHash(1),
                   MakeCycle(NumberedTokenHash(100), std::string("user1")), {});
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  expected[1] = *cycled;
  ASSERT_OK(GetParam().kill());
  stopped_ = true;
  ASSERT_OK(GetParam().start());
  stopped_ = false;
  check_all("after a crash");
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(kTenant, NumberedTokenHash(1)).status()));
}

TEST_P(OutageTest, HungServerFailsEveryCallInTimeThenTheSameStoreWorks) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<SessionRecord> anchor =
      store->Create(NumberedRecord(1, "alice"), {});
  ASSERT_TRUE(anchor.ok()) << anchor.status();
  RunThreads(4, [&](int) { EXPECT_TRUE(store->Ping().ok()); });

  ASSERT_OK(GetParam().pause());
  paused_ = true;
  ExpectEveryCallUnavailable(*store, GetParam().bound, 1);
  // More callers than connections: those waiting for one give up in time
  // too.
  std::atomic<int> wrong{0};
  std::atomic<int> slow{0};
  RunThreads(10, [&](int) {
    const absl::Time start = absl::Now();
    if (!absl::IsUnavailable(
            store->Load(kTenant, NumberedTokenHash(1)).status())) {
      wrong.fetch_add(1);
    }
    if (absl::Now() - start >= GetParam().bound) slow.fetch_add(1);
  });
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(slow.load(), 0);

  ASSERT_OK(GetParam().resume());
  paused_ = false;
  ExpectWorking(*store, *anchor, 3000);
}

// Backends without a server (SQLite) leave out OutageTest; backends
// without locks a test can hold (Valkey runs each call as one script) leave
// out LockWaitTest; StoredExpiryTest is for backends that keep an expiry
// column (the SQL ones).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(LockWaitTest);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OutageTest);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoredExpiryTest);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DatabaseClockTest);

}  // namespace sessiond::storage
