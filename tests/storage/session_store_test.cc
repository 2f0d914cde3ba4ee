// Tests of the SessionStore front itself: what it decides without asking
// the backend, what it hands the backend, and which codes it lets through.
// The conformance suite checks the contract end to end on every backend.
#include "storage/session_store.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

class SessionStoreFrontTest : public testing::Test {
 protected:
  SessionStoreFrontTest() {
    auto fake = std::make_unique<FakeBackend>(NewMemoryBackend(&clock_, {}));
    fake_ = fake.get();
    store_ = std::make_unique<SessionStore>(std::move(fake));
  }

  ManualClock clock_;
  FakeBackend* fake_;
  std::unique_ptr<SessionStore> store_;
};

TEST(SessionStoreOpenTest, RejectsNullClockAndNegativeCapBeforeOpening) {
  ManualClock clock;
  int opened = 0;
  auto open = [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
    ++opened;
    return NewMemoryBackend(&clock, {});
  };
  EXPECT_EQ(SessionStore::Open(nullptr, {}, open).status().code(),
            StatusCode::kInvalidArgument);
  StoreOptions negative;
  negative.max_sessions_per_user = -1;
  EXPECT_EQ(SessionStore::Open(&clock, negative, open).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(opened, 0);

  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      SessionStore::Open(&clock, {}, open);
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
  EXPECT_EQ(store_->Create(no_id).status().code(),
            StatusCode::kInvalidArgument);
  SessionUpdate bad_timeout;
  bad_timeout.idle_timeout = absl::ZeroDuration();
  EXPECT_EQ(store_->Update(NumberedTokenHash(1), bad_timeout).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Cycle(NumberedTokenHash(1), NumberedTokenHash(1), {})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListForUser("u", 0, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListForUser("", 1, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->DeleteForUser("", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

TEST_F(SessionStoreFrontTest,
       WhatNoSessionCanMatchIsAnsweredWithoutTheBackend) {
  const std::string short_hash(31, 'h');
  EXPECT_EQ(store_->Load(short_hash).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(
      store_->LoadAndTouch(short_hash, absl::ZeroDuration()).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(store_->Update(short_hash, SessionUpdate()).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->Cycle(short_hash, NumberedTokenHash(2), {}).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(*store_->DeleteByTokenHash(short_hash), 0);
  EXPECT_EQ(*store_->DeleteById(std::string("a\0b", 3)), 0);
  EXPECT_EQ(*store_->DeleteForUser("\xff", ""), 0);
  absl::StatusOr<SessionPage> page = store_->ListForUser("\xff", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->sessions.empty());
  EXPECT_EQ(fake_->calls(), Calls{});
}

// Timeouts are kept in whole microseconds: one that truncates to zero
// would make a session that is expired as it is created.
TEST_F(SessionStoreFrontTest, TimeoutsUnderAMicrosecondAreInvalid) {
  SessionRecord r = NumberedRecord(1, "u", absl::Nanoseconds(999));
  EXPECT_EQ(store_->Create(r).status().code(), StatusCode::kInvalidArgument);
  r = NumberedRecord(1, "u", absl::Minutes(1), absl::Nanoseconds(1));
  EXPECT_EQ(store_->Create(r).status().code(), StatusCode::kInvalidArgument);
  SessionUpdate update;
  update.idle_timeout = absl::Nanoseconds(500);
  EXPECT_EQ(store_->Update(NumberedTokenHash(1), update).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_->calls(), Calls{});
}

// Whichever backend found no session, the caller reads one wording.
TEST_F(SessionStoreFrontTest, NotFoundHasOneWording) {
  fake_->FailCall("load", absl::NotFoundError("backend words"));
  const absl::Status from_backend = store_->Load(NumberedTokenHash(1)).status();
  const absl::Status from_front = store_->Load("short").status();
  EXPECT_EQ(from_backend, from_front);
  EXPECT_TRUE(absl::IsNotFound(from_backend));
}

TEST_F(SessionStoreFrontTest, TimeoutsReachTheBackendTruncatedToMicros) {
  SessionRecord r =
      NumberedRecord(1, "u", absl::Nanoseconds(1500), absl::Nanoseconds(2999));
  r.version = 7;  // ignored, like the times
  r.created_at = absl::FromUnixSeconds(5);
  absl::StatusOr<SessionRecord> created = store_->Create(r);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(fake_->last_create().idle_timeout, absl::Microseconds(1));
  EXPECT_EQ(fake_->last_create().absolute_lifetime, absl::Microseconds(2));
  EXPECT_EQ(created->version, 1);
  EXPECT_EQ(created->created_at, TruncateToMicros(clock_.Now()));

  SessionUpdate update;
  update.idle_timeout = absl::Nanoseconds(4001);
  update.absolute_lifetime = absl::InfiniteDuration();
  ASSERT_TRUE(store_->Update(r.token_hash, update).ok());
  EXPECT_EQ(fake_->last_update().idle_timeout, absl::Microseconds(4));
  EXPECT_EQ(fake_->last_update().absolute_lifetime, absl::InfiniteDuration());

  // Whole microseconds pass as they are.
  update.idle_timeout = absl::Seconds(3);
  ASSERT_TRUE(store_->Update(r.token_hash, update).ok());
  EXPECT_EQ(fake_->last_update().idle_timeout, absl::Seconds(3));
}

TEST_F(SessionStoreFrontTest, PagesAskForOneMoreThanTheLimit) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Create(NumberedRecord(i, "u")).ok());
    clock_.Advance(absl::Seconds(1));
  }
  absl::StatusOr<SessionPage> page = store_->ListForUser("u", 2, {});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(fake_->last_list_count(), 3);
  ASSERT_EQ(page->sessions.size(), 2u);
  ASSERT_TRUE(page->next.has_value());
  EXPECT_EQ(page->next->id, page->sessions[1].id);
  EXPECT_EQ(page->next->last_active_at, page->sessions[1].last_active_at);

  page = store_->ListForUser("u", 2, page->next);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_FALSE(page->next.has_value());
}

// ABORTED means an expected_version mismatch and nothing else: a backend
// that returns it (or any code its call may not return) is reported as
// INTERNAL, with the backend's message kept for the operator.
TEST_F(SessionStoreFrontTest, CodesACallMayNotReturnBecomeInternal) {
  ASSERT_TRUE(store_->Create(NumberedRecord(1)).ok());
  fake_->FailCall("cycle", absl::AbortedError("row changed concurrently"));
  absl::StatusOr<SessionRecord> cycled =
      store_->Cycle(NumberedTokenHash(1), NumberedTokenHash(2), {});
  EXPECT_EQ(cycled.status().code(), StatusCode::kInternal);
  EXPECT_NE(cycled.status().message().find("row changed concurrently"),
            std::string::npos);

  fake_->FailCall("create", absl::AbortedError("x"));
  EXPECT_EQ(store_->Create(NumberedRecord(2)).status().code(),
            StatusCode::kInternal);
  fake_->FailCall("update", absl::AlreadyExistsError("x"));
  EXPECT_EQ(store_->Update(NumberedTokenHash(1), {}).status().code(),
            StatusCode::kInternal);
  fake_->FailCall("delete_by_id", absl::NotFoundError("x"));
  EXPECT_EQ(store_->DeleteById("id-1").status().code(), StatusCode::kInternal);
  fake_->FailCall("ping", absl::FailedPreconditionError("x"));
  EXPECT_EQ(store_->Ping().code(), StatusCode::kInternal);
  fake_->FailCall("prune_expired", absl::PermissionDeniedError("x"));
  EXPECT_EQ(store_->PruneExpired().status().code(), StatusCode::kInternal);
}

TEST_F(SessionStoreFrontTest, CodesACallMayReturnPassUnchanged) {
  const absl::Status unavailable = absl::UnavailableError("down");
  fake_->FailAll(unavailable);
  EXPECT_EQ(store_->Create(NumberedRecord(1)).status(), unavailable);
  EXPECT_EQ(store_->Load(NumberedTokenHash(1)).status(), unavailable);
  EXPECT_EQ(store_->ListForUser("u", 1, {}).status(), unavailable);
  EXPECT_EQ(store_->Ping(), unavailable);

  fake_->FailCall("update", absl::AbortedError("version"));
  EXPECT_EQ(store_->Update(NumberedTokenHash(1), {}).status(),
            absl::AbortedError("version"));
  fake_->FailCall("cycle", absl::AlreadyExistsError("taken"));
  EXPECT_EQ(
      store_->Cycle(NumberedTokenHash(1), NumberedTokenHash(2), {}).status(),
      absl::AlreadyExistsError("taken"));
  fake_->FailCall("load_and_touch", absl::NotFoundError("gone"));
  EXPECT_EQ(store_->LoadAndTouch(NumberedTokenHash(1), absl::ZeroDuration())
                .status()
                .code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace sessiond::storage
