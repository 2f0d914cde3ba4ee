// SessionHandler over a real memory store and a real AES-256-GCM sealer.
#include "server/session_handler.h"

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

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
    absl::StatusOr<v1::SaveResponse> response = handler_.Save(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return *response;
  }

  absl::StatusOr<v1::LoadResponse> Load(const std::string& token,
                                        bool touch = false) {
    v1::LoadRequest request;
    request.set_token(token);
    request.set_touch(touch);
    return handler_.Load(request);
  }

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
  absl::StatusOr<v1::CycleResponse> cycled = handler_.Cycle(cycle);
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
  EXPECT_EQ(handler_.Save(update).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(a.token())->session().data(), "a-data");
  EXPECT_EQ(Load(b.token())->session().data(), "b-data");
}

TEST_F(SessionHandlerTest, StoreHoldsNeitherTokenNorPlaintext) {
  const std::string data = "very-secret-session-data";
  v1::SaveResponse created = Create("alice", data);
  absl::StatusOr<storage::SessionRecord> record =
      store_->Load(crypto::HashToken(created.token()));
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
  ExpectInvalid(handler_.Save(save).status(), "user_id");
  save.set_user_id(std::string("al\0ice", 6));
  ExpectInvalid(handler_.Save(save).status(), "user_id");
  save.Clear();
  for (int i = 0; i < 33; ++i) {
    (*save.mutable_metadata())[absl::StrCat("k", i)] = "v";
  }
  ExpectInvalid(handler_.Save(save).status(), "metadata");
  save.Clear();
  (*save.mutable_metadata())["ua"] = std::string(1025, 'x');
  ExpectInvalid(handler_.Save(save).status(), "metadata[ua]");
  save.Clear();
  (*save.mutable_metadata())[std::string(65, 'k')] = "v";
  ExpectInvalid(handler_.Save(save).status(), "metadata");
  save.Clear();
  (*save.mutable_metadata())[""] = "v";
  ExpectInvalid(handler_.Save(save).status(), "metadata");
  save.Clear();
  save.mutable_idle_timeout()->set_seconds(-5);
  ExpectInvalid(handler_.Save(save).status(), "idle_timeout");
  save.Clear();
  save.mutable_idle_timeout()->set_seconds(0);
  ExpectInvalid(handler_.Save(save).status(), "idle_timeout");
  save.Clear();
  save.mutable_absolute_lifetime()->set_seconds(int64_t{1} << 40);
  ExpectInvalid(handler_.Save(save).status(), "absolute_lifetime");
  save.Clear();
  save.set_expected_version(1);
  ExpectInvalid(handler_.Save(save).status(), "expected_version");
  save.Clear();
  save.set_token("short");
  ExpectInvalid(handler_.Save(save).status(), "token");

  v1::CycleRequest cycle;
  ExpectInvalid(handler_.Cycle(cycle).status(), "token");

  v1::DeleteRequest del;
  ExpectInvalid(handler_.Delete(del).status(), "target");
  del.set_id("bad id");
  ExpectInvalid(handler_.Delete(del).status(), "id");
  del.set_token(crypto::NewSessionToken(crypto::NewSessionId()));
  del.set_except_id(crypto::NewSessionId());
  ExpectInvalid(handler_.Delete(del).status(), "except_id");
  del.Clear();
  del.set_user_id("");
  ExpectInvalid(handler_.Delete(del).status(), "user_id");

  v1::ListForUserRequest list;
  ExpectInvalid(handler_.ListForUser(list).status(), "user_id");
  list.set_user_id("alice");
  list.set_page_size(-1);
  ExpectInvalid(handler_.ListForUser(list).status(), "page_size");
  list.set_page_size(1001);
  ExpectInvalid(handler_.ListForUser(list).status(), "page_size");
  list.set_page_size(10);
  list.set_page_token("%%%");
  ExpectInvalid(handler_.ListForUser(list).status(), "page_token");
  list.set_page_token("bm90LWEtY3Vyc29y");  // base64 of "not-a-cursor"
  ExpectInvalid(handler_.ListForUser(list).status(), "page_token");
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
  absl::Status status = handler.Save(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("idle_timeout"));
  EXPECT_THAT(status.message(), HasSubstr("1h"));

  request.mutable_idle_timeout()->set_seconds(3600);
  request.mutable_absolute_lifetime()->set_seconds(24 * 3600 + 1);
  status = handler.Save(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("absolute_lifetime"));

  request.mutable_absolute_lifetime()->set_seconds(24 * 3600);
  absl::StatusOr<v1::SaveResponse> saved = handler.Save(request);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->session().idle_timeout().seconds(), 3600);
}

TEST_F(SessionHandlerTest, IdleTimeoutMustOutlastTwoTouchIntervals) {
  // The default touch interval is 1m: an idle timeout under 2m could expire
  // a session that is touched every few seconds, since touches write at
  // most once a minute.
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(119);
  absl::StatusOr<v1::SaveResponse> short_idle = handler_.Save(request);
  ExpectInvalid(short_idle.status(), "idle_timeout");
  EXPECT_THAT(short_idle.status().message(), HasSubstr("2m"));
  request.mutable_idle_timeout()->set_seconds(120);
  EXPECT_TRUE(handler_.Save(request).ok());
}

TEST_F(SessionHandlerTest, TimeoutsAreKeptInWholeMicroseconds) {
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(1800);
  request.mutable_idle_timeout()->set_nanos(1500);
  request.mutable_absolute_lifetime()->set_seconds(3600);
  request.mutable_absolute_lifetime()->set_nanos(999);
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(request);
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
        small_pages.ListForUser(request);
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
  absl::StatusOr<v1::SaveResponse> over = handler_.Save(request);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("65536"));
  EXPECT_THAT(over.status().message(), HasSubstr("--max_payload_bytes"));

  request.set_data(std::string(64 * 1024 - 100, 'x'));
  EXPECT_TRUE(handler_.Save(request).ok());

  // An update over the limit writes nothing.
  v1::SaveResponse created = Create("alice", "small");
  v1::SaveRequest update;
  update.set_token(created.token());
  update.set_data(std::string(70000, 'y'));
  EXPECT_EQ(handler_.Save(update).status().code(),
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
  absl::StatusOr<v1::SaveResponse> updated = handler_.Save(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_FALSE(updated->created());
  EXPECT_TRUE(updated->token().empty());
  EXPECT_EQ(updated->session().version(), 2);
  EXPECT_EQ(updated->session().data(), "v2");
  EXPECT_TRUE(updated->session().metadata().empty());

  update.set_data("stale");
  EXPECT_EQ(handler_.Save(update).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Load(created.token())->session().data(), "v2");

  update.set_expected_version(0);
  ExpectInvalid(handler_.Save(update).status(), "expected_version");
}

TEST_F(SessionHandlerTest, CycleReplacesTokenAndKeepsSession) {
  v1::SaveResponse created = Create("", "anon-cart");
  v1::CycleRequest cycle;
  cycle.set_token(created.token());
  cycle.set_user_id("bob");
  absl::StatusOr<v1::CycleResponse> cycled = handler_.Cycle(cycle);
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_NE(cycled->token(), created.token());
  EXPECT_TRUE(crypto::IsWellFormedSessionToken(cycled->token()));
  EXPECT_EQ(cycled->session().id(), created.session().id());
  EXPECT_EQ(cycled->session().user_id(), "bob");
  EXPECT_EQ(cycled->session().data(), "anon-cart");
  EXPECT_EQ(cycled->session().version(), 2);
  EXPECT_EQ(Load(created.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Load(cycled->token())->session().data(), "anon-cart");
  EXPECT_EQ(handler_.Cycle(cycle).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, TamperedOrSwappedPayloadReadsAsAbsentAndIsCounted) {
  v1::SaveResponse a = Create("alice", "a-data");
  v1::SaveResponse b = Create("bob", "b-data");
  const std::string hash_a = crypto::HashToken(a.token());
  const std::string hash_b = crypto::HashToken(b.token());

  // Copy alice's sealed blob onto bob's row: bound to another id, it fails.
  storage::SessionUpdate swap;
  swap.user_id = "bob";
  swap.sealed_payload = store_->Load(hash_a)->sealed_payload;
  ASSERT_TRUE(store_->Update(hash_b, swap).ok());
  EXPECT_EQ(Load(b.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 1);

  // Flip one bit of alice's ciphertext.
  storage::SessionUpdate flip;
  flip.user_id = "alice";
  flip.sealed_payload = store_->Load(hash_a)->sealed_payload;
  flip.sealed_payload[flip.sealed_payload.size() / 2] ^= 0x01;
  ASSERT_TRUE(store_->Update(hash_a, flip).ok());
  EXPECT_EQ(Load(a.token()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handler_.counters().unopenable_payloads.load(), 2);

  // Listing leaves it out rather than failing.
  v1::ListForUserRequest list;
  list.set_user_id("alice");
  absl::StatusOr<v1::ListForUserResponse> listed = handler_.ListForUser(list);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->sessions_size(), 0);
}

TEST_F(SessionHandlerTest, KeyRotationKeepsSessionsOpen) {
  v1::SaveResponse old_session = Create("alice", "sealed-under-a");

  std::unique_ptr<crypto::Sealer> rotated = SealerFor({kKeyB, kKeyA});
  SessionHandler after_rotation(store_.get(), rotated.get(), HandlerOptions{});
  v1::LoadRequest load;
  load.set_token(old_session.token());
  absl::StatusOr<v1::LoadResponse> loaded = after_rotation.Load(load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "sealed-under-a");

  // A write re-seals under the new key, so dropping A keeps it readable.
  v1::SaveRequest update;
  update.set_token(old_session.token());
  update.set_data("sealed-under-b");
  ASSERT_TRUE(after_rotation.Save(update).ok());
  v1::SaveResponse untouched = Create("carol", "still-under-a");

  std::unique_ptr<crypto::Sealer> only_b = SealerFor({kKeyB});
  SessionHandler a_dropped(store_.get(), only_b.get(), HandlerOptions{});
  EXPECT_EQ(a_dropped.Load(load)->session().data(), "sealed-under-b");
  load.set_token(untouched.token());
  EXPECT_EQ(a_dropped.Load(load).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SessionHandlerTest, ExpiredSessionsAreNotFound) {
  // Idle timeout 120 s; touches write at most once a minute (the default).
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(120);
  absl::StatusOr<v1::SaveResponse> created = handler_.Save(request);
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
        handler_.ListForUser(request);
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
  EXPECT_EQ(handler_.Delete(by_id)->deleted(), 1);
  EXPECT_EQ(handler_.Delete(by_id)->deleted(), 0);

  v1::DeleteRequest others;
  others.set_user_id("alice");
  others.set_except_id(a2.session().id());
  EXPECT_EQ(handler_.Delete(others)->deleted(), 1);
  EXPECT_TRUE(Load(a2.token()).ok());
  EXPECT_FALSE(Load(a3.token()).ok());

  v1::DeleteRequest by_token;
  by_token.set_token(a2.token());
  EXPECT_EQ(handler_.Delete(by_token)->deleted(), 1);
  EXPECT_TRUE(Load(b1.token()).ok());
}

TEST_F(SessionHandlerTest, PruneCountsAndHealthReports) {
  v1::SaveRequest request;
  request.mutable_idle_timeout()->set_seconds(120);
  ASSERT_TRUE(handler_.Save(request).ok());
  ASSERT_TRUE(handler_.Save(request).ok());
  Create("alice", "long-lived");
  clock_.Advance(absl::Seconds(121));
  EXPECT_EQ(handler_.Prune({})->pruned(), 2);
  EXPECT_EQ(handler_.Prune({})->pruned(), 0);
  EXPECT_EQ(handler_.counters().sessions_pruned.load(), 2);

  absl::StatusOr<v1::HealthResponse> health = handler_.Health({});
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->serving());
  EXPECT_EQ(health->backend(), "memory");
  EXPECT_TRUE(health->message().empty());
}

// ---------------------------------------------------------------------------
// Storage errors, from a backend told to fail (tests/storage/fake_backend.h).

class SessionHandlerStorageErrorTest : public ::testing::Test {
 protected:
  SessionHandlerStorageErrorTest() {
    auto fake = std::make_unique<storage::FakeBackend>(
        storage::NewMemoryBackend(&clock_, {}));
    fake_ = fake.get();
    store_ = std::make_unique<storage::SessionStore>(std::move(fake));
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

  // A live session's token.
  std::string NewToken() {
    v1::SaveRequest request;
    request.set_user_id("alice");
    absl::StatusOr<v1::SaveResponse> saved = handler_->Save(request);
    EXPECT_TRUE(saved.ok()) << saved.status();
    return saved.ok() ? saved->token() : "";
  }

  // Every RPC that reaches storage, on a live session of "alice".
  std::vector<std::pair<std::string, std::function<absl::Status()>>> Rpcs(
      const std::string& token) {
    return {
        {"Save (create)",
         [this] { return handler_->Save(v1::SaveRequest()).status(); }},
        {"Save (update)",
         [this, token] {
           v1::SaveRequest r;
           r.set_token(token);
           return handler_->Save(r).status();
         }},
        {"Load",
         [this, token] {
           v1::LoadRequest r;
           r.set_token(token);
           return handler_->Load(r).status();
         }},
        {"Load (touch)",
         [this, token] {
           v1::LoadRequest r;
           r.set_token(token);
           r.set_touch(true);
           return handler_->Load(r).status();
         }},
        {"Cycle",
         [this, token] {
           v1::CycleRequest r;
           r.set_token(token);
           return handler_->Cycle(r).status();
         }},
        {"Delete (token)",
         [this, token] {
           v1::DeleteRequest r;
           r.set_token(token);
           return handler_->Delete(r).status();
         }},
        {"Delete (user)",
         [this] {
           v1::DeleteRequest r;
           r.set_user_id("alice");
           return handler_->Delete(r).status();
         }},
        {"ListForUser",
         [this] {
           v1::ListForUserRequest r;
           r.set_user_id("alice");
           return handler_->ListForUser(r).status();
         }},
        {"Prune",
         [this] { return handler_->Prune(v1::PruneRequest()).status(); }},
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
      handler_->Health(v1::HealthRequest());
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
  absl::StatusOr<v1::SaveResponse> saved = handler_->Save(v1::SaveRequest());
  EXPECT_EQ(saved.status().code(), absl::StatusCode::kInternal);
  fake_->FailCall("cycle", absl::AlreadyExistsError("hash taken"));
  v1::CycleRequest cycle;
  cycle.set_token(token);
  absl::StatusOr<v1::CycleResponse> cycled = handler_->Cycle(cycle);
  EXPECT_EQ(cycled.status().code(), absl::StatusCode::kInternal);
}

TEST_F(SessionHandlerStorageErrorTest, VersionMismatchIsAborted) {
  const std::string token = NewToken();
  v1::SaveRequest update;
  update.set_token(token);
  update.set_expected_version(1);
  fake_->FailCall("update", absl::AbortedError("session version is 2"));
  EXPECT_EQ(handler_->Save(update).status().code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace sessiond
