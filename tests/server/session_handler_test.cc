// SessionHandler over a real memory store and a real AES-256-GCM sealer.
#include "server/session_handler.h"

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "crypto/token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"
#include "storage/session_store.h"
#include "tests/storage/fake_backend.h"

namespace sessiond {
namespace {

using ::testing::HasSubstr;

const std::string kKeyA(32, 'a');
const std::string kKeyB(32, 'b');

std::unique_ptr<crypto::Sealer> SealerFor(std::vector<std::string> keys) {
  absl::StatusOr<crypto::KeyRing> ring = crypto::KeyRing::FromKeys(keys);
  EXPECT_TRUE(ring.ok()) << ring.status();
  absl::StatusOr<std::unique_ptr<crypto::Sealer>> sealer =
      crypto::NewAesGcmSealer(std::move(*ring));
  EXPECT_TRUE(sealer.ok()) << sealer.status();
  return std::move(*sealer);
}

class SessionHandlerTest : public ::testing::Test {
 protected:
  SessionHandlerTest()
      : store_(*storage::OpenMemoryStore(&clock_, storage::StoreOptions{})),
        sealer_(SealerFor({kKeyA})),
        handler_(store_.get(), sealer_.get(), HandlerOptions{}) {}

  v1::SaveResponse Create(const std::string& user, const std::string& data) {
    v1::SaveRequest request;
    request.set_user_id(user);
    request.set_data(data);
    (*request.mutable_metadata())["ip"] = "203.0.113.7";
    absl::StatusOr<v1::SaveResponse> response = handler_.Save(Scope(), request);
    EXPECT_TRUE(response.ok()) << response.status();
    return *response;
  }

  absl::StatusOr<v1::LoadResponse> Load(const std::string& token,
                                        bool touch = false) {
    v1::LoadRequest request;
    request.set_token(token);
    request.set_touch(touch);
    return handler_.Load(Scope(), request);
  }

  const TenantScope& Scope() const { return handler_.default_scope(); }

  static void ExpectInvalid(const absl::Status& status,
                            const std::string& field) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(field));
  }

  ManualClock clock_;
  std::unique_ptr<storage::SessionStore> store_;
  std::unique_ptr<crypto::Sealer> sealer_;
  SessionHandler handler_;
};

TEST_F(SessionHandlerTest, CreateThenLoadRoundTrips) {
  v1::SaveResponse created = Create("alice", "cart=3");
  EXPECT_TRUE(created.created());
  EXPECT_TRUE(crypto::IsWellFormedSessionToken(created.token()));
  EXPECT_TRUE(crypto::IsWellFormedSessionId(created.session().id()));
  EXPECT_EQ(created.session().version(), 1);
  EXPECT_EQ(created.session().idle_timeout().seconds(), 30 * 60);
  EXPECT_EQ(created.session().absolute_lifetime().seconds(), 12 * 3600);
  EXPECT_EQ(created.session().expires_at().seconds(),
            absl::ToUnixSeconds(clock_.Now() + absl::Minutes(30)));

  absl::StatusOr<v1::LoadResponse> loaded = Load(created.token());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().id(), created.session().id());
  EXPECT_EQ(loaded->session().user_id(), "alice");
  EXPECT_EQ(loaded->session().data(), "cart=3");
  EXPECT_EQ(loaded->session().metadata().at("ip"), "203.0.113.7");
}

TEST_F(SessionHandlerTest, TokensStartWithTheirSessionId) {
  v1::SaveResponse created = Create("alice", "data");
  EXPECT_EQ(crypto::SessionIdOfToken(created.token()), created.session().id());
  v1::CycleRequest cycle;
  cycle.set_token(created.token());
  absl::StatusOr<v1::CycleResponse> cycled = handler_.Cycle(Scope(), cycle);
  ASSERT_TRUE(cycled.ok());
  EXPECT_EQ(crypto::SessionIdOfToken(cycled->token()), created.session().id());
}

TEST_F(SessionHandlerTest, TokenWithAnotherSessionsIdFindsNothing) {
  v1::SaveResponse a = Create("alice", "a-data");
  v1::SaveResponse b = Create("bob", "b-data");
  // Alice's secret behind Bob's id: well-formed, but no such token exists,
  // so neither session can be read or overwritten with it.
  const std::string forged =
      b.session().id() + a.token().substr(crypto::kSessionIdLength);
  ASSERT_TRUE(crypto::IsWellFormedSessionToken(forged));
  EXPECT_EQ(Load(forged).status().code(), absl::StatusCode::kNotFound);
  v1::SaveRequest update;
  update.set_token(forged);
  update.set_data("overwritten");
  EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(a.token())->session().data(), "a-data");
  EXPECT_EQ(Load(b.token())->session().data(), "b-data");
}

TEST_F(SessionHandlerTest, StoreHoldsNeitherTokenNorPlaintext) {
  const std::string data = "very-secret-session-data";
  v1::SaveResponse created = Create("alice", data);
  absl::StatusOr<storage::SessionRecord> record =
      store_->Load(storage::kDefaultTenant, crypto::HashToken(created.token()));
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->token_hash.size(), 32u);
  EXPECT_NE(record->token_hash, created.token());
  EXPECT_EQ(record->sealed_payload.find(data), std::string::npos);
  EXPECT_EQ(record->sealed_payload.find("203.0.113.7"), std::string::npos);
  EXPECT_EQ(record->sealed_payload.find(created.token()), std::string::npos);
}

TEST_F(SessionHandlerTest, MalformedInputNamesTheField) {
  ExpectInvalid(Load("").status(), "token");
  ExpectInvalid(Load("not-a-token").status(), "token");
  ExpectInvalid(Load(std::string(43, '!')).status(), "token");

  v1::SaveRequest save;
  save.set_user_id(std::string(257, 'u'));
  ExpectInvalid(handler_.Save(Scope(), save).status(), "user_id");
  save.set_user_id(std::string("al\0ice", 6));
  ExpectInvalid(handler_.Save(Scope(), save).status(), "user_id");
  save.Clear();
  for (int i = 0; i < 33; ++i) {
    (*save.mutable_metadata())[absl::StrCat("k", i)] = "v";
  }
  ExpectInvalid(handler_.Save(Scope(), save).status(), "metadata");
  save.Clear();
  (*save.mutable_metadata())["ua"] = std::string(1025, 'x');
  ExpectInvalid(handler_.Save(Scope(), save).status(), "metadata[ua]");
  save.Clear();
  (*save.mutable_metadata())[std::string(65, 'k')] = "v";
  ExpectInvalid(handler_.Save(Scope(), save).status(), "metadata");
  save.Clear();
  (*save.mutable_metadata())[""] = "v";
  ExpectInvalid(handler_.Save(Scope(), save).status(), "metadata");
  save.Clear();
  save.mutable_idle_timeout()->set_seconds(-5);
  ExpectInvalid(handler_.Save(Scope(), save).status(), "idle_timeout");
  save.Clear();
  save.mutable_idle_timeout()->set_seconds(0);
  ExpectInvalid(handler_.Save(Scope(), save).status(), "idle_timeout");
  save.Clear();
  save.mutable_absolute_lifetime()->set_seconds(int64_t{1} << 40);
  ExpectInvalid(handler_.Save(Scope(), save).status(), "absolute_lifetime");
  save.Clear();
  save.set_expected_version(1);
  ExpectInvalid(handler_.Save(Scope(), save).status(), "expected_version");
  save.Clear();
  save.set_token("short");
  ExpectInvalid(handler_.Save(Scope(), save).status(), "token");

  v1::CycleRequest cycle;
  ExpectInvalid(handler_.Cycle(Scope(), cycle).status(), "token");

  v1::DeleteRequest del;
  ExpectInvalid(handler_.Delete(Scope(), del).status(), "target");
  del.set_id("bad id");
  ExpectInvalid(handler_.Delete(Scope(), del).status(), "id");
  del.set_token(crypto::NewSessionToken(crypto::NewSessionId()));
  del.set_except_id(crypto::NewSessionId());
  ExpectInvalid(handler_.Delete(Scope(), del).status(), "except_id");
  del.Clear();
  del.set_user_id("");
  ExpectInvalid(handler_.Delete(Scope(), del).status(), "user_id");

  v1::ListForUserRequest list;
  ExpectInvalid(handler_.ListForUser(Scope(), list).status(), "user_id");
  list.set_user_id("alice");
  list.set_page_size(-1);
  ExpectInvalid(handler_.ListForUser(Scope(), list).status(), "page_size");
  list.set_page_size(1001);
  ExpectInvalid(handler_.ListForUser(Scope(), list).status(), "page_size");
  list.set_page_size(10);
  list.set_page_token("%%%");
  ExpectInvalid(handler_.ListForUser(Scope(), list).status(), "page_token");
  list.set_page_token("bm90LWEtY3Vyc29y");  // base64 of "not-a-cursor"
  ExpectInvalid(handler_.ListForUser(Scope(), list).status(), "page_token");
}

// The server has the last word on how long a session may live.
TEST(SessionHandlerLimitsTest, TimeoutsAboveTheConfiguredMaximumAreInvalid) {
  ManualClock clock;
  std::unique_ptr<storage::SessionStore> store =
      *storage::OpenMemoryStore(&clock, {});
  std::unique_ptr<crypto::Sealer> sealer = SealerFor({kKeyA});
  HandlerOptions options;
  options.max_idle_timeout = absl::Hours(1);
  options.max_absolute_lifetime = absl::Hours(24);
  SessionHandler handler(store.get(), sealer.get(), options);

  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(3601);
  absl::Status status = handler.Save(handler.default_scope(), request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("idle_timeout"));
  EXPECT_THAT(status.message(), HasSubstr("1h"));

  request.mutable_idle_timeout()->set_seconds(3600);
  request.mutable_absolute_lifetime()->set_seconds(24 * 3600 + 1);
  status = handler.Save(handler.default_scope(), request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("absolute_lifetime"));

  request.mutable_absolute_lifetime()->set_seconds(24 * 3600);
  absl::StatusOr<v1::SaveResponse> saved =
      handler.Save(handler.default_scope(), request);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().idle_timeout().seconds(), 3600);
}

TEST_F(SessionHandlerTest, IdleTimeoutMustOutlastTwoTouchIntervals) {
  // The default touch interval is 1m: an idle timeout under 2m could expire
  // a session that is touched every few seconds, since touches write at
  // most once a minute.
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(119);
  absl::StatusOr<v1::SaveResponse> short_idle = handler_.Save(Scope(), request);
  ExpectInvalid(short_idle.status(), "idle_timeout");
  EXPECT_THAT(short_idle.status().message(), HasSubstr("2m"));
  request.mutable_idle_timeout()->set_seconds(120);
  EXPECT_TRUE(handler_.Save(Scope(), request).ok());
}

TEST_F(SessionHandlerTest, TimeoutsAreKeptInWholeMicroseconds) {
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(1800);
  request.mutable_idle_timeout()->set_nanos(1500);
  request.mutable_absolute_lifetime()->set_seconds(3600);
  request.mutable_absolute_lifetime()->set_nanos(999);
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(Scope(), request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->session().idle_timeout().nanos(), 1000);
  EXPECT_EQ(created->session().absolute_lifetime().nanos(), 0);
}

TEST_F(SessionHandlerTest, ListPagesStopAtTheResponseByteBudget) {
  HandlerOptions options;
  options.max_list_response_bytes = 5000;
  SessionHandler small_pages(store_.get(), sealer_.get(), options);
  std::set<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    ids.insert(Create("frank", std::string(2000, 'a' + i)).session().id());
    clock_.Advance(absl::Seconds(1));
  }
  v1::ListForUserRequest request;
  request.set_user_id("frank");
  request.set_page_size(100);
  std::set<std::string> seen;
  int pages = 0;
  do {
    absl::StatusOr<v1::ListForUserResponse> page =
        small_pages.ListForUser(Scope(), request);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_GE(page->sessions_size(), 1);
    EXPECT_LE(page->ByteSizeLong(), 5000u + 200u);
    for (const v1::Session& session : page->sessions()) {
      EXPECT_TRUE(seen.insert(session.id()).second) << "listed twice";
    }
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty() && pages < 20);
  EXPECT_EQ(seen, ids);
  EXPECT_GE(pages, 4);  // About two 2 KB sessions fit in 5000 bytes.
}

TEST_F(SessionHandlerTest, UnknownTokenIsNotFound) {
  EXPECT_EQ(
      Load(crypto::NewSessionToken(crypto::NewSessionId())).status().code(),
      absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, PayloadLimitIsMeasuredAfterSealingAndNamed) {
  v1::SaveRequest request;
  request.set_data(std::string(64 * 1024, 'x'));  // + overhead: over.
  absl::StatusOr<v1::SaveResponse> over = handler_.Save(Scope(), request);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("65536"));
  EXPECT_THAT(over.status().message(), HasSubstr("(max_payload_bytes)"));

  request.set_data(std::string(64 * 1024 - 100, 'x'));
  EXPECT_TRUE(handler_.Save(Scope(), request).ok());

  // An update over the limit writes nothing.
  v1::SaveResponse created = Create("alice", "small");
  v1::SaveRequest update;
  update.set_token(created.token());
  update.set_data(std::string(70000, 'y'));
  EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Load(created.token())->session().data(), "small");
}

TEST_F(SessionHandlerTest, CompareAndSetUpdate) {
  v1::SaveResponse created = Create("alice", "v1");
  v1::SaveRequest update;
  update.set_token(created.token());
  update.set_user_id("alice");
  update.set_data("v2");
  update.set_expected_version(1);
  absl::StatusOr<v1::SaveResponse> updated = handler_.Save(Scope(), update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_FALSE(updated->created());
  EXPECT_TRUE(updated->token().empty());
  EXPECT_EQ(updated->session().version(), 2);
  EXPECT_EQ(updated->session().data(), "v2");
  // Metadata was not sent, so it stays.
  EXPECT_EQ(updated->session().metadata().at("ip"), "203.0.113.7");

  update.set_data("stale");
  EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(Load(created.token())->session().data(), "v2");

  // Versions start at 1, so 0 and below never match: ABORTED, as the proto
  // says of any mismatch, and NOT_FOUND still comes first.
  for (int64_t version : {0, -1}) {
    update.set_expected_version(version);
    EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
              absl::StatusCode::kAborted);
  }
  EXPECT_EQ(Load(created.token())->session().data(), "v2");
  v1::SaveResponse gone = Create("alice", "gone");
  v1::DeleteRequest remove;
  remove.set_token(gone.token());
  ASSERT_TRUE(handler_.Delete(Scope(), remove).ok());
  update.set_token(gone.token());
  EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, CycleReplacesTokenAndKeepsSession) {
  v1::SaveResponse created = Create("", "anon-cart");
  v1::CycleRequest cycle;
  cycle.set_token(created.token());
  cycle.set_user_id("bob");
  absl::StatusOr<v1::CycleResponse> cycled = handler_.Cycle(Scope(), cycle);
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_NE(cycled->token(), created.token());
  EXPECT_TRUE(crypto::IsWellFormedSessionToken(cycled->token()));
  EXPECT_EQ(cycled->session().id(), created.session().id());
  EXPECT_EQ(cycled->session().user_id(), "bob");
  EXPECT_EQ(cycled->session().data(), "anon-cart");
  EXPECT_EQ(cycled->session().version(), 2);
  EXPECT_EQ(Load(created.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(cycled->token())->session().data(), "anon-cart");
  EXPECT_EQ(handler_.Cycle(Scope(), cycle).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, TamperedOrSwappedPayloadReadsAsAbsentAndIsCounted) {
  v1::SaveResponse a = Create("alice", "a-data");
  v1::SaveResponse b = Create("bob", "b-data");
  const std::string hash_a = crypto::HashToken(a.token());
  const std::string hash_b = crypto::HashToken(b.token());

  // Copy alice's sealed blob onto bob's row: bound to another id, it fails.
  const absl::string_view tenant = storage::kDefaultTenant;
  storage::SessionUpdate swap;
  swap.sealed_payload = store_->Load(tenant, hash_a)->sealed_payload;
  ASSERT_TRUE(store_->Update(tenant, hash_b, swap).ok());
  EXPECT_EQ(Load(b.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 1);

  // Flip one bit of alice's ciphertext.
  storage::SessionUpdate flip;
  flip.sealed_payload = store_->Load(tenant, hash_a)->sealed_payload;
  (*flip.sealed_payload)[flip.sealed_payload->size() / 2] ^= 0x01;
  ASSERT_TRUE(store_->Update(tenant, hash_a, flip).ok());
  EXPECT_EQ(Load(a.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 2);

  // Listing leaves it out rather than failing.
  v1::ListForUserRequest list;
  list.set_user_id("alice");
  absl::StatusOr<v1::ListForUserResponse> listed =
      handler_.ListForUser(Scope(), list);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->sessions_size(), 0);
}

TEST_F(SessionHandlerTest, KeyRotationKeepsSessionsOpen) {
  v1::SaveResponse old_session = Create("alice", "sealed-under-a");

  std::unique_ptr<crypto::Sealer> rotated = SealerFor({kKeyB, kKeyA});
  SessionHandler after_rotation(store_.get(), rotated.get(), HandlerOptions{});
  v1::LoadRequest load;
  load.set_token(old_session.token());
  absl::StatusOr<v1::LoadResponse> loaded = after_rotation.Load(Scope(), load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "sealed-under-a");

  // A write re-seals under the new key, so dropping A keeps it readable.
  v1::SaveRequest update;
  update.set_token(old_session.token());
  update.set_data("sealed-under-b");
  ASSERT_TRUE(after_rotation.Save(Scope(), update).ok());
  v1::SaveResponse untouched = Create("carol", "still-under-a");

  std::unique_ptr<crypto::Sealer> only_b = SealerFor({kKeyB});
  SessionHandler a_dropped(store_.get(), only_b.get(), HandlerOptions{});
  EXPECT_EQ(a_dropped.Load(Scope(), load)->session().data(), "sealed-under-b");
  load.set_token(untouched.token());
  EXPECT_EQ(a_dropped.Load(Scope(), load).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, ExpiredSessionsAreNotFound) {
  // Idle timeout 120 s; touches write at most once a minute (the default).
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(120);
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(Scope(), request);
  ASSERT_TRUE(created.ok());
  clock_.Advance(absl::Seconds(61));
  EXPECT_TRUE(Load(created->token(), /*touch=*/true).ok());
  clock_.Advance(absl::Seconds(100));  // 161 s after creation: the touch at
  EXPECT_TRUE(Load(created->token()).ok());  // 61 s moved expiry to 181 s.
  clock_.Advance(absl::Seconds(20));
  EXPECT_EQ(Load(created->token()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, ListPagesThroughEverySessionOnce) {
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.insert(Create("dana", absl::StrCat("d", i)).session().id());
    clock_.Advance(absl::Seconds(1));
  }
  Create("erin", "other user");
  v1::ListForUserRequest request;
  request.set_user_id("dana");
  request.set_page_size(2);
  std::set<std::string> seen;
  int pages = 0;
  int64_t previous_active = INT64_MAX;
  do {
    absl::StatusOr<v1::ListForUserResponse> page =
        handler_.ListForUser(Scope(), request);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const v1::Session& session : page->sessions()) {
      EXPECT_EQ(session.user_id(), "dana");
      EXPECT_LE(session.last_active_at().seconds(), previous_active);
      previous_active = session.last_active_at().seconds();
      EXPECT_TRUE(seen.insert(session.id()).second);
    }
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, ids);
}

TEST_F(SessionHandlerTest, DeleteKinds) {
  v1::SaveResponse a1 = Create("alice", "1");
  v1::SaveResponse a2 = Create("alice", "2");
  v1::SaveResponse a3 = Create("alice", "3");
  v1::SaveResponse b1 = Create("bob", "1");

  v1::DeleteRequest by_id;
  by_id.set_id(a1.session().id());
  EXPECT_EQ(handler_.Delete(Scope(), by_id)->deleted(), 1);
  EXPECT_EQ(handler_.Delete(Scope(), by_id)->deleted(), 0);

  v1::DeleteRequest others;
  others.set_user_id("alice");
  others.set_except_id(a2.session().id());
  EXPECT_EQ(handler_.Delete(Scope(), others)->deleted(), 1);
  EXPECT_TRUE(Load(a2.token()).ok());
  EXPECT_FALSE(Load(a3.token()).ok());

  v1::DeleteRequest by_token;
  by_token.set_token(a2.token());
  EXPECT_EQ(handler_.Delete(Scope(), by_token)->deleted(), 1);
  EXPECT_TRUE(Load(b1.token()).ok());
}

TEST_F(SessionHandlerTest, PruneCountsAndHealthReports) {
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(120);
  ASSERT_TRUE(handler_.Save(Scope(), request).ok());
  ASSERT_TRUE(handler_.Save(Scope(), request).ok());
  Create("alice", "long-lived");
  clock_.Advance(absl::Seconds(121));
  EXPECT_EQ(handler_.Prune(Scope(), {})->pruned(), 2);
  EXPECT_EQ(handler_.Prune(Scope(), {})->pruned(), 0);
  EXPECT_EQ(handler_.counters().sessions_pruned.load(), 2);

  absl::StatusOr<v1::HealthResponse> health = handler_.Health(Scope(), {});
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->serving());
  EXPECT_EQ(health->backend(), "memory");
  EXPECT_TRUE(health->message().empty());
}

// ---------------------------------------------------------------------------
// Fixation-safe updates: Save never changes the user, and keeps what it is
// not sent.

TEST_F(SessionHandlerTest,
       SaveNamingAnotherUserIsFailedPreconditionAndWritesNothing) {
  v1::SaveResponse created = Create("alice", "cart");
  v1::SaveRequest update;
  update.set_token(created.token());
  update.set_user_id("admin");
  update.set_data("escalated");
  absl::Status status = handler_.Save(Scope(), update).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("Cycle"));
  absl::StatusOr<v1::LoadResponse> loaded = Load(created.token());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->session().user_id(), "alice");
  EXPECT_EQ(loaded->session().data(), "cart");
  EXPECT_EQ(loaded->session().version(), 1);

  // An anonymous session cannot be given a user by Save either.
  v1::SaveResponse anonymous = Create("", "anon");
  update.set_token(anonymous.token());
  EXPECT_EQ(handler_.Save(Scope(), update).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Naming the session's own user is a check that passes.
  update.set_token(created.token());
  update.set_user_id("alice");
  EXPECT_TRUE(handler_.Save(Scope(), update).ok());
}

TEST_F(SessionHandlerTest, SaveWithoutUserIdKeepsTheUser) {
  v1::SaveResponse created = Create("alice", "cart");
  v1::SaveRequest update;
  update.set_token(created.token());
  update.set_data("cart=2");
  absl::StatusOr<v1::SaveResponse> saved = handler_.Save(Scope(), update);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().user_id(), "alice");
  EXPECT_EQ(Load(created.token())->session().user_id(), "alice");
}

TEST_F(SessionHandlerTest, SaveKeepsTheFieldsItIsNotSent) {
  v1::SaveResponse created = Create("alice", "cart");
  v1::SaveRequest data_only;
  data_only.set_token(created.token());
  data_only.set_data("cart=2");
  ASSERT_TRUE(handler_.Save(Scope(), data_only).ok());
  absl::StatusOr<v1::LoadResponse> loaded = Load(created.token());
  EXPECT_EQ(loaded->session().data(), "cart=2");
  EXPECT_EQ(loaded->session().metadata().at("ip"), "203.0.113.7");

  v1::SaveRequest metadata_only;
  metadata_only.set_token(created.token());
  (*metadata_only.mutable_metadata())["device"] = "phone";
  ASSERT_TRUE(handler_.Save(Scope(), metadata_only).ok());
  loaded = Load(created.token());
  EXPECT_EQ(loaded->session().data(), "cart=2");
  EXPECT_EQ(loaded->session().metadata().size(), 1u);
  EXPECT_EQ(loaded->session().metadata().at("device"), "phone");

  v1::SaveRequest timeout_only;
  timeout_only.set_token(created.token());
  timeout_only.mutable_idle_timeout()->set_seconds(600);
  absl::StatusOr<v1::SaveResponse> saved = handler_.Save(Scope(), timeout_only);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().idle_timeout().seconds(), 600);
  EXPECT_EQ(saved->session().data(), "cart=2");
  EXPECT_EQ(saved->session().metadata().at("device"), "phone");
  EXPECT_EQ(saved->session().version(), 4);
}

TEST_F(SessionHandlerTest, UpdateMaskClearsListedFieldsAndKeepsOthers) {
  v1::SaveResponse created = Create("alice", "cart");
  v1::SaveRequest clear_data;
  clear_data.set_token(created.token());
  clear_data.mutable_update_mask()->add_paths("data");
  absl::StatusOr<v1::SaveResponse> saved = handler_.Save(Scope(), clear_data);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().data(), "");
  EXPECT_EQ(saved->session().metadata().at("ip"), "203.0.113.7");

  v1::SaveRequest clear_metadata;
  clear_metadata.set_token(created.token());
  clear_metadata.set_data("ignored: not in the mask");
  clear_metadata.mutable_update_mask()->add_paths("metadata");
  saved = handler_.Save(Scope(), clear_metadata);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().data(), "");
  EXPECT_TRUE(saved->session().metadata().empty());

  // "user_id" in the mask checks the user, even an empty one.
  v1::SaveRequest check_user;
  check_user.set_token(created.token());
  check_user.mutable_update_mask()->add_paths("user_id");
  EXPECT_EQ(handler_.Save(Scope(), check_user).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionHandlerTest, UpdateMaskErrorsNameTheField) {
  v1::SaveResponse created = Create("alice", "cart");
  v1::SaveRequest request;
  request.set_token(created.token());
  request.mutable_update_mask()->add_paths("token");
  absl::Status status = handler_.Save(Scope(), request).status();
  ExpectInvalid(status, "update_mask");
  EXPECT_THAT(status.message(), HasSubstr("\"token\""));

  request.mutable_update_mask()->Clear();
  request.mutable_update_mask()->add_paths("idle_timeout");
  ExpectInvalid(handler_.Save(Scope(), request).status(), "idle_timeout");

  v1::SaveRequest create;
  create.mutable_update_mask()->add_paths("data");
  ExpectInvalid(handler_.Save(Scope(), create).status(), "update_mask");
  EXPECT_EQ(Load(created.token())->session().version(), 1);
}

// Two writers of different fields of one session: neither loses the other's
// writes (each read-modify-write is a compare-and-set, retried).
TEST_F(SessionHandlerTest, ConcurrentPartialUpdatesLoseNothing) {
  v1::SaveResponse created = Create("alice", "d0");
  constexpr int kWrites = 200;
  std::atomic<int> failures{0};
  auto writer = [&](bool data) {
    for (int i = 1; i <= kWrites; ++i) {
      v1::SaveRequest update;
      update.set_token(created.token());
      if (data) {
        update.set_data(absl::StrCat("d", i));
      } else {
        (*update.mutable_metadata())["m"] = absl::StrCat(i);
      }
      for (;;) {
        absl::Status status = handler_.Save(Scope(), update).status();
        if (status.ok()) break;
        if (!absl::IsAborted(status)) {
          failures.fetch_add(1);
          break;
        }
      }
    }
  };
  std::thread a(writer, true);
  std::thread b(writer, false);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  absl::StatusOr<v1::LoadResponse> loaded = Load(created.token());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->session().data(), absl::StrCat("d", kWrites));
  EXPECT_EQ(loaded->session().metadata().at("m"), absl::StrCat(kWrites));
  EXPECT_EQ(loaded->session().version(), 1 + 2 * kWrites);
}

TEST_F(SessionHandlerTest, CycleToAnotherUserKeepsDataAndRebindsIt) {
  v1::SaveResponse created = Create("", "anon-cart");
  v1::CycleRequest login;
  login.set_token(created.token());
  login.set_user_id("alice");
  absl::StatusOr<v1::CycleResponse> cycled = handler_.Cycle(Scope(), login);
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(cycled->session().user_id(), "alice");
  EXPECT_EQ(cycled->session().data(), "anon-cart");
  EXPECT_EQ(cycled->session().metadata().at("ip"), "203.0.113.7");
  // The payload is bound to alice now: a row moved back to anonymous in the
  // database (without the server) does not open.
  const std::string token = crypto::NewSessionToken(cycled->session().id());
  storage::SessionCycle rewrite;
  rewrite.new_token_hash = crypto::HashToken(token);
  rewrite.user_id = "";
  ASSERT_TRUE(store_
                  ->Cycle(storage::kDefaultTenant,
                          crypto::HashToken(cycled->token()), rewrite, {})
                  .ok());
  EXPECT_EQ(Load(token).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 1);
}

TEST_F(SessionHandlerTest, RewrittenUserColumnDoesNotOpen) {
  v1::SaveResponse created = Create("alice", "alice-data");
  const std::string hash = crypto::HashToken(created.token());
  // An attacker with write access to the database moves alice's session to
  // "admin" without the server (the storage layer changes only the user).
  const std::string token = crypto::NewSessionToken(created.session().id());
  storage::SessionCycle rewrite;
  rewrite.new_token_hash = crypto::HashToken(token);
  rewrite.user_id = "admin";
  ASSERT_TRUE(store_->Cycle(storage::kDefaultTenant, hash, rewrite, {}).ok());
  EXPECT_EQ(Load(token).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 1);
}

// ---------------------------------------------------------------------------
// Tenants.

TEST_F(SessionHandlerTest, OtherTenantsSessionsAreExactlyLikeMissingOnes) {
  const TenantScope shop = DefaultScope("shop", HandlerOptions{});
  const TenantScope bank = DefaultScope("bank", HandlerOptions{});
  v1::SaveRequest create;
  create.set_user_id("alice");
  create.set_data("shop-data");
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(shop, create);
  ASSERT_TRUE(created.ok()) << created.status();

  v1::LoadRequest load;
  load.set_token(created->token());
  absl::Status from_bank = handler_.Load(bank, load).status();
  load.set_token(crypto::NewSessionToken(crypto::NewSessionId()));
  absl::Status absent = handler_.Load(bank, load).status();
  EXPECT_EQ(from_bank.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(from_bank, absent);

  v1::SaveRequest update;
  update.set_token(created->token());
  update.set_data("bank-was-here");
  EXPECT_EQ(handler_.Save(bank, update).status().code(),
            absl::StatusCode::kNotFound);
  v1::CycleRequest cycle;
  cycle.set_token(created->token());
  EXPECT_EQ(handler_.Cycle(bank, cycle).status().code(),
            absl::StatusCode::kNotFound);
  v1::ListForUserRequest list;
  list.set_user_id("alice");
  EXPECT_EQ(handler_.ListForUser(bank, list)->sessions_size(), 0);
  v1::DeleteRequest by_id;
  by_id.set_id(created->session().id());
  EXPECT_EQ(handler_.Delete(bank, by_id)->deleted(), 0);
  v1::DeleteRequest by_user;
  by_user.set_user_id("alice");
  EXPECT_EQ(handler_.Delete(bank, by_user)->deleted(), 0);

  load.set_token(created->token());
  absl::StatusOr<v1::LoadResponse> loaded = handler_.Load(shop, load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "shop-data");
  EXPECT_EQ(loaded->session().version(), 1);
  EXPECT_EQ(handler_.ListForUser(shop, list)->sessions_size(), 1);
}

TEST_F(SessionHandlerTest, ARowCopiedToAnotherTenantDoesNotOpen) {
  const TenantScope shop = DefaultScope("shop", HandlerOptions{});
  const TenantScope bank = DefaultScope("bank", HandlerOptions{});
  v1::SaveRequest create;
  create.set_user_id("alice");
  create.set_data("shop-secret");
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(shop, create);
  ASSERT_TRUE(created.ok());
  const std::string hash = crypto::HashToken(created->token());
  absl::StatusOr<storage::SessionRecord> row = store_->Load("shop", hash);
  ASSERT_TRUE(row.ok());
  ASSERT_EQ(store_->DeleteById("shop", row->id).value_or(0), 1);
  row->tenant = "bank";
  ASSERT_TRUE(store_->Create(*row, {}).ok());
  v1::LoadRequest load;
  load.set_token(created->token());
  EXPECT_EQ(handler_.Load(bank, load).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 1);
}

// Payloads sealed before tenants existed are bound to the id alone: they
// open in the default tenant (and are sealed anew on their next write), and
// nowhere else.
TEST_F(SessionHandlerTest, LegacyPayloadsOpenInTheDefaultTenantOnly) {
  v1::Session payload;
  payload.set_data("from-before-tenants");
  std::string plaintext;
  ASSERT_TRUE(payload.SerializeToString(&plaintext));
  for (const std::string tenant : {"default", "other"}) {
    SCOPED_TRACE(tenant);
    storage::SessionRecord record;
    record.tenant = tenant;
    record.id = crypto::NewSessionId();
    const std::string token = crypto::NewSessionToken(record.id);
    record.token_hash = crypto::HashToken(token);
    record.user_id = "alice";
    record.sealed_payload = *sealer_->Seal(plaintext, record.id);
    record.idle_timeout = absl::Minutes(30);
    record.absolute_lifetime = absl::Hours(1);
    ASSERT_TRUE(store_->Create(record, {}).ok());
    v1::LoadRequest load;
    load.set_token(token);
    absl::StatusOr<v1::LoadResponse> loaded =
        handler_.Load(DefaultScope(tenant, HandlerOptions{}), load);
    if (tenant == "default") {
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      EXPECT_EQ(loaded->session().data(), "from-before-tenants");
      v1::SaveRequest update;
      update.set_token(token);
      update.set_data("resealed");
      ASSERT_TRUE(handler_.Save(Scope(), update).ok());
      absl::StatusOr<storage::SessionRecord> stored =
          store_->Load(tenant, record.token_hash);
      ASSERT_TRUE(stored.ok());
      EXPECT_FALSE(sealer_->Open(stored->sealed_payload, record.id).ok());
      EXPECT_TRUE(sealer_
                      ->Open(stored->sealed_payload,
                             PayloadBinding(tenant, record.id, "alice"))
                      .ok());
    } else {
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
    }
  }
}

TEST_F(SessionHandlerTest, TenantLimitsBoundItsCalls) {
  TenantScope small = DefaultScope("small", HandlerOptions{});
  small.max_payload_bytes = 200;
  small.max_idle_timeout = absl::Hours(1);
  small.limits.max_live_sessions = 2;
  small.limits.max_sessions_per_user = 1;
  v1::SaveRequest big;
  big.set_data(std::string(300, 'x'));
  EXPECT_EQ(handler_.Save(small, big).status().code(),
            absl::StatusCode::kResourceExhausted);
  v1::SaveRequest long_idle;
  long_idle.mutable_idle_timeout()->set_seconds(3601);
  ExpectInvalid(handler_.Save(small, long_idle).status(), "idle_timeout");

  v1::SaveRequest create;
  create.set_user_id("alice");
  absl::StatusOr<v1::SaveResponse> first = handler_.Save(small, create);
  ASSERT_TRUE(first.ok());
  // The per-user cap evicts the older one.
  ASSERT_TRUE(handler_.Save(small, create).ok());
  v1::LoadRequest load;
  load.set_token(first->token());
  EXPECT_EQ(handler_.Load(small, load).status().code(),
            absl::StatusCode::kNotFound);
  create.set_user_id("bob");
  ASSERT_TRUE(handler_.Save(small, create).ok());
  create.set_user_id("carol");
  absl::Status full = handler_.Save(small, create).status();
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(full.message(), HasSubstr("small"));
  // Other tenants are not bound by it.
  EXPECT_TRUE(handler_.Save(Scope(), create).ok());
}

TEST(TenantScopeTest, ValidateNamesTheSetting) {
  HandlerOptions options;
  EXPECT_TRUE(ValidateScope(DefaultScope("shop", options), options).ok());
  TenantScope scope = DefaultScope("shop", options);
  scope.max_idle_timeout = absl::Minutes(10);  // under the default 30m
  absl::Status status = ValidateScope(scope, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("default_idle_timeout"));
  EXPECT_THAT(status.message(), HasSubstr("shop"));

  scope = DefaultScope("shop", options);
  scope.max_absolute_lifetime = kLongestTimeout + absl::Seconds(1);
  EXPECT_THAT(ValidateScope(scope, options).message(),
              HasSubstr("max_absolute_lifetime"));
  scope = DefaultScope("shop", options);
  scope.default_idle_timeout = absl::Seconds(90);  // touch interval is 1m
  EXPECT_THAT(ValidateScope(scope, options).message(),
              HasSubstr("default_idle_timeout"));
  scope = DefaultScope("shop", options);
  scope.max_payload_bytes = 0;
  EXPECT_THAT(ValidateScope(scope, options).message(),
              HasSubstr("max_payload_bytes"));
  EXPECT_FALSE(ValidateScope(DefaultScope("no spaces", options), options).ok());
}

// ---------------------------------------------------------------------------
// Storage errors, from a backend told to fail (tests/storage/fake_backend.h).

class SessionHandlerStorageErrorTest : public ::testing::Test {
 protected:
  SessionHandlerStorageErrorTest() {
    auto fake = std::make_unique<storage::FakeBackend>(
        storage::NewMemoryBackend(&clock_));
    fake_ = fake.get();
    store_ = std::make_unique<storage::SessionStore>(
        &clock_, storage::StoreOptions{}, std::move(fake));
    sealer_ = SealerFor({kKeyA});
    // Every storage failure logged, so that each test can see its own.
    HandlerOptions options;
    options.storage_error_log_interval = absl::ZeroDuration();
    MakeHandler(options);
  }

  void MakeHandler(const HandlerOptions& options) {
    handler_ =
        std::make_unique<SessionHandler>(store_.get(), sealer_.get(), options);
  }

  const TenantScope& Scope() const { return handler_->default_scope(); }

  // A live session's token.
  std::string NewToken() {
    v1::SaveRequest request;
    request.set_user_id("alice");
    absl::StatusOr<v1::SaveResponse> saved = handler_->Save(Scope(), request);
    EXPECT_TRUE(saved.ok()) << saved.status();
    return saved.ok() ? saved->token() : "";
  }

  // Every RPC that reaches storage, on a live session of "alice".
  std::vector<std::pair<std::string, std::function<absl::Status()>>> Rpcs(
      const std::string& token) {
    return {
        {"Save (create)",
         [this] {
           return handler_->Save(Scope(), v1::SaveRequest()).status();
         }},
        {"Save (update)",
         [this, token] {
           v1::SaveRequest r;
           r.set_token(token);
           return handler_->Save(Scope(), r).status();
         }},
        {"Load",
         [this, token] {
           v1::LoadRequest r;
           r.set_token(token);
           return handler_->Load(Scope(), r).status();
         }},
        {"Load (touch)",
         [this, token] {
           v1::LoadRequest r;
           r.set_token(token);
           r.set_touch(true);
           return handler_->Load(Scope(), r).status();
         }},
        {"Cycle",
         [this, token] {
           v1::CycleRequest r;
           r.set_token(token);
           return handler_->Cycle(Scope(), r).status();
         }},
        {"Delete (token)",
         [this, token] {
           v1::DeleteRequest r;
           r.set_token(token);
           return handler_->Delete(Scope(), r).status();
         }},
        {"Delete (user)",
         [this] {
           v1::DeleteRequest r;
           r.set_user_id("alice");
           return handler_->Delete(Scope(), r).status();
         }},
        {"ListForUser",
         [this] {
           v1::ListForUserRequest r;
           r.set_user_id("alice");
           return handler_->ListForUser(Scope(), r).status();
         }},
        {"Prune",
         [this] {
           return handler_->Prune(Scope(), v1::PruneRequest()).status();
         }},
    };
  }

  ManualClock clock_;
  storage::FakeBackend* fake_ = nullptr;
  std::unique_ptr<storage::SessionStore> store_;
  std::unique_ptr<crypto::Sealer> sealer_;
  std::unique_ptr<SessionHandler> handler_;
};

// A storage failure reaches the caller as its code with a generic message;
// the backend's text, which may name hosts or quote the server, goes only
// to the log.
// The response budget bounds what the backend reads, not only what the
// response holds.
TEST_F(SessionHandlerStorageErrorTest, ListAsksTheBackendForNoMoreThanFits) {
  HandlerOptions options;
  options.max_list_response_bytes = 12345;
  MakeHandler(options);
  NewToken();
  v1::ListForUserRequest request;
  request.set_user_id("alice");
  ASSERT_TRUE(handler_->ListForUser(Scope(), request).ok());
  EXPECT_EQ(fake_->last_list_max_bytes(), 12345);
}

TEST_F(SessionHandlerStorageErrorTest, UnavailableAndInternalReachTheCaller) {
  const std::string token = NewToken();
  struct Case {
    absl::Status failure;
    std::string message;
  };
  for (const Case& c :
       {Case{absl::UnavailableError("could not connect to db-7.internal"),
             "storage backend unavailable"},
        Case{absl::InternalError("ERR user_script:12: attempt to index nil"),
             "storage backend error"}}) {
    fake_->FailAll(c.failure);
    for (const auto& [name, rpc] : Rpcs(token)) {
      ::testing::internal::CaptureStderr();
      const absl::Status status = rpc();
      const std::string log = ::testing::internal::GetCapturedStderr();
      EXPECT_EQ(status.code(), c.failure.code()) << name;
      EXPECT_EQ(status.message(), c.message) << name;
      EXPECT_THAT(log, HasSubstr(std::string(c.failure.message()))) << name;
    }
  }
  fake_->FailAll(absl::OkStatus());
  for (const auto& [name, rpc] : Rpcs(token)) {
    const absl::Status status = rpc();
    EXPECT_TRUE(status.ok() || absl::IsNotFound(status)) << name << status;
  }
}

// An outage fails every call; the log gets one line per interval, then a
// count of the lines it held back.
TEST_F(SessionHandlerStorageErrorTest, StorageFailuresAreLoggedAtARate) {
  const std::string token = NewToken();
  HandlerOptions options;
  options.storage_error_log_interval = absl::Milliseconds(500);
  MakeHandler(options);
  fake_->FailAll(absl::UnavailableError("db-7.internal refused"));
  auto count = [](const std::string& log, const std::string& what) {
    int n = 0;
    for (size_t at = log.find(what); at != std::string::npos;
         at = log.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  const auto rpcs = Rpcs(token);
  ::testing::internal::CaptureStderr();
  for (const auto& [name, rpc] : rpcs) {
    EXPECT_EQ(rpc().message(), "storage backend unavailable") << name;
  }
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(log, "db-7.internal refused"), 1) << log;

  absl::SleepFor(absl::Milliseconds(600));  // past the interval
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(rpcs[0].second().code(), absl::StatusCode::kUnavailable);
  log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(log, "db-7.internal refused"), 1) << log;
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat("(and ", rpcs.size() - 1,
                                     " more like it since the last line)")));
}

TEST_F(SessionHandlerStorageErrorTest, HealthReportsAFailingBackend) {
  fake_->FailCall("ping", absl::UnavailableError("backend down"));
  absl::StatusOr<v1::HealthResponse> health =
      handler_->Health(Scope(), v1::HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_FALSE(health->serving());
  EXPECT_EQ(health->backend(), "fake");
  EXPECT_EQ(health->message(), "storage backend unavailable");
}

// A taken id or token hash means the random values collided (or storage is
// wrong): never hand the caller a session, and never say ALREADY_EXISTS,
// which the API does not promise.
TEST_F(SessionHandlerStorageErrorTest, CollisionsAreInternal) {
  const std::string token = NewToken();
  fake_->FailCall("create", absl::AlreadyExistsError("id taken"));
  absl::StatusOr<v1::SaveResponse> saved =
      handler_->Save(Scope(), v1::SaveRequest());
  EXPECT_EQ(saved.status().code(), absl::StatusCode::kInternal);
  fake_->FailCall("cycle", absl::AlreadyExistsError("hash taken"));
  v1::CycleRequest cycle;
  cycle.set_token(token);
  absl::StatusOr<v1::CycleResponse> cycled = handler_->Cycle(Scope(), cycle);
  EXPECT_EQ(cycled.status().code(), absl::StatusCode::kInternal);
}

TEST_F(SessionHandlerStorageErrorTest, VersionMismatchIsAborted) {
  const std::string token = NewToken();
  v1::SaveRequest update;
  update.set_token(token);
  update.set_expected_version(1);
  fake_->FailCall("update", absl::AbortedError("session version is 2"));
  EXPECT_EQ(handler_->Save(Scope(), update).status().code(),
            absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace sessiond
