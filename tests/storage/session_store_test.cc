// Tests of the SessionStore front itself: what it decides without asking
// the backend, what it hands the backend, which codes it lets through, and
// the count of live sessions it keeps for TenantLimits::max_live_sessions.
// The conformance suite checks the contract end to end on every backend.
#include "storage/session_store.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"
#include "tests/storage/fake_backend.h"
#include "tests/storage/numbered_record.h"

namespace sessiond::storage {
namespace {

using absl::StatusCode;
using Calls = std::vector<std::string>;

constexpr absl::string_view kTenant = kDefaultTenant;
constexpr absl::string_view kOther = "other";

TenantLimits LiveCap(int64_t cap) {
  TenantLimits limits;
  limits.max_live_sessions = cap;
  return limits;
}

// NumberedRecord(i) of `tenant`.
SessionRecord RecordIn(absl::string_view tenant, int i,
                       const std::string& user = "") {
  return NumberedRecord(i, user, absl::Minutes(30), absl::Hours(24), tenant);
}

class SessionStoreFrontTest : public ::testing::Test {
 protected:
  SessionStoreFrontTest() { MakeStore(StoreOptions()); }

  // A fresh store (and backend) with `options`.
  void MakeStore(const StoreOptions& options) {
    store_.reset();
    auto fake = std::make_unique<FakeBackend>(NewMemoryBackend(&clock_));
    fake_ = fake.get();
    store_ = std::make_unique<SessionStore>(&clock_, options, std::move(fake));
  }

  // The code of Create(NumberedRecord(i) of `tenant`, LiveCap(cap)).
  StatusCode CreateCapped(int i, int64_t cap,
                          absl::string_view tenant = kTenant) {
    return store_->Create(RecordIn(tenant, i), LiveCap(cap)).status().code();
  }

  ManualClock clock_;
  FakeBackend* fake_ = nullptr;
  std::unique_ptr<SessionStore> store_;
};

TEST(SessionStoreOpenTest, RejectsNullClockAndNegativeMaxAgeBeforeOpening) {
  ManualClock clock;
  int opened = 0;
  auto open = [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
    ++opened;
    return NewMemoryBackend(&clock);
  };
  EXPECT_EQ(SessionStore::Open(nullptr, {}, open).status().code(),
            StatusCode::kInvalidArgument);
  StoreOptions negative;
  negative.live_count_max_age = -absl::Nanoseconds(1);
  EXPECT_EQ(SessionStore::Open(&clock, negative, open).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(opened, 0);

  StoreOptions zero;
  zero.live_count_max_age = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      SessionStore::Open(&clock, zero, open);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(opened, 1);
  EXPECT_EQ((*store)->backend_name(), "memory");
}

TEST(SessionStoreOpenTest, PassesOnTheBackendsError) {
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<SessionStore>> store = SessionStore::Open(
      &clock, {}, []() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
        return absl::UnavailableError("no server");
      });
  EXPECT_EQ(store.status(), absl::UnavailableError("no server"));
}

TEST_F(SessionStoreFrontTest, BadArgumentsNeverReachTheBackend) {
  SessionRecord no_id = NumberedRecord(1);
  no_id.id.clear();
  EXPECT_EQ(store_->Create(no_id, {}).status().code(),
            StatusCode::kInvalidArgument);
  SessionUpdate bad_timeout;
  bad_timeout.idle_timeout = absl::ZeroDuration();
  EXPECT_EQ(store_->Update(kTenant, NumberedTokenHash(1), bad_timeout)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_
                ->Cycle(kTenant, NumberedTokenHash(1),
                        MakeCycle(NumberedTokenHash(1)), {})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_
                ->Cycle(kTenant, NumberedTokenHash(1),
                        MakeCycle(NumberedTokenHash(2), "\xff"), {})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListForUser(kTenant, "u", 0, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListForUser(kTenant, "", 1, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->DeleteForUser(kTenant, "", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

// Every call but PruneAllExpired names a tenant, and the front checks it
// before anything else, for every backend.
TEST_F(SessionStoreFrontTest, InvalidTenantNamesNeverReachTheBackend) {
  ASSERT_TRUE(store_->Create(NumberedRecord(1, "alice"), {}).ok());
  fake_->ClearCalls();
  for (const std::string& bad :
       {std::string(), std::string(65, 'a'), std::string("a:b"),
        std::string("a b"), std::string("a\0b", 3),
        std::string("caf\xc3\xa9")}) {
    SCOPED_TRACE(bad);
    const std::string hash = NumberedTokenHash(1);
    EXPECT_EQ(store_->Create(RecordIn(bad, 2), LiveCap(10)).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Load(bad, hash).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Load(bad, "short").status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(
        store_->LoadAndTouch(bad, hash, absl::ZeroDuration()).status().code(),
        StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Update(bad, hash, MakeUpdate("x")).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Cycle(bad, hash, MakeCycle(NumberedTokenHash(2)), {})
                  .status()
                  .code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->DeleteByTokenHash(bad, hash).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->DeleteById(bad, "id-1").status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->DeleteForUser(bad, "alice", "").status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->ListForUser(bad, "alice", 10, {}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->CountLive(bad).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->PruneExpired(bad).status().code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(fake_->calls(), Calls{});
}

TEST_F(SessionStoreFrontTest, EachCallPassesItsTenantOn) {
  ASSERT_TRUE(store_->Create(RecordIn(kOther, 1, "alice"), {}).ok());
  EXPECT_EQ(fake_->last_tenant(), std::string(kOther));
  EXPECT_EQ(fake_->last_create().tenant, kOther);
  const std::string hash = NumberedTokenHash(1);
  const std::vector<std::pair<std::string, std::function<bool()>>> calls = {
      {"load", [&] { return store_->Load(kOther, hash).ok(); }},
      {"load_and_touch",
       [&] {
         return store_->LoadAndTouch(kOther, hash, absl::ZeroDuration()).ok();
       }},
      {"update",
       [&] { return store_->Update(kOther, hash, MakeUpdate("x")).ok(); }},
      {"list_for_user",
       [&] { return store_->ListForUser(kOther, "alice", 10, {}).ok(); }},
      {"count_live", [&] { return store_->CountLive(kOther).ok(); }},
      {"prune_expired", [&] { return store_->PruneExpired(kOther).ok(); }},
      {"delete_for_user",
       [&] { return store_->DeleteForUser(kOther, "alice", "id-1").ok(); }},
      {"delete_by_id", [&] { return store_->DeleteById(kOther, "id-9").ok(); }},
      {"cycle",
       [&] {
         return store_->Cycle(kOther, hash, MakeCycle(NumberedTokenHash(2)), {})
             .ok();
       }},
      {"delete_by_token_hash",
       [&] {
         return store_->DeleteByTokenHash(kOther, NumberedTokenHash(2)).ok();
       }},
  };
  for (const auto& [name, call] : calls) {
    SCOPED_TRACE(name);
    fake_->ClearCalls();
    ASSERT_TRUE(call());
    EXPECT_EQ(fake_->calls(), Calls{name});
    EXPECT_EQ(fake_->last_tenant(), std::string(kOther));
  }
  // PruneAllExpired asks for every tenant's.
  ASSERT_TRUE(store_->PruneAllExpired().ok());
  EXPECT_EQ(fake_->last_tenant(), std::nullopt);
}

// Limits may not be negative (0 is no cap); they reach the backend as given.
TEST_F(SessionStoreFrontTest, TenantLimitsAreCheckedAndPassedOn) {
  for (const TenantLimits& bad :
       {TenantLimits{-1, 0}, TenantLimits{0, -1}, TenantLimits{-5, -5}}) {
    EXPECT_EQ(store_->Create(NumberedRecord(1), bad).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store_
                  ->Cycle(kTenant, NumberedTokenHash(1),
                          MakeCycle(NumberedTokenHash(2), "u"), bad)
                  .status()
                  .code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(fake_->calls(), Calls{});

  const TenantLimits limits{3, 1000};
  ASSERT_TRUE(store_->Create(NumberedRecord(1, "u"), limits).ok());
  EXPECT_EQ(fake_->last_limits().max_sessions_per_user, 3);
  EXPECT_EQ(fake_->last_limits().max_live_sessions, 1000);
  const TenantLimits cycle_limits{7, 0};
  ASSERT_TRUE(store_
                  ->Cycle(kTenant, NumberedTokenHash(1),
                          MakeCycle(NumberedTokenHash(2), "v"), cycle_limits)
                  .ok());
  EXPECT_EQ(fake_->last_limits().max_sessions_per_user, 7);
  EXPECT_EQ(fake_->last_limits().max_live_sessions, 0);
}

// What the caller leaves unset stays unset on the way to the backend: an
// Update without a payload keeps it, a Cycle without a user or payload
// keeps those.
TEST_F(SessionStoreFrontTest, UpdatesAndCyclesReachTheBackendAsGiven) {
  ASSERT_TRUE(store_->Create(NumberedRecord(1, "alice"), {}).ok());
  SessionUpdate keep;
  keep.idle_timeout = absl::Minutes(3);
  absl::StatusOr<SessionRecord> updated =
      store_->Update(kTenant, NumberedTokenHash(1), keep);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(fake_->last_update().sealed_payload, std::nullopt);
  EXPECT_EQ(fake_->last_update().idle_timeout, absl::Minutes(3));
  EXPECT_EQ(updated->sealed_payload, NumberedRecord(1).sealed_payload);
  EXPECT_EQ(updated->user_id, "alice");

  ASSERT_TRUE(
      store_
          ->Update(kTenant, NumberedTokenHash(1), MakeUpdate(std::string(), 2))
          .ok());
  EXPECT_EQ(fake_->last_update().sealed_payload, std::string());
  EXPECT_EQ(fake_->last_update().expected_version, 2);

  ASSERT_TRUE(store_
                  ->Cycle(kTenant, NumberedTokenHash(1),
                          MakeCycle(NumberedTokenHash(2)), {})
                  .ok());
  SessionCycle c = fake_->last_cycle();
  EXPECT_EQ(c.new_token_hash, NumberedTokenHash(2));
  EXPECT_EQ(c.user_id, std::nullopt);
  EXPECT_EQ(c.sealed_payload, std::nullopt);
  EXPECT_EQ(c.expected_version, std::nullopt);
  absl::StatusOr<SessionRecord> cycled =
      store_->Cycle(kTenant, NumberedTokenHash(2),
                    MakeCycle(NumberedTokenHash(3), "bob", "resealed", 4), {});
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  c = fake_->last_cycle();
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(c.sealed_payload, "resealed");
  EXPECT_EQ(c.expected_version, 4);
  EXPECT_EQ(cycled->version, 5);
}

TEST_F(SessionStoreFrontTest,
       WhatNoSessionCanMatchIsAnsweredWithoutTheBackend) {
  const std::string short_hash(31, 'h');
  EXPECT_EQ(store_->Load(kTenant, short_hash).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->LoadAndTouch(kTenant, short_hash, absl::ZeroDuration())
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(
      store_->Update(kTenant, short_hash, SessionUpdate()).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(
      store_->Update(kTenant, short_hash, MakeUpdate("x", 3)).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(store_
                ->Cycle(kTenant, short_hash,
                        MakeCycle(NumberedTokenHash(2), "u", "p", 3), {})
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(*store_->DeleteByTokenHash(kTenant, short_hash), 0);
  EXPECT_EQ(*store_->DeleteById(kTenant, std::string("a\0b", 3)), 0);
  EXPECT_EQ(*store_->DeleteForUser(kTenant, "\xff", ""), 0);
  absl::StatusOr<SessionPage> page =
      store_->ListForUser(kTenant, "\xff", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->sessions.empty());
  EXPECT_EQ(fake_->calls(), Calls{});
}

// Timeouts are kept in whole microseconds: one that truncates to zero
// would make a session that is expired as it is created.
TEST_F(SessionStoreFrontTest, TimeoutsUnderAMicrosecondAreInvalid) {
  SessionRecord r = NumberedRecord(1, "u", absl::Nanoseconds(999));
  EXPECT_EQ(store_->Create(r, {}).status().code(),
            StatusCode::kInvalidArgument);
  r = NumberedRecord(1, "u", absl::Minutes(1), absl::Nanoseconds(1));
  EXPECT_EQ(store_->Create(r, {}).status().code(),
            StatusCode::kInvalidArgument);
  SessionUpdate update;
  update.idle_timeout = absl::Nanoseconds(500);
  EXPECT_EQ(
      store_->Update(kTenant, NumberedTokenHash(1), update).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

// Whichever backend found no session, the caller reads one wording.
TEST_F(SessionStoreFrontTest, NotFoundHasOneWording) {
  fake_->FailCall("load", absl::NotFoundError("backend words"));
  const absl::Status from_backend =
      store_->Load(kTenant, NumberedTokenHash(1)).status();
  const absl::Status from_front = store_->Load(kTenant, "short").status();
  EXPECT_EQ(from_backend, from_front);
  EXPECT_TRUE(absl::IsNotFound(from_backend));
}

TEST_F(SessionStoreFrontTest, TimeoutsReachTheBackendTruncatedToMicros) {
  SessionRecord r =
      NumberedRecord(1, "u", absl::Nanoseconds(1500), absl::Nanoseconds(2999));
  r.version = 7;  // ignored, like the times
  r.created_at = absl::FromUnixSeconds(5);
  absl::StatusOr<SessionRecord> created = store_->Create(r, {});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(fake_->last_create().idle_timeout, absl::Microseconds(1));
  EXPECT_EQ(fake_->last_create().absolute_lifetime, absl::Microseconds(2));
  EXPECT_EQ(created->version, 1);
  EXPECT_EQ(created->created_at, TruncateToMicros(clock_.Now()));

  SessionUpdate update;
  update.idle_timeout = absl::Nanoseconds(4001);
  update.absolute_lifetime = absl::InfiniteDuration();
  ASSERT_TRUE(store_->Update(kTenant, r.token_hash, update).ok());
  EXPECT_EQ(fake_->last_update().idle_timeout, absl::Microseconds(4));
  EXPECT_EQ(fake_->last_update().absolute_lifetime, absl::InfiniteDuration());

  // Whole microseconds pass as they are.
  update.idle_timeout = absl::Seconds(3);
  ASSERT_TRUE(store_->Update(kTenant, r.token_hash, update).ok());
  EXPECT_EQ(fake_->last_update().idle_timeout, absl::Seconds(3));
}

TEST_F(SessionStoreFrontTest, PagesAskForOneMoreThanTheLimit) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Create(NumberedRecord(i, "u"), {}).ok());
    clock_.Advance(absl::Seconds(1));
  }
  absl::StatusOr<SessionPage> page = store_->ListForUser(kTenant, "u", 2, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(fake_->last_list_count(), 3);
  ASSERT_EQ(page->sessions.size(), 2u);
  ASSERT_TRUE(page->next.has_value());
  EXPECT_EQ(page->next->id, page->sessions[1].id);
  EXPECT_EQ(page->next->last_active_at, page->sessions[1].last_active_at);

  page = store_->ListForUser(kTenant, "u", 2, page->next);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_FALSE(page->next.has_value());
}

// ABORTED means an expected_version mismatch and nothing else, so only
// Update and Cycle may return it; a backend that returns a code its call
// may not return is reported as INTERNAL, with the backend's message kept
// for the operator.
TEST_F(SessionStoreFrontTest, CodesACallMayNotReturnBecomeInternal) {
  ASSERT_TRUE(store_->Create(NumberedRecord(1), {}).ok());
  fake_->FailCall("load", absl::AbortedError("row changed concurrently"));
  absl::StatusOr<SessionRecord> loaded =
      store_->Load(kTenant, NumberedTokenHash(1));
  EXPECT_EQ(loaded.status().code(), StatusCode::kInternal);
  EXPECT_NE(loaded.status().message().find("row changed concurrently"),
            std::string::npos);

  fake_->FailCall("create", absl::AbortedError("x"));
  EXPECT_EQ(store_->Create(NumberedRecord(2), {}).status().code(),
            StatusCode::kInternal);
  fake_->FailCall("update", absl::AlreadyExistsError("x"));
  EXPECT_EQ(store_->Update(kTenant, NumberedTokenHash(1), {}).status().code(),
            StatusCode::kInternal);
  fake_->FailCall("cycle", absl::PermissionDeniedError("x"));
  EXPECT_EQ(store_
                ->Cycle(kTenant, NumberedTokenHash(1),
                        MakeCycle(NumberedTokenHash(2)), {})
                .status()
                .code(),
            StatusCode::kInternal);
  fake_->FailCall("delete_by_id", absl::NotFoundError("x"));
  EXPECT_EQ(store_->DeleteById(kTenant, "id-1").status().code(),
            StatusCode::kInternal);
  fake_->FailCall("count_live", absl::NotFoundError("x"));
  EXPECT_EQ(store_->CountLive(kTenant).status().code(), StatusCode::kInternal);
  fake_->FailCall("ping", absl::FailedPreconditionError("x"));
  EXPECT_EQ(store_->Ping().code(), StatusCode::kInternal);
  fake_->FailCall("prune_expired", absl::PermissionDeniedError("x"));
  EXPECT_EQ(store_->PruneExpired(kTenant).status().code(),
            StatusCode::kInternal);
  EXPECT_EQ(store_->PruneAllExpired().status().code(), StatusCode::kInternal);
}

TEST_F(SessionStoreFrontTest, CodesACallMayReturnPassUnchanged) {
  const absl::Status unavailable = absl::UnavailableError("down");
  fake_->FailAll(unavailable);
  EXPECT_EQ(store_->Create(NumberedRecord(1), {}).status(), unavailable);
  EXPECT_EQ(store_->Load(kTenant, NumberedTokenHash(1)).status(), unavailable);
  EXPECT_EQ(store_->ListForUser(kTenant, "u", 1, {}).status(), unavailable);
  EXPECT_EQ(store_->CountLive(kTenant).status(), unavailable);
  EXPECT_EQ(store_->PruneAllExpired().status(), unavailable);
  EXPECT_EQ(store_->Ping(), unavailable);

  fake_->FailCall("update", absl::AbortedError("version"));
  EXPECT_EQ(store_->Update(kTenant, NumberedTokenHash(1), {}).status(),
            absl::AbortedError("version"));
  fake_->FailCall("load_and_touch", absl::NotFoundError("gone"));
  EXPECT_EQ(
      store_->LoadAndTouch(kTenant, NumberedTokenHash(1), absl::ZeroDuration())
          .status()
          .code(),
      StatusCode::kNotFound);
  fake_->FailCall("create", absl::AlreadyExistsError("taken"));
  EXPECT_EQ(store_->Create(NumberedRecord(1), {}).status(),
            absl::AlreadyExistsError("taken"));
}

// Cycle may return NOT_FOUND, ABORTED and ALREADY_EXISTS, each as the
// backend gave it (NOT_FOUND in the one wording); argument errors come
// before all three.
TEST_F(SessionStoreFrontTest, CycleCodes) {
  const std::string old_hash = NumberedTokenHash(1);
  auto cycle = [&](const SessionCycle& c) {
    return store_->Cycle(kTenant, old_hash, c, {}).status();
  };
  const SessionCycle to2 = MakeCycle(NumberedTokenHash(2), "u", "p", 1);
  fake_->FailCall("cycle", absl::NotFoundError("backend words"));
  EXPECT_EQ(cycle(to2), store_->Load(kTenant, "short").status());
  fake_->FailCall("cycle", absl::AbortedError("version"));
  EXPECT_EQ(cycle(to2), absl::AbortedError("version"));
  fake_->FailCall("cycle", absl::AlreadyExistsError("taken"));
  EXPECT_EQ(cycle(to2), absl::AlreadyExistsError("taken"));
  EXPECT_EQ(fake_->count("cycle"), 3);

  fake_->ClearCalls();
  EXPECT_EQ(cycle(MakeCycle(old_hash, "u", "p", 1)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cycle(MakeCycle("short", "u", "p", 1)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      cycle(MakeCycle(NumberedTokenHash(2), std::string("u\0", 2), "p", 1))
          .code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->Cycle(kTenant, "short", MakeCycle("also short", "u", "p", 1), {})
          .status()
          .code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

// ---------------------------------------------------------------------------
// The live-session cap and the count behind it.

TEST_F(SessionStoreFrontTest, UncappedCreatesNeverCount) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Create(NumberedRecord(i), {}).ok());
  }
  ASSERT_TRUE(store_->Create(NumberedRecord(3), TenantLimits{2, 0}).ok());
  EXPECT_EQ(fake_->count("count_live"), 0);
  EXPECT_EQ(fake_->count("create"), 4);
}

TEST_F(SessionStoreFrontTest, FirstCappedCreateReadsTheCount) {
  fake_->SetCountLive(5);
  EXPECT_EQ(CreateCapped(1, 5), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->calls(), Calls{"count_live"});
  EXPECT_EQ(fake_->last_tenant(), std::string(kTenant));
  EXPECT_EQ(CreateCapped(1, 6), StatusCode::kOk);
  EXPECT_EQ(fake_->calls(), (Calls{"count_live", "create"}));
  // 5 read, plus the one created: at 7 the tenant is full.
  EXPECT_EQ(CreateCapped(2, 7), StatusCode::kOk);
  EXPECT_EQ(CreateCapped(3, 7), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 1);
  EXPECT_EQ(fake_->count("create"), 2);
  // Nothing was written by the refused creates.
  EXPECT_FALSE(store_->Load(kTenant, NumberedTokenHash(3)).ok());
}

TEST_F(SessionStoreFrontTest, CountIsKeptForLiveCountMaxAge) {
  StoreOptions options;
  options.live_count_max_age = absl::Seconds(5);
  MakeStore(options);
  fake_->SetCountLive(0);
  ASSERT_EQ(CreateCapped(1, 100), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 1);
  // The backend's count changes behind the store's back (another process);
  // within the age the store keeps its own.
  fake_->SetCountLive(100);
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(CreateCapped(2, 100), StatusCode::kOk);
  clock_.Advance(absl::Seconds(3));  // exactly the age: still fresh
  EXPECT_EQ(CreateCapped(3, 100), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 1);
  // Older than that: read anew.
  clock_.Advance(absl::Microseconds(1));
  EXPECT_EQ(CreateCapped(4, 100), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 2);
  // And the new reading is kept in its turn.
  fake_->SetCountLive(0);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(CreateCapped(4, 100), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 2);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(CreateCapped(4, 100), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 3);
}

// A create under a per-user cap may evict sessions the kept count still
// holds: the count is read anew before it refuses, and only then.
TEST_F(SessionStoreFrontTest, EvictingCreatesRereadTheCountBeforeARefusal) {
  const TenantLimits limits{/*max_sessions_per_user=*/1,
                            /*max_live_sessions=*/3};
  fake_->SetCountLive(0);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(store_->Create(NumberedRecord(i, "alice"), limits).ok()) << i;
  }
  EXPECT_EQ(fake_->count("count_live"), 1);
  // Kept: 3, the cap. Alice really has one session left.
  fake_->SetCountLive(1);
  ASSERT_TRUE(store_->Create(NumberedRecord(4, "alice"), limits).ok());
  EXPECT_EQ(fake_->count("count_live"), 2);
  // Kept: 2. A full tenant is still refused, by a fresh count.
  fake_->SetCountLive(3);
  ASSERT_TRUE(store_->Create(NumberedRecord(5, "bob"), limits).ok());
  EXPECT_EQ(fake_->count("count_live"), 2);
  EXPECT_EQ(store_->Create(NumberedRecord(6, "carol"), limits).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 3);
}

// Between readings, the kept count follows what this store creates and
// deletes: +1 for each create (capped or not), minus what each delete
// removed, never below zero; failed calls change nothing.
TEST_F(SessionStoreFrontTest, KeptCountFollowsThisStoresCreatesAndDeletes) {
  fake_->SetCountLive(0);  // the kept count is then all the store's own
  ASSERT_EQ(CreateCapped(1, 3), StatusCode::kOk);  // read 0, now 1
  ASSERT_TRUE(store_->Create(NumberedRecord(2, "alice"), {}).ok());  // 2
  ASSERT_EQ(CreateCapped(3, 3), StatusCode::kOk);                    // 3
  EXPECT_EQ(CreateCapped(4, 3), StatusCode::kResourceExhausted);
  // A create that fails adds nothing.
  EXPECT_EQ(store_->Create(NumberedRecord(1), {}).status().code(),
            StatusCode::kAlreadyExists);
  fake_->FailCall("create", absl::UnavailableError("down"));
  EXPECT_EQ(store_->Create(NumberedRecord(9), {}).status().code(),
            StatusCode::kUnavailable);
  fake_->FailCall("create", absl::OkStatus());
  // Deletes that remove nothing, or fail, make no room.
  ASSERT_EQ(*store_->DeleteById(kTenant, "no-such-id"), 0);
  fake_->FailCall("delete_by_id", absl::UnavailableError("down"));
  EXPECT_FALSE(store_->DeleteById(kTenant, "id-1").ok());
  fake_->FailCall("delete_by_id", absl::OkStatus());
  EXPECT_EQ(CreateCapped(4, 3), StatusCode::kResourceExhausted);
  // Each kind of delete makes room for what it removed.
  ASSERT_EQ(*store_->DeleteById(kTenant, "id-1"), 1);
  EXPECT_EQ(CreateCapped(4, 3), StatusCode::kOk);
  ASSERT_EQ(*store_->DeleteByTokenHash(kTenant, NumberedTokenHash(3)), 1);
  EXPECT_EQ(CreateCapped(5, 3), StatusCode::kOk);
  ASSERT_TRUE(store_->Create(NumberedRecord(6, "alice"), {}).ok());  // 4
  ASSERT_EQ(*store_->DeleteForUser(kTenant, "alice", ""), 2);        // 2
  EXPECT_EQ(CreateCapped(7, 3), StatusCode::kOk);
  EXPECT_EQ(CreateCapped(8, 3), StatusCode::kResourceExhausted);
  // Updates, cycles, touches and loads are not creates.
  ASSERT_TRUE(
      store_->Update(kTenant, NumberedTokenHash(7), MakeUpdate("x")).ok());
  ASSERT_TRUE(store_
                  ->Cycle(kTenant, NumberedTokenHash(7),
                          MakeCycle(NumberedTokenHash(17), "bob"), {})
                  .ok());
  EXPECT_EQ(CreateCapped(8, 3), StatusCode::kResourceExhausted);
  EXPECT_EQ(CreateCapped(8, 4), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 1);
}

TEST_F(SessionStoreFrontTest, KeptCountNeverGoesBelowZero) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Create(NumberedRecord(i, "alice"), {}).ok());
  }
  fake_->SetCountLive(0);  // a count that misses them (another process)
  ASSERT_EQ(CreateCapped(3, 1), StatusCode::kOk);              // read 0, now 1
  ASSERT_EQ(*store_->DeleteForUser(kTenant, "alice", ""), 3);  // 1 - 3 -> 0
  EXPECT_EQ(CreateCapped(4, 1), StatusCode::kOk);              // 0 -> 1
  EXPECT_EQ(CreateCapped(5, 1), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 1);
}

TEST_F(SessionStoreFrontTest, EachTenantHasItsOwnCount) {
  fake_->SetCountLive(0);
  ASSERT_EQ(CreateCapped(1, 1, kTenant), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 1);
  // kOther's first capped create reads its own count, and kTenant's
  // creates and deletes do not move it.
  ASSERT_EQ(CreateCapped(2, 1, kOther), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 2);
  EXPECT_EQ(fake_->last_tenant(), std::string(kOther));
  EXPECT_EQ(CreateCapped(3, 1, kTenant), StatusCode::kResourceExhausted);
  EXPECT_EQ(CreateCapped(3, 1, kOther), StatusCode::kResourceExhausted);
  ASSERT_EQ(*store_->DeleteById(kTenant, "id-1"), 1);
  EXPECT_EQ(CreateCapped(3, 1, kOther), StatusCode::kResourceExhausted);
  EXPECT_EQ(CreateCapped(3, 1, kTenant), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 2);
}

// With live_count_max_age zero, a count is used only at the instant it was
// read: any later capped create reads anew.
TEST_F(SessionStoreFrontTest, ZeroMaxAgeReadsAnewOnceTheClockMoves) {
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  MakeStore(options);
  ASSERT_EQ(CreateCapped(1, 10), StatusCode::kOk);
  ASSERT_EQ(CreateCapped(2, 10), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 1);
  clock_.Advance(absl::Nanoseconds(1));
  ASSERT_EQ(CreateCapped(3, 10), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 2);
  fake_->SetCountLive(10);
  EXPECT_EQ(CreateCapped(4, 10), StatusCode::kOk);  // same instant: kept
  clock_.Advance(absl::Nanoseconds(1));
  EXPECT_EQ(CreateCapped(4, 10), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 3);
}

// A count read at a later time than now (the clock stepped back) is not
// trusted: it is read anew.
TEST_F(SessionStoreFrontTest, CountFromTheFutureIsReadAnew) {
  fake_->SetCountLive(0);
  ASSERT_EQ(CreateCapped(1, 10), StatusCode::kOk);
  clock_.Set(clock_.Now() - absl::Seconds(1));
  fake_->SetCountLive(10);
  EXPECT_EQ(CreateCapped(2, 10), StatusCode::kResourceExhausted);
  EXPECT_EQ(fake_->count("count_live"), 2);
}

// A count that cannot be read fails the create with its code (nothing
// written), and is not kept: the next capped create tries again.
TEST_F(SessionStoreFrontTest, CountThatCannotBeReadFailsTheCreate) {
  fake_->FailCall("count_live", absl::UnavailableError("down"));
  EXPECT_EQ(store_->Create(NumberedRecord(1), LiveCap(10)).status(),
            absl::UnavailableError("down"));
  EXPECT_EQ(fake_->count("create"), 0);
  fake_->FailCall("count_live", absl::NotFoundError("odd"));
  EXPECT_EQ(CreateCapped(1, 10), StatusCode::kInternal);
  fake_->FailCall("count_live", absl::OkStatus());
  EXPECT_EQ(CreateCapped(1, 10), StatusCode::kOk);
  EXPECT_EQ(fake_->count("count_live"), 3);
  EXPECT_EQ(fake_->count("create"), 1);
}

// Bad arguments are answered before the count is read.
TEST_F(SessionStoreFrontTest, BadCreatesNeverReadTheCount) {
  SessionRecord no_id = NumberedRecord(1);
  no_id.id.clear();
  EXPECT_EQ(store_->Create(no_id, LiveCap(1)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Create(RecordIn("a:b", 1), LiveCap(1)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->Create(NumberedRecord(1), TenantLimits{-1, 1}).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

}  // namespace
}  // namespace sessiond::storage
