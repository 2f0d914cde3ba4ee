#include "tests/storage/conformance.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "tests/testing/status_macros.h"
#include "tests/testing/threads.h"

namespace sessiond::storage {

void PrintTo(const StoreFactory& factory, std::ostream* os) {
  *os << "StoreFactory{" << factory.name << "}";
}

void PrintTo(const SessionRecord& r, std::ostream* os) {
  *os << "SessionRecord{tenant=\"" << absl::CEscape(r.tenant) << "\" id=\""
      << absl::CEscape(r.id) << "\" token_hash=\""
      << absl::CEscape(r.token_hash) << "\" user_id=\""
      << absl::CEscape(r.user_id) << "\" sealed_payload=\""
      << absl::CEscape(r.sealed_payload)
      << "\" created_at=" << absl::FormatTime(r.created_at)
      << " last_active_at=" << absl::FormatTime(r.last_active_at)
      << " idle_timeout=" << r.idle_timeout
      << " absolute_lifetime=" << r.absolute_lifetime
      << " version=" << r.version << "}";
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SessionStoreConformanceTest);

namespace {

using ::absl::StatusCode;
using ::testing::HasSubstr;

template <typename T>
StatusCode Code(const absl::StatusOr<T>& s) {
  return s.status().code();
}

using ::sessiond::testing::RunThreads;

// A clock that moves forward by `step` every time it is read: no two
// readings are equal, and the order of the readings is the order of the
// calls. Under concurrency it makes any time read too early (before the
// store has serialised the call) show up as time going backwards.
// Thread-safe.
class SteppingClock : public Clock {
 public:
  SteppingClock(absl::Time start, absl::Duration step)
      : start_(start), step_(step) {}
  absl::Time Now() const override { return start_ + step_ * ticks_++; }

 private:
  const absl::Time start_;
  const absl::Duration step_;
  mutable std::atomic<int64_t> ticks_{0};
};

// Raises `max` to `value` if it is larger.
void AtomicMax(std::atomic<int64_t>& max, int64_t value) {
  int64_t seen = max.load();
  while (seen < value && !max.compare_exchange_weak(seen, value)) {
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Fixture helpers.

absl::Time SessionStoreConformanceTest::StartTime() {
  return absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789);
}

void SessionStoreConformanceTest::SetUp() { ResetStore(StoreOptions()); }

void SessionStoreConformanceTest::TearDown() { store_.reset(); }

void SessionStoreConformanceTest::ResetStore(const StoreOptions& options) {
  store_.reset();
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      GetParam().make(&clock_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_NE(*store, nullptr);
  store_ = std::move(*store);
}

std::string SessionStoreConformanceTest::TokenHash(int n) {
  std::string h(32, '\0');
  for (int i = 0; i < 32; ++i) h[i] = static_cast<char>((i * 37 + 11) & 0xff);
  const uint32_t u = static_cast<uint32_t>(n);
  for (int i = 0; i < 4; ++i) h[i] = static_cast<char>((u >> (8 * i)) & 0xff);
  h[4] = '\0';
  h[5] = '\xff';
  return h;
}

SessionRecord SessionStoreConformanceTest::NewRecord(
    const std::string& id, int hash, const std::string& user_id,
    const std::string& payload, absl::Duration idle, absl::Duration lifetime) {
  SessionRecord r;
  r.tenant = std::string(kTenant);
  r.id = id;
  r.token_hash = TokenHash(hash);
  r.user_id = user_id;
  r.sealed_payload = payload;
  r.idle_timeout = idle;
  r.absolute_lifetime = lifetime;
  return r;
}

SessionRecord SessionStoreConformanceTest::InTenant(absl::string_view tenant,
                                                    SessionRecord record) {
  record.tenant = std::string(tenant);
  return record;
}

SessionRecord SessionStoreConformanceTest::MustCreate(
    const std::string& id, int hash, const std::string& user_id,
    absl::Duration idle, absl::Duration lifetime) {
  return MustCreateIn(kTenant, id, hash, user_id, idle, lifetime);
}

SessionRecord SessionStoreConformanceTest::MustCreateIn(
    absl::string_view tenant, const std::string& id, int hash,
    const std::string& user_id, absl::Duration idle, absl::Duration lifetime) {
  absl::StatusOr<SessionRecord> r = store_->Create(
      InTenant(tenant,
               NewRecord(id, hash, user_id, "payload-" + id, idle, lifetime)),
      limits_);
  if (!r.ok()) {
    ADD_FAILURE() << "Create(" << tenant << ", " << id
                  << ") failed: " << r.status();
    return SessionRecord();
  }
  return *r;
}

std::vector<std::string> SessionStoreConformanceTest::ListIdsIn(
    absl::string_view tenant, const std::string& user) {
  std::vector<std::string> ids;
  absl::StatusOr<SessionPage> page =
      store_->ListForUser(tenant, user, 1000, {});
  if (!page.ok()) {
    ADD_FAILURE() << "ListForUser(" << tenant << ", " << user
                  << ") failed: " << page.status();
    return ids;
  }
  EXPECT_FALSE(page->next.has_value());
  for (const SessionRecord& r : page->sessions) ids.push_back(r.id);
  return ids;
}

bool SessionStoreConformanceTest::ExistsIn(absl::string_view tenant, int hash) {
  absl::StatusOr<SessionRecord> r = store_->Load(tenant, TokenHash(hash));
  if (!r.ok() && r.status().code() != StatusCode::kNotFound) {
    ADD_FAILURE() << "Load failed: " << r.status();
  }
  return r.ok();
}

int64_t SessionStoreConformanceTest::Live(absl::string_view tenant) {
  absl::StatusOr<int64_t> n = store_->CountLive(tenant);
  if (!n.ok()) {
    ADD_FAILURE() << "CountLive(" << tenant << ") failed: " << n.status();
    return -1;
  }
  return *n;
}

using Ids = std::vector<std::string>;

// ---------------------------------------------------------------------------
// Basics.

TEST_P(SessionStoreConformanceTest, BackendNameIsNonEmpty) {
  EXPECT_FALSE(store_->backend_name().empty());
}

TEST_P(SessionStoreConformanceTest, PingIsOk) { ASSERT_OK(store_->Ping()); }

TEST_P(SessionStoreConformanceTest, CreateReturnsStoredRecord) {
  // The suite relies on clock readings with a sub-microsecond part.
  ASSERT_NE(clock_.Now(), StoreNow());
  SessionRecord in = NewRecord("sess-1", 1, "alice", "sealed-bytes",
                               absl::Minutes(20), absl::Hours(8));
  // The store sets these itself.
  in.created_at = absl::UnixEpoch();
  in.last_active_at = absl::UnixEpoch() + absl::Hours(1);
  in.version = 42;
  ASSERT_OK_AND_ASSIGN(SessionRecord out, store_->Create(in, limits_));
  EXPECT_EQ(out.id, "sess-1");
  EXPECT_EQ(out.token_hash, TokenHash(1));
  EXPECT_EQ(out.user_id, "alice");
  EXPECT_EQ(out.sealed_payload, "sealed-bytes");
  EXPECT_EQ(out.created_at, absl::FromUnixMicros(1700000000123456));
  EXPECT_EQ(out.last_active_at, absl::FromUnixMicros(1700000000123456));
  EXPECT_EQ(out.idle_timeout, absl::Minutes(20));
  EXPECT_EQ(out.absolute_lifetime, absl::Hours(8));
  EXPECT_EQ(out.version, 1);
}

TEST_P(SessionStoreConformanceTest, LoadReturnsWhatCreateStoredWithoutTouch) {
  SessionRecord created = MustCreate("sess-1", 1, "alice");
  clock_.Advance(absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, created);
  clock_.Advance(absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, created);
}

TEST_P(SessionStoreConformanceTest, TokenHashAndPayloadAreBinarySafe) {
  const std::string payload("\0\x01\xff sealed \0\n", 12);
  const std::string h1 = TokenHash(1);
  std::string h2 = h1;
  h2[31] = static_cast<char>(h2[31] ^ 1);  // differs only in the last byte
  SessionRecord r1 = NewRecord("a", 1, "", payload);
  SessionRecord r2 = NewRecord("b", 1, "", "other");
  r2.token_hash = h2;
  ASSERT_OK_AND_ASSIGN(SessionRecord c1, store_->Create(r1, limits_));
  ASSERT_OK_AND_ASSIGN(SessionRecord c2, store_->Create(r2, limits_));
  EXPECT_EQ(c1.sealed_payload, payload);
  ASSERT_OK_AND_ASSIGN(SessionRecord l1, store_->Load(kTenant, h1));
  EXPECT_EQ(l1.id, "a");
  EXPECT_EQ(l1.token_hash, h1);
  EXPECT_EQ(l1.sealed_payload, payload);
  ASSERT_OK_AND_ASSIGN(SessionRecord l2, store_->Load(kTenant, h2));
  EXPECT_EQ(l2.id, "b");
  EXPECT_EQ(l2.token_hash, h2);
  EXPECT_EQ(Code(store_->Load(kTenant, h1.substr(0, 31))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Load(kTenant, h1.substr(0, 5))),
            StatusCode::kNotFound);
}

TEST_P(SessionStoreConformanceTest, CreateRejectsDuplicateId) {
  SessionRecord a = MustCreate("dup", 1, "alice");
  EXPECT_EQ(Code(store_->Create(NewRecord("dup", 2, "bob"), limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_FALSE(Exists(2));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
  EXPECT_EQ(ListIds("bob"), Ids{});
}

TEST_P(SessionStoreConformanceTest, CreateRejectsDuplicateTokenHash) {
  SessionRecord a = MustCreate("first", 1, "alice");
  EXPECT_EQ(Code(store_->Create(NewRecord("second", 1, "bob"), limits_)),
            StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
  EXPECT_EQ(ListIds("bob"), Ids{});
  ASSERT_OK_AND_ASSIGN(int64_t deleted, store_->DeleteById(kTenant, "second"));
  EXPECT_EQ(deleted, 0);
}

TEST_P(SessionStoreConformanceTest, CreateRejectsInvalidArguments) {
  std::vector<std::pair<std::string, SessionRecord>> cases;
  SessionRecord r = NewRecord("", 1);
  cases.push_back({"empty id", r});
  r = NewRecord("x", 1);
  r.token_hash.resize(31);
  cases.push_back({"31-byte hash", r});
  r = NewRecord("x", 1);
  r.token_hash.push_back('\0');
  cases.push_back({"33-byte hash", r});
  r = NewRecord("x", 1);
  r.token_hash.clear();
  cases.push_back({"empty hash", r});
  cases.push_back(
      {"zero idle", NewRecord("x", 1, "u", "p", absl::ZeroDuration())});
  cases.push_back(
      {"negative idle", NewRecord("x", 1, "u", "p", -absl::Seconds(1))});
  cases.push_back({"zero lifetime",
                   NewRecord("x", 1, "u", "p", kIdle, absl::ZeroDuration())});
  cases.push_back({"negative lifetime",
                   NewRecord("x", 1, "u", "p", kIdle, -absl::Seconds(1))});
  for (const auto& [what, record] : cases) {
    SCOPED_TRACE(what);
    EXPECT_EQ(Code(store_->Create(record, limits_)),
              StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(Exists(1));
  ASSERT_OK_AND_ASSIGN(int64_t deleted, store_->DeleteById(kTenant, "x"));
  EXPECT_EQ(deleted, 0);
  EXPECT_EQ(ListIds("u"), Ids{});
}

namespace {

// Ids and user ids are valid UTF-8 without NUL bytes (session_store.h).
// Text that is not, each labelled.
std::vector<std::pair<std::string, std::string>> UnstorableTexts() {
  return {
      {"NUL inside", std::string("al\0ice", 6)},
      {"NUL alone", std::string(1, '\0')},
      {"trailing NUL", std::string("alice\0", 6)},
      {"lone 0xff", "\xff"},
      {"lone continuation byte", "a\x80"},
      {"bad continuation", "\xc3\x28"},
      {"truncated sequence", "\xe2\x82"},
      {"overlong '/'", "\xc0\xaf"},
      {"overlong 3-byte", "\xe0\x80\xaf"},
      {"UTF-16 surrogate", "\xed\xa0\x80"},
      {"past U+10FFFF", "\xf4\x90\x80\x80"},
      {"Latin-1 e-acute", "caf\xe9"},
  };
}

}  // namespace

TEST_P(SessionStoreConformanceTest, CreateRejectsIdsAndUserIdsThatAreNotText) {
  for (const auto& [what, bad] : UnstorableTexts()) {
    SCOPED_TRACE(what);
    EXPECT_EQ(Code(store_->Create(NewRecord(bad, 1, "alice"), limits_)),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->Create(NewRecord("x", 1, bad), limits_)),
              StatusCode::kInvalidArgument);
  }
  // Nothing was written.
  EXPECT_FALSE(Exists(1));
  EXPECT_EQ(ListIds("alice"), Ids{});
  ASSERT_OK_AND_ASSIGN(int64_t deleted, store_->DeleteById(kTenant, "x"));
  EXPECT_EQ(deleted, 0);
  ASSERT_OK_AND_ASSIGN(int64_t pruned, store_->PruneExpired(kTenant));
  EXPECT_EQ(pruned, 0);
  // Valid UTF-8 beyond ASCII is fine, in ids and user ids alike.
  const std::string id =
      "s\xc3\xa9"
      "ance-\xf0\x9f\x94\x91";  // séance-🔑
  const std::string user = "\xe2\x9c\x93-\xe6\x97\xa5\xe6\x9c\xac";
  ASSERT_OK_AND_ASSIGN(SessionRecord created,
                       store_->Create(NewRecord(id, 1, user), limits_));
  EXPECT_EQ(created.id, id);
  EXPECT_EQ(created.user_id, user);
  EXPECT_EQ(ListIds(user), Ids{id});
}

TEST_P(SessionStoreConformanceTest, CycleRejectsUserIdsThatAreNotText) {
  const SessionRecord a = MustCreate("a", 1, "alice");
  for (const auto& [what, bad] : UnstorableTexts()) {
    SCOPED_TRACE(what);
    EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1),
                                 MakeCycle(TokenHash(2), bad), limits_)),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(
        Code(store_->Cycle(kTenant, TokenHash(1),
                           MakeCycle(TokenHash(2), bad, "p", 1), limits_)),
        StatusCode::kInvalidArgument);
    // Argument errors come first, as for timeouts.
    EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(9),
                                 MakeCycle(TokenHash(2), bad), limits_)),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(
        Code(store_->Cycle(kTenant, TokenHash(1),
                           MakeCycle(TokenHash(2), bad, "p", 7), limits_)),
        StatusCode::kInvalidArgument);
  }
  // Nothing was written: not the user, the payload, the version, the time
  // or the token hash.
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
  EXPECT_FALSE(Exists(2));
  EXPECT_EQ(ListIds("alice"), Ids{"a"});
  // A Cycle that keeps the user (nullopt) is unaffected.
  ASSERT_OK_AND_ASSIGN(
      SessionRecord cycled,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2)), limits_));
  EXPECT_EQ(cycled.user_id, "alice");
}

// Lookups by text that no stored id or user id can hold find nothing, like
// lookups by a token hash of the wrong size: ListForUser of such a user is
// an empty page and DeleteForUser / DeleteById remove nothing (0). They are
// not INVALID_ARGUMENT, which session_store.h reserves for writes (and for
// an empty user, which would address every anonymous session). An except_id
// that no stored id can equal protects nothing.
TEST_P(SessionStoreConformanceTest,
       LookupsByIdsAndUserIdsThatAreNotTextFindNothing) {
  MustCreate("a1", 1, "alice");
  MustCreate("a2", 2, "alice");
  MustCreate("x", 3, "");
  for (const auto& [what, bad] : UnstorableTexts()) {
    SCOPED_TRACE(what);
    ASSERT_OK_AND_ASSIGN(SessionPage page,
                         store_->ListForUser(kTenant, bad, 10, {}));
    EXPECT_TRUE(page.sessions.empty());
    EXPECT_FALSE(page.next.has_value());
    ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteForUser(kTenant, bad, ""));
    EXPECT_EQ(n, 0);
    ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, bad, "a1"));
    EXPECT_EQ(n, 0);
    ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kTenant, bad));
    EXPECT_EQ(n, 0);
  }
  // Bad arguments other than the text are still INVALID_ARGUMENT.
  EXPECT_EQ(Code(store_->ListForUser(kTenant, std::string("\0", 1), 0, {})),
            StatusCode::kInvalidArgument);
  for (int h : {1, 2, 3}) EXPECT_TRUE(Exists(h)) << h;
  EXPECT_EQ(ListIds("alice"), (Ids{"a2", "a1"}));
  ASSERT_OK_AND_ASSIGN(
      int64_t n,
      store_->DeleteForUser(kTenant, "alice", std::string("a1\0", 3)));
  EXPECT_EQ(n, 2);
  EXPECT_EQ(ListIds("alice"), Ids{});
  EXPECT_TRUE(Exists(3));
}

TEST_P(SessionStoreConformanceTest, CreateReusesIdAndTokenHashOfExpired) {
  MustCreate("reuse-id", 1, "alice", absl::Minutes(1));
  MustCreate("reuse-hash", 2, "alice", absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));
  ASSERT_FALSE(Exists(1));

  ASSERT_OK_AND_ASSIGN(
      SessionRecord a,
      store_->Create(NewRecord("reuse-id", 3, "bob", "new"), limits_));
  EXPECT_EQ(a.version, 1);
  EXPECT_EQ(a.created_at, StoreNow());
  EXPECT_EQ(a.user_id, "bob");
  ASSERT_OK_AND_ASSIGN(
      SessionRecord b,
      store_->Create(NewRecord("fresh", 2, "bob", "new"), limits_));
  EXPECT_EQ(b.version, 1);

  // The expired sessions stay gone: no resurrection under the old keys.
  EXPECT_FALSE(Exists(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord l3, store_->Load(kTenant, TokenHash(3)));
  EXPECT_EQ(l3, a);
  ASSERT_OK_AND_ASSIGN(SessionRecord l2, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(l2, b);
  ASSERT_OK_AND_ASSIGN(int64_t deleted,
                       store_->DeleteById(kTenant, "reuse-hash"));
  EXPECT_EQ(deleted, 0);
  EXPECT_EQ(ListIds("alice"), Ids{});
  EXPECT_EQ(ListIds("bob"), (Ids{"reuse-id", "fresh"}));
}

TEST_P(SessionStoreConformanceTest, LoadOfUnknownTokenHashIsNotFound) {
  MustCreate("present", 1);
  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(2))), StatusCode::kNotFound);
  EXPECT_EQ(
      Code(store_->LoadAndTouch(kTenant, TokenHash(2), absl::ZeroDuration())),
      StatusCode::kNotFound);
  EXPECT_FALSE(Exists(2));
  EXPECT_TRUE(Exists(1));
}

// ---------------------------------------------------------------------------
// Expiry.

TEST_P(SessionStoreConformanceTest, IdleExpiryIsExact) {
  SessionRecord s = MustCreate("idle", 1, "", absl::Minutes(30));
  ASSERT_EQ(s.ExpiresAt(), s.created_at + absl::Minutes(30));
  clock_.Set(s.ExpiresAt() - absl::Microseconds(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);
  clock_.Set(s.ExpiresAt() - absl::Nanoseconds(1));
  EXPECT_TRUE(Exists(1));
  clock_.Set(s.ExpiresAt());
  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(1))), StatusCode::kNotFound);
  clock_.Set(s.ExpiresAt() + absl::Nanoseconds(999));
  EXPECT_FALSE(Exists(1));
}

TEST_P(SessionStoreConformanceTest,
       AbsoluteLifetimeEndsSessionDespiteActivity) {
  SessionRecord s =
      MustCreate("abs", 1, "alice", absl::Minutes(10), absl::Hours(1));
  const absl::Time end = s.created_at + absl::Hours(1);
  // Active every 5 minutes, alternating touches and updates, up to 55 min.
  for (int i = 0; i < 11; ++i) {
    clock_.Advance(absl::Minutes(5));
    if (i % 2 == 0) {
      ASSERT_OK_AND_ASSIGN(
          SessionRecord t,
          store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration()));
      EXPECT_EQ(t.last_active_at, StoreNow());
    } else {
      ASSERT_OK_AND_ASSIGN(
          SessionRecord u,
          store_->Update(kTenant, TokenHash(1), MakeUpdate("p")));
      EXPECT_EQ(u.created_at, s.created_at);
    }
  }
  clock_.Set(end - absl::Microseconds(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded.ExpiresAt(), end);
  EXPECT_EQ(loaded.created_at, s.created_at);
  clock_.Set(end);
  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(1))), StatusCode::kNotFound);
  EXPECT_EQ(
      Code(store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration())),
      StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), MakeUpdate("q"))),
            StatusCode::kNotFound);
  EXPECT_EQ(ListIds("alice"), Ids{});
}

// Timeouts are kept at microsecond precision, like times: a sub-microsecond
// part is dropped (toward zero), and expiry follows the stored value, so
// that every backend expires a session at the same instant.
TEST_P(SessionStoreConformanceTest, CreateTruncatesTimeoutsToWholeMicros) {
  SessionRecord idle = MustCreate("idle", 1, "alice",
                                  absl::Seconds(1800) + absl::Nanoseconds(500),
                                  absl::Hours(24) + absl::Nanoseconds(1999));
  EXPECT_EQ(idle.idle_timeout, absl::Seconds(1800));
  EXPECT_EQ(idle.absolute_lifetime, absl::Hours(24) + absl::Microseconds(1));
  SessionRecord fixed =
      MustCreate("fixed", 2, "alice", absl::Hours(2),
                 absl::Seconds(1800) + absl::Nanoseconds(999));
  EXPECT_EQ(fixed.idle_timeout, absl::Hours(2));
  EXPECT_EQ(fixed.absolute_lifetime, absl::Seconds(1800));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, idle);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, fixed);

  // Both expire exactly at the truncated ExpiresAt, one by the idle timeout
  // and one by the absolute lifetime.
  const absl::Time end = idle.created_at + absl::Seconds(1800);
  ASSERT_EQ(idle.ExpiresAt(), end);
  ASSERT_EQ(fixed.ExpiresAt(), end);
  clock_.Set(end - absl::Nanoseconds(1));  // the store sees end - 1us
  EXPECT_TRUE(Exists(1));
  EXPECT_TRUE(Exists(2));
  clock_.Set(end);
  for (int h : {1, 2}) {
    SCOPED_TRACE(h);
    EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(h))), StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->LoadAndTouch(kTenant, TokenHash(h), absl::ZeroDuration())),
        StatusCode::kNotFound);
    EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(h), MakeUpdate("x"))),
              StatusCode::kNotFound);
  }
  EXPECT_EQ(ListIds("alice"), Ids{});
  clock_.Set(end + absl::Nanoseconds(499));
  EXPECT_FALSE(Exists(1));
  EXPECT_FALSE(Exists(2));
}

TEST_P(SessionStoreConformanceTest,
       ExpiredSessionBehavesLikeMissingEverywhere) {
  MustCreate("control", 1, "alice");
  MustCreate("doomed", 2, "alice", absl::Minutes(1));
  MustCreate("doomed-by-id", 3, "alice", absl::Minutes(1));
  MustCreate("doomed-by-user", 4, "alice", absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));

  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(2))), StatusCode::kNotFound);
  EXPECT_EQ(
      Code(store_->LoadAndTouch(kTenant, TokenHash(2), absl::ZeroDuration())),
      StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(2), MakeUpdate("x"))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(2), MakeUpdate("x", 1))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(2), MakeCycle(TokenHash(9)),
                               limits_)),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(2),
                               MakeCycle(TokenHash(9), "alice"), limits_)),
            StatusCode::kNotFound);
  EXPECT_FALSE(Exists(2));
  EXPECT_FALSE(Exists(9));
  EXPECT_EQ(ListIds("alice"), Ids{"control"});

  // Each delete meets its own expired session and counts 0 for it.
  ASSERT_OK_AND_ASSIGN(int64_t n,
                       store_->DeleteByTokenHash(kTenant, TokenHash(2)));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kTenant, "doomed-by-id"));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", "control"));
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(Exists(1));
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(Exists(1));
}

// ---------------------------------------------------------------------------
// Touch.

TEST_P(SessionStoreConformanceTest, LoadAndTouchIsThrottled) {
  const absl::Duration interval = absl::Seconds(60);
  SessionRecord s = MustCreate("touch", 1, "alice");

  clock_.Advance(absl::Seconds(59));
  ASSERT_OK_AND_ASSIGN(SessionRecord t,
                       store_->LoadAndTouch(kTenant, TokenHash(1), interval));
  EXPECT_EQ(t, s);
  clock_.Set(s.last_active_at + interval - absl::Microseconds(1));
  ASSERT_OK_AND_ASSIGN(t,
                       store_->LoadAndTouch(kTenant, TokenHash(1), interval));
  EXPECT_EQ(t, s);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);

  // Exactly `interval` old once truncated to microseconds: touched.
  clock_.Set(s.last_active_at + interval + absl::Nanoseconds(999));
  ASSERT_OK_AND_ASSIGN(t,
                       store_->LoadAndTouch(kTenant, TokenHash(1), interval));
  SessionRecord expected = s;
  expected.last_active_at = s.last_active_at + interval;
  EXPECT_EQ(t, expected);  // version still 1
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, expected);

  // Within the interval of the new touch: not touched again.
  clock_.Advance(absl::Seconds(30));
  ASSERT_OK_AND_ASSIGN(t,
                       store_->LoadAndTouch(kTenant, TokenHash(1), interval));
  EXPECT_EQ(t, expected);

  // A zero interval always touches.
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(
      t, store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration()));
  EXPECT_EQ(t.last_active_at, StoreNow());
  EXPECT_EQ(t.version, 1);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, t);
}

TEST_P(SessionStoreConformanceTest, TouchExtendsIdleExpiry) {
  SessionRecord s = MustCreate("slide", 1, "", absl::Minutes(10));
  clock_.Advance(absl::Minutes(9));
  ASSERT_OK_AND_ASSIGN(
      SessionRecord t,
      store_->LoadAndTouch(kTenant, TokenHash(1), absl::Minutes(1)));
  EXPECT_EQ(t.last_active_at, StoreNow());
  EXPECT_EQ(t.ExpiresAt(), StoreNow() + absl::Minutes(10));
  clock_.Set(s.ExpiresAt() + absl::Seconds(1));  // past the original expiry
  EXPECT_TRUE(Exists(1));
  clock_.Set(t.ExpiresAt() - absl::Microseconds(1));
  EXPECT_TRUE(Exists(1));
  clock_.Set(t.ExpiresAt());
  EXPECT_FALSE(Exists(1));
}

// The clock steps back (an NTP correction, or a replica whose clock is
// behind the one that wrote last): no write moves last_active_at back.
TEST_P(SessionStoreConformanceTest,
       LastActiveNeverMovesBackWhenClockStepsBack) {
  MustCreate("back", 1, "alice");
  clock_.Advance(absl::Minutes(10));
  ASSERT_OK_AND_ASSIGN(SessionRecord ahead,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("v2")));
  const absl::Time high = ahead.last_active_at;
  clock_.Set(high - absl::Minutes(5));

  ASSERT_OK_AND_ASSIGN(
      SessionRecord touched,
      store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration()));
  EXPECT_EQ(touched.last_active_at, high);
  EXPECT_EQ(touched.version, 2);

  ASSERT_OK_AND_ASSIGN(SessionRecord updated,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("v3")));
  EXPECT_EQ(updated.last_active_at, high);
  EXPECT_EQ(updated.version, 3);

  ASSERT_OK_AND_ASSIGN(
      SessionRecord cycled,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2)), limits_));
  EXPECT_EQ(cycled.last_active_at, high);
  EXPECT_EQ(cycled.version, 4);

  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, cycled);
  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kTenant, "alice", 10, {}));
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_EQ(page.sessions[0].last_active_at, high);

  // Once the clock is past it again, writes move it forward as usual.
  clock_.Set(high + absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(updated,
                       store_->Update(kTenant, TokenHash(2), MakeUpdate("v5")));
  EXPECT_EQ(updated.last_active_at, StoreNow());
}

// ---------------------------------------------------------------------------
// Update and compare-and-set.

TEST_P(SessionStoreConformanceTest, UpdateReplacesFieldsAndBumpsVersion) {
  SessionRecord s = MustCreate("upd", 1, "alice");
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord r, store_->Update(kTenant, TokenHash(1),
                                                       MakeUpdate("new")));
  SessionRecord expected = s;
  expected.sealed_payload = "new";
  expected.last_active_at = StoreNow();
  expected.version = 2;
  EXPECT_EQ(r, expected);  // user, timeouts and created_at kept
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, expected);
  EXPECT_EQ(ListIds("alice"), Ids{"upd"});

  clock_.Advance(absl::Minutes(1));
  SessionUpdate u = MakeUpdate("third");
  u.idle_timeout = absl::Minutes(5);
  ASSERT_OK_AND_ASSIGN(r, store_->Update(kTenant, TokenHash(1), u));
  expected.sealed_payload = "third";
  expected.last_active_at = StoreNow();
  expected.idle_timeout = absl::Minutes(5);
  expected.version = 3;
  EXPECT_EQ(r, expected);  // absolute_lifetime kept
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, expected);
  clock_.Set(expected.last_active_at + absl::Minutes(5) -
             absl::Microseconds(1));
  EXPECT_TRUE(Exists(1));
  clock_.Set(expected.last_active_at + absl::Minutes(5));
  EXPECT_FALSE(Exists(1));
}

// A payload of nullopt keeps the stored one; the update is still a write
// (version, last_active_at), and may change only the timeouts, or nothing
// but those two.
TEST_P(SessionStoreConformanceTest, UpdateWithoutPayloadKeepsIt) {
  const std::string payload("\0sealed\xff", 8);
  ASSERT_OK_AND_ASSIGN(
      SessionRecord s,
      store_->Create(NewRecord("keep", 1, "alice", payload), limits_));
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord r,
                       store_->Update(kTenant, TokenHash(1), SessionUpdate()));
  SessionRecord expected = s;
  expected.last_active_at = StoreNow();
  expected.version = 2;
  EXPECT_EQ(r, expected);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, expected);

  clock_.Advance(absl::Minutes(1));
  SessionUpdate u = MakeUpdate(std::nullopt, 2);
  u.idle_timeout = absl::Minutes(7);
  ASSERT_OK_AND_ASSIGN(r, store_->Update(kTenant, TokenHash(1), u));
  expected.last_active_at = StoreNow();
  expected.idle_timeout = absl::Minutes(7);
  expected.version = 3;
  EXPECT_EQ(r, expected);
  EXPECT_EQ(r.sealed_payload, payload);
  // An empty payload is a payload, not "keep".
  ASSERT_OK_AND_ASSIGN(r,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("")));
  EXPECT_EQ(r.sealed_payload, "");
  EXPECT_EQ(r.version, 4);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, r);
}

TEST_P(SessionStoreConformanceTest, UpdateAbsoluteLifetimeCountsFromCreation) {
  SessionRecord s = MustCreate("upd", 1, "alice");
  clock_.Advance(absl::Minutes(2));
  SessionUpdate u = MakeUpdate("p");
  u.absolute_lifetime = absl::Minutes(3);
  ASSERT_OK_AND_ASSIGN(SessionRecord r,
                       store_->Update(kTenant, TokenHash(1), u));
  EXPECT_EQ(r.absolute_lifetime, absl::Minutes(3));
  EXPECT_EQ(r.idle_timeout, kIdle);
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(r.ExpiresAt(), s.created_at + absl::Minutes(3));
  clock_.Set(s.created_at + absl::Minutes(3) - absl::Microseconds(1));
  EXPECT_TRUE(Exists(1));
  clock_.Set(s.created_at + absl::Minutes(3));
  EXPECT_FALSE(Exists(1));
}

TEST_P(SessionStoreConformanceTest,
       UpdateRefusesALifetimeThatEndsTheSessionAlready) {
  SessionRecord s = MustCreate("upd", 1, "alice");
  clock_.Advance(absl::Minutes(2));
  for (absl::Duration lifetime : {absl::Minutes(1), absl::Minutes(2)}) {
    SCOPED_TRACE(lifetime);
    SessionUpdate u = MakeUpdate("changed");
    u.absolute_lifetime = lifetime;
    absl::StatusOr<SessionRecord> r = store_->Update(kTenant, TokenHash(1), u);
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("absolute_lifetime"));
  }
  // Nothing was written; a lifetime a microsecond longer than the age is
  // still accepted.
  ASSERT_OK_AND_ASSIGN(SessionRecord kept, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(kept.version, 1);
  EXPECT_EQ(kept.sealed_payload, s.sealed_payload);
  SessionUpdate u = MakeUpdate("p");
  u.absolute_lifetime = absl::Minutes(2) + absl::Microseconds(1);
  ASSERT_OK_AND_ASSIGN(SessionRecord r,
                       store_->Update(kTenant, TokenHash(1), u));
  EXPECT_EQ(r.version, 2);
}

TEST_P(SessionStoreConformanceTest, UpdateTruncatesTimeoutsToWholeMicros) {
  MustCreate("idle", 1, "alice");
  SessionRecord fixed = MustCreate("fixed", 2, "alice");
  clock_.Advance(absl::Minutes(1));
  SessionUpdate u = MakeUpdate("p");
  u.idle_timeout = absl::Minutes(10) + absl::Nanoseconds(999);
  u.absolute_lifetime = absl::Hours(2) + absl::Nanoseconds(1);
  ASSERT_OK_AND_ASSIGN(SessionRecord idle,
                       store_->Update(kTenant, TokenHash(1), u));
  EXPECT_EQ(idle.idle_timeout, absl::Minutes(10));
  EXPECT_EQ(idle.absolute_lifetime, absl::Hours(2));
  u.idle_timeout = absl::Hours(1) + absl::Nanoseconds(1);
  u.absolute_lifetime = absl::Minutes(11) + absl::Nanoseconds(500);
  ASSERT_OK_AND_ASSIGN(SessionRecord upd,
                       store_->Update(kTenant, TokenHash(2), u));
  EXPECT_EQ(upd.idle_timeout, absl::Hours(1));
  EXPECT_EQ(upd.absolute_lifetime, absl::Minutes(11));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, idle);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, upd);

  // Both end exactly at the truncated ExpiresAt: 10 minutes after the
  // update, 11 minutes after creation.
  const absl::Time end = idle.last_active_at + absl::Minutes(10);
  ASSERT_EQ(idle.ExpiresAt(), end);
  ASSERT_EQ(upd.ExpiresAt(), fixed.created_at + absl::Minutes(11));
  ASSERT_EQ(upd.ExpiresAt(), end);
  clock_.Set(end - absl::Nanoseconds(1));
  EXPECT_TRUE(Exists(1));
  EXPECT_TRUE(Exists(2));
  clock_.Set(end);
  for (int h : {1, 2}) {
    SCOPED_TRACE(h);
    EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(h))), StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->LoadAndTouch(kTenant, TokenHash(h), absl::ZeroDuration())),
        StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->Cycle(kTenant, TokenHash(h),
                           MakeCycle(TokenHash(h + 10), "alice"), limits_)),
        StatusCode::kNotFound);
  }
  EXPECT_EQ(ListIds("alice"), Ids{});
}

TEST_P(SessionStoreConformanceTest, CycleCanClearUser) {
  MustCreate("u", 1, "alice");
  ASSERT_OK_AND_ASSIGN(
      SessionRecord r,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2), "", "anon"),
                    limits_));
  EXPECT_EQ(r.user_id, "");
  EXPECT_EQ(r.sealed_payload, "anon");
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(ListIds("alice"), Ids{});
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, r);
}

TEST_P(SessionStoreConformanceTest, UpdateOfUnknownSessionIsNotFound) {
  SessionRecord s = MustCreate("present", 1, "alice");
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(2), MakeUpdate("x"))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(2), MakeUpdate("x", 1))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(2), MakeUpdate("x", 7))),
            StatusCode::kNotFound);
  EXPECT_FALSE(Exists(2));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);
}

TEST_P(SessionStoreConformanceTest, UpdateRejectsNonPositiveTimeouts) {
  SessionRecord s = MustCreate("s", 1, "alice");
  clock_.Advance(absl::Minutes(1));
  SessionUpdate u = MakeUpdate("x");
  u.idle_timeout = absl::ZeroDuration();
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), u)),
            StatusCode::kInvalidArgument);
  u.idle_timeout = -absl::Seconds(1);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), u)),
            StatusCode::kInvalidArgument);
  u.idle_timeout.reset();
  u.absolute_lifetime = absl::ZeroDuration();
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), u)),
            StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);
}

TEST_P(SessionStoreConformanceTest, CompareAndSetSucceedsOnMatchingVersion) {
  MustCreate("cas", 1, "alice");
  ASSERT_OK_AND_ASSIGN(SessionRecord r, store_->Update(kTenant, TokenHash(1),
                                                       MakeUpdate("v2", 1)));
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(r.sealed_payload, "v2");
  ASSERT_OK_AND_ASSIGN(
      r, store_->Update(kTenant, TokenHash(1), MakeUpdate("v3", 2)));
  EXPECT_EQ(r.version, 3);
  EXPECT_EQ(r.sealed_payload, "v3");
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, r);
}

TEST_P(SessionStoreConformanceTest,
       CompareAndSetMismatchIsAbortedAndWritesNothing) {
  MustCreate("cas", 1, "alice");
  ASSERT_OK_AND_ASSIGN(SessionRecord r,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("v2")));
  ASSERT_EQ(r.version, 2);
  clock_.Advance(absl::Minutes(1));
  for (int64_t stale : {int64_t{1}, int64_t{3}, int64_t{0}, int64_t{-1}}) {
    SCOPED_TRACE(stale);
    SessionUpdate u = MakeUpdate("lost", stale);
    u.idle_timeout = absl::Minutes(1);
    EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), u)),
              StatusCode::kAborted);
  }
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, r);  // payload, user, timeouts, last_active_at, version
  EXPECT_EQ(ListIds("bob"), Ids{});
}

TEST_P(SessionStoreConformanceTest, ConcurrentCompareAndSetLosesNoUpdate) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 50;
  ASSERT_OK(
      store_->Create(NewRecord("counter", 1, "alice", "0"), limits_).status());
  std::atomic<int> errors{0};
  std::atomic<int> aborts{0};
  RunThreads(kThreads, [&](int) {
    for (int k = 0; k < kIncrements; ++k) {
      bool done = false;
      for (int attempt = 0; attempt < 100000 && !done; ++attempt) {
        absl::StatusOr<SessionRecord> r = store_->Load(kTenant, TokenHash(1));
        int64_t n = 0;
        if (!r.ok() || !absl::SimpleAtoi(r->sealed_payload, &n)) break;
        absl::StatusOr<SessionRecord> u = store_->Update(
            kTenant, TokenHash(1), MakeUpdate(absl::StrCat(n + 1), r->version));
        if (u.ok()) {
          done = true;
        } else if (u.status().code() == StatusCode::kAborted) {
          aborts.fetch_add(1);
        } else {
          break;
        }
      }
      if (!done) {
        errors.fetch_add(1);
        return;
      }
    }
  });
  EXPECT_EQ(errors.load(), 0);
  ASSERT_OK_AND_ASSIGN(SessionRecord r, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(r.sealed_payload, absl::StrCat(kThreads * kIncrements));
  EXPECT_EQ(r.version, 1 + kThreads * kIncrements);
}

// ---------------------------------------------------------------------------
// Time under concurrency.

// A store must read the time only once it has serialised the call (holds
// the lock, or is inside the transaction), so that the times of successive
// writes to one session are in the order the writes take effect. A time read
// earlier, before waiting for a lock, lets a write that waited commit an old
// time after a newer one: last_active_at goes back, and a session that a
// concurrent call already found expired comes back to life.
//
// Threads load, touch and update one session whose idle timeout is a few
// clock readings long, with a clock that moves on every reading, so that
// sessions expire while calls are in flight. Checked, for every call:
//  - a call that starts after another returned never returns an older
//    last_active_at than that one did;
//  - among all records returned, a higher version never has an earlier
//    last_active_at;
//  - once any call has returned NOT_FOUND, every call that starts later
//    returns NOT_FOUND (expired is final: nothing revives it).
TEST_P(SessionStoreConformanceTest, ConcurrentCallsNeverRewindOrResurrect) {
  constexpr int kRounds = 30;
  constexpr int kThreads = 6;
  constexpr int kOpsPerThread = 40;
  constexpr absl::Duration kStep = absl::Milliseconds(1);
  SteppingClock clock(StartTime(), kStep);
  absl::StatusOr<std::unique_ptr<SessionStore>> made =
      GetParam().make(&clock, StoreOptions());
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<SessionStore> store = *std::move(made);

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Some rounds expire almost at once, others under load.
    const absl::Duration idle = kStep * (2 + round % 24);
    const std::string hash = TokenHash(round);
    ASSERT_OK_AND_ASSIGN(
        SessionRecord created,
        store->Create(NewRecord(absl::StrCat("s", round), round, "alice", "0",
                                idle, kLifetime),
                      limits_));

    std::atomic<int64_t> newest_us{absl::ToUnixMicros(created.last_active_at)};
    std::atomic<bool> expired{false};
    std::atomic<int> failures{0};
    auto fail = [&failures](const std::string& what) {
      if (failures.fetch_add(1) < 5) ADD_FAILURE() << what;
    };
    // (version, last_active_at) of every record returned, per thread.
    std::vector<std::vector<std::pair<int64_t, absl::Time>>> seen(kThreads);
    // One call, checked.
    auto call = [&](int t, unsigned which) {
      const bool expired_before = expired.load();
      const int64_t floor_us = newest_us.load();
      absl::StatusOr<SessionRecord> r;
      const char* op = "";
      switch (which % 8) {
        case 0:
        case 1:
        case 2:
          op = "Load";
          r = store->Load(kTenant, hash);
          break;
        case 3:
        case 4:
          op = "LoadAndTouch(0)";
          r = store->LoadAndTouch(kTenant, hash, absl::ZeroDuration());
          break;
        case 5:
          op = "LoadAndTouch(3 steps)";
          r = store->LoadAndTouch(kTenant, hash, kStep * 3);
          break;
        default:
          op = "Update";
          r = store->Update(kTenant, hash, MakeUpdate(absl::StrCat(t)));
          break;
      }
      if (!r.ok()) {
        if (r.status().code() == StatusCode::kNotFound) {
          expired.store(true);
        } else {
          fail(absl::StrCat(op, ": ", r.status().ToString()));
        }
        return;
      }
      if (expired_before) {
        fail(absl::StrCat(op,
                          " found the session after a call had found it "
                          "expired: ",
                          ::testing::PrintToString(*r)));
      }
      const int64_t us = absl::ToUnixMicros(r->last_active_at);
      if (us < floor_us) {
        fail(absl::StrCat(op, " returned last_active_at ",
                          absl::FormatTime(r->last_active_at), ", older than ",
                          absl::FormatTime(absl::FromUnixMicros(floor_us)),
                          " returned before it started"));
      }
      AtomicMax(newest_us, us);
      seen[t].emplace_back(r->version, r->last_active_at);
    };
    RunThreads(kThreads, [&](int t) {
      std::mt19937 rng(static_cast<unsigned>(round * 100 + t));
      for (int k = 0; k < kOpsPerThread; ++k) call(t, rng());
      // Then only loads (which move the clock but not the session) until
      // the session has expired, so that every round ends expired; and a
      // few more, which must all find it expired.
      for (int k = 0; k < 100000 && !expired.load(); ++k) call(t, 0);
      for (int k = 0; k < 3; ++k) call(t, rng());
    });

    std::vector<std::pair<int64_t, absl::Time>> all;
    for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    // Sorted by version, then time: the first record of each version must
    // be no older than the last record of any lower version.
    for (size_t i = 1; i < all.size(); ++i) {
      if (all[i].first != all[i - 1].first &&
          all[i].second < all[i - 1].second) {
        fail(absl::StrCat("version ", all[i].first, " has last_active_at ",
                          absl::FormatTime(all[i].second), ", version ",
                          all[i - 1].first, " a later one ",
                          absl::FormatTime(all[i - 1].second)));
      }
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_TRUE(expired.load());
    EXPECT_EQ(Code(store->Load(kTenant, hash)), StatusCode::kNotFound);
    EXPECT_EQ(Code(store->Update(kTenant, hash, MakeUpdate("late"))),
              StatusCode::kNotFound);
    if (HasFailure()) break;
  }
}

// ---------------------------------------------------------------------------
// Cycle.

TEST_P(SessionStoreConformanceTest, CycleMovesSessionToNewTokenHash) {
  SessionRecord s = MustCreate("cyc", 1, "alice");
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2)), limits_));
  SessionRecord expected = s;
  expected.token_hash = TokenHash(2);
  expected.last_active_at = StoreNow();
  expected.version = 2;
  EXPECT_EQ(c, expected);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, expected);

  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(1))), StatusCode::kNotFound);
  EXPECT_EQ(
      Code(store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration())),
      StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Update(kTenant, TokenHash(1), MakeUpdate("x"))),
            StatusCode::kNotFound);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(3)),
                               limits_)),
            StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(int64_t n,
                       store_->DeleteByTokenHash(kTenant, TokenHash(1)));
  EXPECT_EQ(n, 0);

  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kTenant, "alice", 10, {}));
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_EQ(page.sessions[0], expected);

  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(c, store_->Cycle(kTenant, TokenHash(2),
                                        MakeCycle(TokenHash(3)), limits_));
  EXPECT_EQ(c.version, 3);
  EXPECT_EQ(c.id, "cyc");
  EXPECT_EQ(c.created_at, s.created_at);
  EXPECT_EQ(c.last_active_at, StoreNow());
  EXPECT_FALSE(Exists(2));
  EXPECT_TRUE(Exists(3));
}

TEST_P(SessionStoreConformanceTest, CycleReplacesUserOnlyWhenSet) {
  MustCreate("cyc", 1, "");
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2), "alice"),
                    limits_));
  EXPECT_EQ(c.user_id, "alice");
  EXPECT_EQ(c.version, 2);
  EXPECT_EQ(ListIds("alice"), Ids{"cyc"});

  ASSERT_OK_AND_ASSIGN(
      c, store_->Cycle(kTenant, TokenHash(2), MakeCycle(TokenHash(3), "bob"),
                       limits_));
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(ListIds("alice"), Ids{});
  EXPECT_EQ(ListIds("bob"), Ids{"cyc"});

  ASSERT_OK_AND_ASSIGN(c, store_->Cycle(kTenant, TokenHash(3),
                                        MakeCycle(TokenHash(4)), limits_));
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(c.sealed_payload, "payload-cyc");
  EXPECT_EQ(ListIds("bob"), Ids{"cyc"});

  ASSERT_OK_AND_ASSIGN(c, store_->Cycle(kTenant, TokenHash(4),
                                        MakeCycle(TokenHash(5), ""), limits_));
  EXPECT_EQ(c.user_id, "");
  EXPECT_EQ(c.version, 5);
  EXPECT_EQ(ListIds("bob"), Ids{});
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(5)));
  EXPECT_EQ(loaded, c);
}

TEST_P(SessionStoreConformanceTest, CycleOfUnknownSessionIsNotFound) {
  SessionRecord s = MustCreate("present", 1, "alice");
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(9), MakeCycle(TokenHash(10)),
                               limits_)),
            StatusCode::kNotFound);
  EXPECT_FALSE(Exists(10));
  // NOT_FOUND wins over the new hash being taken.
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(9),
                               MakeCycle(TokenHash(1), "bob"), limits_)),
            StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);
}

TEST_P(SessionStoreConformanceTest, CycleToTokenHashInUseIsAlreadyExists) {
  SessionRecord a = MustCreate("a", 1, "alice");
  SessionRecord b = MustCreate("b", 2, "bob");
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2)),
                               limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1),
                               MakeCycle(TokenHash(2), "carol"), limits_)),
            StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(SessionRecord la, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(la, a);
  ASSERT_OK_AND_ASSIGN(SessionRecord lb, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(lb, b);
  EXPECT_EQ(ListIds("carol"), Ids{});
}

TEST_P(SessionStoreConformanceTest, CycleRejectsInvalidNewTokenHash) {
  SessionRecord a = MustCreate("a", 1, "alice");
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(1)),
                               limits_)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1),
                               MakeCycle(TokenHash(2).substr(0, 31)), limits_)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1), MakeCycle(""), limits_)),
            StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
}

TEST_P(SessionStoreConformanceTest, CycleReplacesPayloadOnlyWhenSet) {
  SessionRecord s = MustCreate("cyc", 1, "alice");
  clock_.Advance(absl::Minutes(1));
  const std::string resealed("\0resealed\xff", 10);
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1),
                    MakeCycle(TokenHash(2), std::nullopt, resealed), limits_));
  SessionRecord expected = s;
  expected.token_hash = TokenHash(2);
  expected.sealed_payload = resealed;
  expected.last_active_at = StoreNow();
  expected.version = 2;
  EXPECT_EQ(c, expected);  // user, timeouts and created_at kept
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, expected);

  // A login: the user and the payload resealed for it, at once.
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(
      c, store_->Cycle(kTenant, TokenHash(2),
                       MakeCycle(TokenHash(3), "bob", "for-bob"), limits_));
  expected.token_hash = TokenHash(3);
  expected.user_id = "bob";
  expected.sealed_payload = "for-bob";
  expected.last_active_at = StoreNow();
  expected.version = 3;
  EXPECT_EQ(c, expected);
  EXPECT_EQ(ListIds("alice"), Ids{});
  EXPECT_EQ(ListIds("bob"), Ids{"cyc"});

  // No payload keeps it; an empty one replaces it.
  ASSERT_OK_AND_ASSIGN(c, store_->Cycle(kTenant, TokenHash(3),
                                        MakeCycle(TokenHash(4)), limits_));
  EXPECT_EQ(c.sealed_payload, "for-bob");
  ASSERT_OK_AND_ASSIGN(
      c, store_->Cycle(kTenant, TokenHash(4),
                       MakeCycle(TokenHash(5), std::nullopt, ""), limits_));
  EXPECT_EQ(c.sealed_payload, "");
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(c.version, 5);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(5)));
  EXPECT_EQ(loaded, c);
}

TEST_P(SessionStoreConformanceTest,
       CycleCompareAndSetSucceedsOnMatchingVersion) {
  MustCreate("cas", 1, "alice");
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1),
                    MakeCycle(TokenHash(2), "bob", "p2", 1), limits_));
  EXPECT_EQ(c.version, 2);
  EXPECT_EQ(c.user_id, "bob");
  EXPECT_EQ(c.sealed_payload, "p2");
  ASSERT_OK_AND_ASSIGN(
      c, store_->Cycle(kTenant, TokenHash(2),
                       MakeCycle(TokenHash(3), std::nullopt, std::nullopt, 2),
                       limits_));
  EXPECT_EQ(c.version, 3);
  EXPECT_EQ(c.user_id, "bob");
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(3)));
  EXPECT_EQ(loaded, c);
  EXPECT_FALSE(Exists(1));
  EXPECT_FALSE(Exists(2));
}

// A Cycle whose expected_version is not the stored one is ABORTED and
// writes nothing: the old token still works, the new finds nothing, and
// neither the user, the payload, the time, the version nor the user's other
// sessions (the cap) change.
TEST_P(SessionStoreConformanceTest,
       CycleCompareAndSetMismatchIsAbortedAndWritesNothing) {
  MustCreate("b1", 5, "bob");
  clock_.Advance(absl::Seconds(1));
  MustCreate("cas", 1, "alice");
  ASSERT_OK_AND_ASSIGN(SessionRecord s,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("v2")));
  ASSERT_EQ(s.version, 2);
  clock_.Advance(absl::Minutes(1));
  limits_.max_sessions_per_user = 1;
  for (int64_t stale : {int64_t{1}, int64_t{3}, int64_t{0}, int64_t{-1}}) {
    SCOPED_TRACE(stale);
    EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1),
                                 MakeCycle(TokenHash(2), "bob", "lost", stale),
                                 limits_)),
              StatusCode::kAborted);
    EXPECT_EQ(Code(store_->Cycle(
                  kTenant, TokenHash(1),
                  MakeCycle(TokenHash(2), std::nullopt, std::nullopt, stale),
                  limits_)),
              StatusCode::kAborted);
  }
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, s);
  EXPECT_FALSE(Exists(2));
  EXPECT_EQ(ListIds("alice"), Ids{"cas"});
  EXPECT_EQ(ListIds("bob"), Ids{"b1"});
  EXPECT_TRUE(Exists(5));
}

// NOT_FOUND takes precedence over ABORTED, and ABORTED over ALREADY_EXISTS.
TEST_P(SessionStoreConformanceTest, CycleErrorPrecedence) {
  SessionRecord a = MustCreate("a", 1, "alice");
  SessionRecord b = MustCreate("b", 2, "bob");
  MustCreate("gone", 3, "alice", absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));  // "gone" has expired
  auto cycle = [&](int old_hash, int new_hash,
                   std::optional<int64_t> expected_version) {
    return Code(store_->Cycle(
        kTenant, TokenHash(old_hash),
        MakeCycle(TokenHash(new_hash), "carol", "x", expected_version),
        limits_));
  };
  // No live session with the old hash: NOT_FOUND, whatever the version and
  // whether the new hash is taken.
  for (int old_hash : {3, 9}) {
    SCOPED_TRACE(old_hash);
    EXPECT_EQ(cycle(old_hash, 2, 7), StatusCode::kNotFound);
    EXPECT_EQ(cycle(old_hash, 2, std::nullopt), StatusCode::kNotFound);
    EXPECT_EQ(cycle(old_hash, 10, 7), StatusCode::kNotFound);
  }
  // A live session but another version: ABORTED, even onto a taken hash.
  EXPECT_EQ(cycle(1, 2, 7), StatusCode::kAborted);
  EXPECT_EQ(cycle(1, 10, 7), StatusCode::kAborted);
  // The right version (or none) onto a taken hash: ALREADY_EXISTS.
  EXPECT_EQ(cycle(1, 2, 1), StatusCode::kAlreadyExists);
  EXPECT_EQ(cycle(1, 2, std::nullopt), StatusCode::kAlreadyExists);
  // Nothing was written.
  ASSERT_OK_AND_ASSIGN(SessionRecord la, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(la, a);
  ASSERT_OK_AND_ASSIGN(SessionRecord lb, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(lb, b);
  EXPECT_FALSE(Exists(3));
  EXPECT_FALSE(Exists(10));
  EXPECT_EQ(ListIds("carol"), Ids{});
  // The new hash of an expired session is free: the cycle goes through.
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1),
                    MakeCycle(TokenHash(3), "carol", "x", 1), limits_));
  EXPECT_EQ(c.id, "a");
  EXPECT_EQ(ListIds("carol"), Ids{"a"});
}

TEST_P(SessionStoreConformanceTest, CycleMayTakeTokenHashOfExpiredSession) {
  MustCreate("a", 1, "alice");
  MustCreate("old", 2, "alice", absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(2)), limits_));
  EXPECT_EQ(c.id, "a");
  EXPECT_EQ(c.version, 2);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, c);
  EXPECT_FALSE(Exists(1));
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kTenant, "old"));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(ListIds("alice"), Ids{"a"});
}

TEST_P(SessionStoreConformanceTest,
       ConcurrentCyclesOfOneSessionExactlyOneWins) {
  constexpr int kThreads = 8;
  MustCreate("race", 1, "alice");
  std::vector<StatusCode> codes(kThreads, StatusCode::kUnknown);
  RunThreads(kThreads, [&](int i) {
    codes[i] = Code(store_->Cycle(kTenant, TokenHash(1),
                                  MakeCycle(TokenHash(100 + i)), limits_));
  });
  int winners = 0;
  for (int i = 0; i < kThreads; ++i) {
    SCOPED_TRACE(i);
    if (codes[i] == StatusCode::kOk) {
      ++winners;
      ASSERT_OK_AND_ASSIGN(SessionRecord r,
                           store_->Load(kTenant, TokenHash(100 + i)));
      EXPECT_EQ(r.id, "race");
      EXPECT_EQ(r.version, 2);
    } else {
      EXPECT_EQ(codes[i], StatusCode::kNotFound);
      EXPECT_FALSE(Exists(100 + i));
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_FALSE(Exists(1));
  EXPECT_EQ(ListIds("alice"), Ids{"race"});
}

// Cyclers keep moving their sessions to new token hashes while listers list
// the user over and over; every listing must show each session exactly once,
// whole: a token hash that goes with its version, versions that never go
// back, and the listing order. The cyclers do not stop before every lister
// has listed kMinLists times, so those listings all race the cycles.
TEST_P(SessionStoreConformanceTest, ListersNeverSeeACycleHalfDone) {
  constexpr int kCyclers = 3;
  constexpr int kListers = 3;
  constexpr int kMinCycles = 150;  // per cycler
  constexpr int kMinLists = 150;   // per lister, while every cycler runs
  constexpr int kHashSpace = 1000000;
  // Cycler c's session holds this token hash while at version v.
  auto hash_of = [](int c, int64_t v) {
    return TokenHash((c + 1) * kHashSpace + static_cast<int>(v));
  };
  auto id_of = [](int c) { return absl::StrCat("moving-", c); };
  std::map<std::string, SessionRecord> created;
  for (int c = 0; c < kCyclers; ++c) {
    ASSERT_OK_AND_ASSIGN(
        SessionRecord r,
        store_->Create(NewRecord(id_of(c), 0, "alice"), limits_));
    ASSERT_OK_AND_ASSIGN(r, store_->Cycle(kTenant, TokenHash(0),
                                          MakeCycle(hash_of(c, 2)), limits_));
    ASSERT_EQ(r.version, 2);
    created[r.id] = r;
  }
  // A session of the same user that stays put.
  created["still"] = MustCreate("still", 1, "alice");

  std::atomic<int> listers_satisfied{0};
  std::atomic<int> cyclers_done{0};
  std::atomic<int> cycle_errors{0};
  std::atomic<int> bad{0};
  std::vector<int64_t> final_version(kCyclers, 0);
  std::vector<int> lists(kListers, 0);
  auto report = [&bad](const std::string& what) {
    if (bad.fetch_add(1) < 5) ADD_FAILURE() << what;
  };
  RunThreads(kCyclers + kListers, [&](int i) {
    if (i < kCyclers) {
      const int c = i;
      int64_t v = 2;
      while ((v < kMinCycles || listers_satisfied.load() < kListers) &&
             v < kHashSpace - 1) {
        clock_.Advance(absl::Microseconds(1));  // reorder the listing
        absl::StatusOr<SessionRecord> r = store_->Cycle(
            kTenant, hash_of(c, v), MakeCycle(hash_of(c, v + 1)), limits_);
        if (!r.ok() || r->version != v + 1 ||
            r->token_hash != hash_of(c, v + 1)) {
          if (cycle_errors.fetch_add(1) < 5) {
            ADD_FAILURE() << "cycle of " << id_of(c) << " at version " << v
                          << ": "
                          << (r.ok() ? ::testing::PrintToString(*r)
                                     : r.status().ToString());
          }
          break;
        }
        ++v;
      }
      final_version[c] = v;
      cyclers_done.fetch_add(1);
      return;
    }
    const int l = i - kCyclers;
    std::map<std::string, int64_t> last_version;
    while (cyclers_done.load() < kCyclers) {
      absl::StatusOr<SessionPage> page =
          store_->ListForUser(kTenant, "alice", 100, {});
      if (++lists[l] == kMinLists) listers_satisfied.fetch_add(1);
      if (!page.ok()) {
        report(absl::StrCat("ListForUser: ", page.status().ToString()));
        continue;
      }
      if (page->next.has_value() || page->sessions.size() != created.size()) {
        report(absl::StrCat("listing has ", page->sessions.size(),
                            " sessions (want ", created.size(), ")"));
        continue;
      }
      std::set<std::string> ids;
      for (size_t k = 0; k < page->sessions.size(); ++k) {
        const SessionRecord& r = page->sessions[k];
        auto it = created.find(r.id);
        if (it == created.end() || !ids.insert(r.id).second) {
          report(absl::StrCat("unexpected or repeated id ", r.id));
          continue;
        }
        const SessionRecord& c0 = it->second;
        if (r.user_id != "alice" || r.sealed_payload != c0.sealed_payload ||
            r.created_at != c0.created_at) {
          report(absl::StrCat("fields of ", r.id, " changed"));
        }
        if (r.id == "still") {
          if (!(r == c0)) report("the session nobody cycles changed");
        } else {
          const int c = r.id.back() - '0';
          if (r.token_hash != hash_of(c, r.version)) {
            report(absl::StrCat(r.id, " at version ", r.version,
                                " has another version's token hash"));
          }
          int64_t& last = last_version[r.id];
          if (r.version < last) {
            report(absl::StrCat(r.id, " went back from version ", last, " to ",
                                r.version));
          }
          last = r.version;
        }
        if (k > 0) {
          const SessionRecord& p = page->sessions[k - 1];
          if (!ListsBefore(p.last_active_at, p.id, r.last_active_at, r.id)) {
            report(
                absl::StrCat(p.id, " listed before ", r.id, " out of order"));
          }
        }
      }
    }
  });
  EXPECT_EQ(cycle_errors.load(), 0);
  EXPECT_EQ(bad.load(), 0);
  for (int l = 0; l < kListers; ++l) EXPECT_GE(lists[l], kMinLists) << l;
  for (int c = 0; c < kCyclers; ++c) {
    SCOPED_TRACE(c);
    EXPECT_GE(final_version[c], kMinCycles);
    ASSERT_OK_AND_ASSIGN(SessionRecord r,
                         store_->Load(kTenant, hash_of(c, final_version[c])));
    EXPECT_EQ(r.id, id_of(c));
    EXPECT_EQ(r.version, final_version[c]);
    EXPECT_EQ(Code(store_->Load(kTenant, hash_of(c, final_version[c] - 1))),
              StatusCode::kNotFound);
  }
  EXPECT_EQ(ListIds("alice").size(), created.size());
}

// ---------------------------------------------------------------------------
// Per-user cap.

TEST_P(SessionStoreConformanceTest, PerUserCapEvictsLeastRecentlyActive) {
  limits_.max_sessions_per_user = 3;
  MustCreate("s1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("s2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("s3", 3, "alice");
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration())
                .status());
  clock_.Advance(absl::Seconds(1));
  MustCreate("s4", 4, "alice");
  EXPECT_FALSE(Exists(2));
  EXPECT_TRUE(Exists(1));
  EXPECT_TRUE(Exists(3));
  EXPECT_TRUE(Exists(4));
  EXPECT_EQ(ListIds("alice"), (Ids{"s4", "s1", "s3"}));
  clock_.Advance(absl::Seconds(1));
  MustCreate("s5", 5, "alice");
  EXPECT_EQ(ListIds("alice"), (Ids{"s5", "s4", "s1"}));
  EXPECT_FALSE(Exists(3));
}

TEST_P(SessionStoreConformanceTest, PerUserCapNeverEvictsTheWrittenSession) {
  limits_.max_sessions_per_user = 2;
  // The clock stands still: all three are equally recently active, and the
  // new session has the smallest id, so it would be the first to go.
  MustCreate("c", 1, "alice");
  MustCreate("b", 2, "alice");
  MustCreate("a", 3, "alice");
  EXPECT_TRUE(Exists(3));
  EXPECT_FALSE(Exists(2));  // ties: the smallest id goes first
  EXPECT_TRUE(Exists(1));
  EXPECT_EQ(ListIds("alice"), (Ids{"c", "a"}));

  ASSERT_NO_FATAL_FAILURE(ResetStore(StoreOptions()));
  limits_.max_sessions_per_user = 1;
  MustCreate("z", 1, "bob");
  MustCreate("y", 2, "bob");
  EXPECT_EQ(ListIds("bob"), Ids{"y"});
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(2), MakeCycle(TokenHash(3), "bob"),
                        limits_)
                .status());
  EXPECT_EQ(ListIds("bob"), Ids{"y"});
  ASSERT_OK(store_->Update(kTenant, TokenHash(3), MakeUpdate("p")).status());
  EXPECT_EQ(ListIds("bob"), Ids{"y"});
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(3),
                        MakeCycle(TokenHash(4), "bob", "resealed"), limits_)
                .status());
  EXPECT_EQ(ListIds("bob"), Ids{"y"});
}

TEST_P(SessionStoreConformanceTest, PerUserCapIgnoresExpiredSessions) {
  limits_.max_sessions_per_user = 2;
  MustCreate("long", 1, "alice");
  clock_.Advance(absl::Seconds(30));
  // More recently active than "long", but expired when "new" arrives.
  MustCreate("short", 2, "alice", absl::Seconds(30));
  clock_.Advance(absl::Seconds(30));
  MustCreate("new", 3, "alice");
  EXPECT_TRUE(Exists(1));
  EXPECT_FALSE(Exists(2));
  EXPECT_TRUE(Exists(3));
  EXPECT_EQ(ListIds("alice"), (Ids{"new", "long"}));
}

TEST_P(SessionStoreConformanceTest, PerUserCapCountsOnlyThatUsersSessions) {
  limits_.max_sessions_per_user = 2;
  MustCreate("b1", 1, "bob");
  MustCreate("b2", 2, "bob");
  MustCreate("x1", 3, "");
  MustCreate("x2", 4, "");
  MustCreate("x3", 5, "");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a1", 6, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a2", 7, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a3", 8, "alice");
  EXPECT_EQ(ListIds("alice"), (Ids{"a3", "a2"}));
  EXPECT_EQ(ListIds("bob"), (Ids{"b2", "b1"}));
  for (int h : {1, 2, 3, 4, 5, 7, 8}) EXPECT_TRUE(Exists(h)) << h;
  EXPECT_FALSE(Exists(6));
}

// The cap comes with each write: Create and Cycle apply the limits they are
// given, and a write with no cap (0) evicts nothing, whatever earlier
// writes were given.
TEST_P(SessionStoreConformanceTest, PerUserCapIsTheOneEachWriteIsGiven) {
  for (int i = 1; i <= 4; ++i) {
    MustCreate(absl::StrCat("a", i), i, "alice");
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_EQ(ListIds("alice"), (Ids{"a4", "a3", "a2", "a1"}));
  TenantLimits cap3;
  cap3.max_sessions_per_user = 3;
  ASSERT_OK(store_->Create(NewRecord("a5", 5, "alice"), cap3).status());
  EXPECT_EQ(ListIds("alice"), (Ids{"a5", "a4", "a3"}));
  clock_.Advance(absl::Seconds(1));
  MustCreate("a6", 6, "alice");  // no cap
  EXPECT_EQ(ListIds("alice"), (Ids{"a6", "a5", "a4", "a3"}));
  clock_.Advance(absl::Seconds(1));
  TenantLimits cap1;
  cap1.max_sessions_per_user = 1;
  ASSERT_OK_AND_ASSIGN(SessionRecord c,
                       store_->Cycle(kTenant, TokenHash(3),
                                     MakeCycle(TokenHash(13), "alice"), cap1));
  EXPECT_EQ(c.id, "a3");
  EXPECT_EQ(ListIds("alice"), Ids{"a3"});
  for (int h : {4, 5, 6}) EXPECT_FALSE(Exists(h)) << h;
  // The live cap is not the per-user one.
  TenantLimits live_cap;
  live_cap.max_live_sessions = 100;
  ASSERT_OK(store_->Create(NewRecord("a7", 7, "alice"), live_cap).status());
  EXPECT_EQ(ListIds("alice"), (Ids{"a7", "a3"}));
}

// Update has no limits: it never changes the user, so it never makes a
// session count against a user's cap, and it evicts nothing.
TEST_P(SessionStoreConformanceTest, UpdateNeverAppliesTheCap) {
  MustCreate("a1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a3", 3, "alice");
  MustCreate("x", 4, "");
  clock_.Advance(absl::Seconds(1));
  limits_.max_sessions_per_user = 1;
  ASSERT_OK_AND_ASSIGN(SessionRecord r,
                       store_->Update(kTenant, TokenHash(1), MakeUpdate("p")));
  EXPECT_EQ(r.user_id, "alice");
  ASSERT_OK_AND_ASSIGN(r,
                       store_->Update(kTenant, TokenHash(4), MakeUpdate("q")));
  EXPECT_EQ(r.user_id, "");
  EXPECT_EQ(ListIds("alice"), (Ids{"a1", "a3", "a2"}));
  for (int h : {1, 2, 3, 4}) EXPECT_TRUE(Exists(h)) << h;
}

// Only a Cycle that sets a user applies the cap; one that keeps the user
// evicts nothing, whatever limits it is given.
TEST_P(SessionStoreConformanceTest, PerUserCapAppliesOnlyWhenCycleSetsAUser) {
  MustCreate("a1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a3", 3, "alice");
  clock_.Advance(absl::Seconds(1));
  limits_.max_sessions_per_user = 2;
  ASSERT_OK(
      store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(11)), limits_)
          .status());
  EXPECT_EQ(ListIds("alice"), (Ids{"a1", "a3", "a2"}));
  clock_.Advance(absl::Seconds(1));
  // Setting the same user again is setting it: the cap applies.
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(11),
                        MakeCycle(TokenHash(21), "alice"), limits_)
                .status());
  EXPECT_EQ(ListIds("alice"), (Ids{"a1", "a3"}));
  EXPECT_FALSE(Exists(2));
}

TEST_P(SessionStoreConformanceTest, PerUserCapAppliesOnCycle) {
  limits_.max_sessions_per_user = 2;
  MustCreate("a1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("x", 3, "");
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(
      SessionRecord c,
      store_->Cycle(kTenant, TokenHash(3), MakeCycle(TokenHash(4), "alice"),
                    limits_));
  EXPECT_EQ(c.user_id, "alice");
  EXPECT_FALSE(Exists(1));
  EXPECT_TRUE(Exists(2));
  EXPECT_EQ(ListIds("alice"), (Ids{"x", "a2"}));
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(4), MakeCycle(TokenHash(5), "alice"),
                        limits_)
                .status());
  ASSERT_OK(
      store_->Cycle(kTenant, TokenHash(5), MakeCycle(TokenHash(6)), limits_)
          .status());
  EXPECT_EQ(ListIds("alice"), (Ids{"x", "a2"}));
}

TEST_P(SessionStoreConformanceTest, ZeroCapIsUnlimited) {
  constexpr int kSessions = 25;
  for (int i = 0; i < kSessions; ++i) {
    MustCreate(absl::StrCat("s", 100 + i), i, "alice");
  }
  EXPECT_EQ(ListIds("alice").size(), static_cast<size_t>(kSessions));
  for (int i = 0; i < kSessions; ++i) EXPECT_TRUE(Exists(i)) << i;
}

TEST_P(SessionStoreConformanceTest, ConcurrentCreatesKeepTheCap) {
  limits_.max_sessions_per_user = 3;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20;
  std::atomic<int> errors{0};
  RunThreads(kThreads, [&](int t) {
    for (int k = 0; k < kPerThread; ++k) {
      const int n = t * kPerThread + k;
      if (!store_->Create(NewRecord(absl::StrCat("s", n), n, "alice"), limits_)
               .ok()) {
        errors.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(errors.load(), 0);
  Ids ids = ListIds("alice");
  EXPECT_EQ(ids.size(), 3u);
  int live = 0;
  for (int n = 0; n < kThreads * kPerThread; ++n) live += Exists(n) ? 1 : 0;
  EXPECT_EQ(live, 3);
}

TEST_P(SessionStoreConformanceTest, ConcurrentCreatesOfOneIdExactlyOneWins) {
  constexpr int kThreads = 8;
  std::vector<StatusCode> codes(kThreads, StatusCode::kUnknown);
  RunThreads(kThreads, [&](int i) {
    codes[i] =
        Code(store_->Create(NewRecord("same", 10 + i, "alice"), limits_));
  });
  int winners = 0;
  for (int i = 0; i < kThreads; ++i) {
    if (codes[i] == StatusCode::kOk) {
      ++winners;
      EXPECT_TRUE(Exists(10 + i));
    } else {
      EXPECT_EQ(codes[i], StatusCode::kAlreadyExists) << i;
      EXPECT_FALSE(Exists(10 + i)) << i;
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(ListIds("alice"), Ids{"same"});
}

// ---------------------------------------------------------------------------
// ListForUser.

TEST_P(SessionStoreConformanceTest, ListForUserOrdersByLastActiveThenId) {
  MustCreate("m", 1, "alice");
  MustCreate("z", 2, "alice");
  MustCreate("y", 3, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("a", 4, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("k", 5, "alice");
  MustCreate("bob1", 6, "bob");
  MustCreate("anon", 7, "");
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(store_->LoadAndTouch(kTenant, TokenHash(1), absl::ZeroDuration())
                .status());

  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kTenant, "alice", 10, {}));
  EXPECT_FALSE(page.next.has_value());
  const std::vector<int> expected_hashes = {1, 5, 4, 2, 3};  // m k a z y
  ASSERT_EQ(page.sessions.size(), expected_hashes.size());
  for (size_t i = 0; i < expected_hashes.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_OK_AND_ASSIGN(SessionRecord r,
                         store_->Load(kTenant, TokenHash(expected_hashes[i])));
    EXPECT_EQ(page.sessions[i], r);
  }
}

TEST_P(SessionStoreConformanceTest, ListForUserPagesCoverEverySessionOnce) {
  // 10 sessions in groups of equal last_active_at.
  for (int i = 0; i < 10; ++i) {
    if (i % 3 == 0) clock_.Advance(absl::Seconds(1));
    MustCreate(absl::StrCat("s", i), i, "alice");
  }
  MustCreate("other", 50, "bob");
  const Ids expected = {"s9", "s8", "s7", "s6", "s5",
                        "s4", "s3", "s2", "s1", "s0"};
  for (int limit : {1, 3, 5, 9, 10, 11}) {
    SCOPED_TRACE(limit);
    Ids seen;
    std::optional<ListCursor> cursor;
    int pages = 0;
    for (;;) {
      ASSERT_OK_AND_ASSIGN(
          SessionPage page,
          store_->ListForUser(kTenant, "alice", limit, cursor));
      ++pages;
      ASSERT_LE(pages, 20);
      for (const SessionRecord& r : page.sessions) seen.push_back(r.id);
      if (!page.next.has_value()) {
        EXPECT_EQ(page.sessions.size(),
                  static_cast<size_t>(10 - (pages - 1) * limit));
        break;
      }
      ASSERT_EQ(page.sessions.size(), static_cast<size_t>(limit));
      EXPECT_EQ(page.next->id, page.sessions.back().id);
      EXPECT_EQ(page.next->last_active_at, page.sessions.back().last_active_at);
      cursor = page.next;
    }
    EXPECT_EQ(seen, expected);
    EXPECT_EQ(pages, (10 + limit - 1) / limit);
  }
}

// Pages also stop by the bytes of their sealed payloads: each holds what
// fits and no less (or one session that alone does not fit), `next` is set
// exactly when more follow, and together they list every session once. The
// store refuses (INTERNAL) a backend listing that reads past the budget.
TEST_P(SessionStoreConformanceTest, ListForUserPagesStopAtTheByteBudget) {
  std::vector<SessionRecord> expected;
  for (int i = 0; i < 12; ++i) {
    clock_.Advance(absl::Seconds(1));
    const std::string payload((i * 37) % 300 + 1, static_cast<char>('a' + i));
    ASSERT_OK_AND_ASSIGN(
        SessionRecord r,
        store_->Create(NewRecord(absl::StrCat("s", i), i, "alice", payload),
                       limits_));
    expected.insert(expected.begin(), r);
  }
  for (int64_t max_bytes : {1, 150, 299, 300, 301, 700, 1 << 20}) {
    for (int limit : {1, 4, 12, 13}) {
      SCOPED_TRACE(absl::StrCat("max_bytes ", max_bytes, " limit ", limit));
      size_t next = 0;  // index in `expected` of the next page's first
      std::optional<ListCursor> cursor;
      for (int pages = 1;; ++pages) {
        ASSERT_LE(pages, 13);
        ASSERT_OK_AND_ASSIGN(
            SessionPage page,
            store_->ListForUser(kTenant, "alice", limit, cursor, max_bytes));
        ASSERT_FALSE(page.sessions.empty());
        int64_t bytes = 0;
        for (const SessionRecord& r : page.sessions) {
          ASSERT_LT(next, expected.size());
          EXPECT_EQ(r, expected[next]);
          ++next;
          bytes += static_cast<int64_t>(r.sealed_payload.size());
        }
        if (page.sessions.size() > 1) {
          EXPECT_LE(bytes, max_bytes);
        }
        EXPECT_LE(page.sessions.size(), static_cast<size_t>(limit));
        if (!page.next.has_value()) {
          EXPECT_EQ(next, expected.size());
          break;
        }
        ASSERT_LT(next, expected.size());
        // The page is as full as it may be.
        EXPECT_TRUE(
            page.sessions.size() == static_cast<size_t>(limit) ||
            bytes + static_cast<int64_t>(expected[next].sealed_payload.size()) >
                max_bytes);
        EXPECT_EQ(page.next->id, page.sessions.back().id);
        cursor = page.next;
      }
    }
  }
  EXPECT_EQ(Code(store_->ListForUser(kTenant, "alice", 10, {}, 0)),
            StatusCode::kInvalidArgument);
}

TEST_P(SessionStoreConformanceTest, ListForUserCursorIsAPosition) {
  SessionRecord s1 = MustCreate("s1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  SessionRecord s2 = MustCreate("s2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreate("s3", 3, "alice");

  ASSERT_OK_AND_ASSIGN(SessionPage first,
                       store_->ListForUser(kTenant, "alice", 1, {}));
  ASSERT_EQ(first.sessions.size(), 1u);
  EXPECT_EQ(first.sessions[0].id, "s3");
  ASSERT_TRUE(first.next.has_value());
  // The cursor's session goes away; the listing continues after it.
  ASSERT_OK(store_->DeleteById(kTenant, "s3").status());
  ASSERT_OK_AND_ASSIGN(SessionPage rest,
                       store_->ListForUser(kTenant, "alice", 10, first.next));
  ASSERT_EQ(rest.sessions.size(), 2u);
  EXPECT_EQ(rest.sessions[0], s2);
  EXPECT_EQ(rest.sessions[1], s1);
  EXPECT_FALSE(rest.next.has_value());

  // Cursors that match no stored session: strictly after the position.
  auto ids_after = [&](absl::Time t, const std::string& id) {
    Ids ids;
    absl::StatusOr<SessionPage> page =
        store_->ListForUser(kTenant, "alice", 10, ListCursor{t, id});
    EXPECT_TRUE(page.ok()) << page.status();
    if (page.ok()) {
      for (const SessionRecord& r : page->sessions) ids.push_back(r.id);
    }
    return ids;
  };
  EXPECT_EQ(ids_after(s2.last_active_at, "s3"), (Ids{"s2", "s1"}));
  EXPECT_EQ(ids_after(s2.last_active_at, "s2"), Ids{"s1"});
  EXPECT_EQ(ids_after(s2.last_active_at, "s1"), Ids{"s1"});
  EXPECT_EQ(ids_after(s2.last_active_at, "s0"), Ids{"s1"});
  EXPECT_EQ(ids_after(s1.last_active_at, "s1"), Ids{});
  EXPECT_EQ(ids_after(s2.last_active_at + absl::Milliseconds(1), ""),
            (Ids{"s2", "s1"}));
  // Between two whole microseconds (no page ends there, but a caller may
  // ask): every session of the earlier one follows, whatever the id.
  EXPECT_EQ(ids_after(s2.last_active_at + absl::Nanoseconds(500), ""),
            (Ids{"s2", "s1"}));
  EXPECT_EQ(ids_after(s2.last_active_at + absl::Nanoseconds(500), "s9"),
            (Ids{"s2", "s1"}));
  EXPECT_EQ(ids_after(s2.last_active_at - absl::Nanoseconds(500), "a"),
            Ids{"s1"});
}

TEST_P(SessionStoreConformanceTest, ListForUserExcludesExpiredSessions) {
  MustCreate("doomed", 1, "alice", absl::Minutes(1));
  clock_.Advance(absl::Seconds(10));
  MustCreate("live1", 2, "alice");
  clock_.Advance(absl::Seconds(10));
  MustCreate("live2", 3, "alice");
  clock_.Advance(absl::Seconds(40));  // "doomed" has just expired
  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kTenant, "alice", 2, {}));
  ASSERT_EQ(page.sessions.size(), 2u);
  EXPECT_EQ(page.sessions[0].id, "live2");
  EXPECT_EQ(page.sessions[1].id, "live1");
  EXPECT_FALSE(page.next.has_value());  // only an expired session follows
  ASSERT_OK_AND_ASSIGN(page, store_->ListForUser(kTenant, "alice", 1, {}));
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_TRUE(page.next.has_value());
}

TEST_P(SessionStoreConformanceTest, ListForUserRejectsBadArguments) {
  MustCreate("a", 1, "alice");
  MustCreate("x", 2, "");
  EXPECT_EQ(Code(store_->ListForUser(kTenant, "alice", 0, {})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->ListForUser(kTenant, "alice", -1, {})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->ListForUser(kTenant, "", 10, {})),
            StatusCode::kInvalidArgument);
}

// No page ends at a session whose id is not text, so a cursor with such an
// id is a bad argument on every backend, whatever the user.
TEST_P(SessionStoreConformanceTest, ListForUserRejectsCursorIdThatIsNotText) {
  MustCreate("a", 1, "alice");
  for (const std::string& id :
       {std::string("a\0b", 3), std::string("\xff"), std::string("\xc0\x80")}) {
    const ListCursor cursor{StoreNow(), id};
    EXPECT_EQ(Code(store_->ListForUser(kTenant, "alice", 10, cursor)),
              StatusCode::kInvalidArgument)
        << absl::CEscape(id);
    EXPECT_EQ(Code(store_->ListForUser(kTenant, "nobody", 10, cursor)),
              StatusCode::kInvalidArgument)
        << absl::CEscape(id);
  }
}

TEST_P(SessionStoreConformanceTest, ListForUserOfUnknownUserIsEmpty) {
  MustCreate("a", 1, "alice");
  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kTenant, "nobody", 10, {}));
  EXPECT_TRUE(page.sessions.empty());
  EXPECT_FALSE(page.next.has_value());
}

// ---------------------------------------------------------------------------
// Deletes and pruning.

TEST_P(SessionStoreConformanceTest, DeleteByTokenHashRemovesOneSession) {
  MustCreate("a", 1, "alice");
  SessionRecord b = MustCreate("b", 2, "alice");
  ASSERT_OK_AND_ASSIGN(int64_t n,
                       store_->DeleteByTokenHash(kTenant, TokenHash(1)));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(Exists(1));
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteByTokenHash(kTenant, TokenHash(1)));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteByTokenHash(kTenant, TokenHash(9)));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(SessionRecord lb, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(lb, b);
  EXPECT_EQ(ListIds("alice"), Ids{"b"});
  // Both the id and the hash are free again.
  MustCreate("a", 1, "alice");
  EXPECT_TRUE(Exists(1));
}

TEST_P(SessionStoreConformanceTest, DeleteByIdRemovesOneSession) {
  MustCreate("a", 1, "alice");
  SessionRecord b = MustCreate("b", 2, "alice");
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kTenant, "a"));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(Exists(1));
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kTenant, "a"));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kTenant, "nope"));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(SessionRecord lb, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(lb, b);
  EXPECT_EQ(ListIds("alice"), Ids{"b"});
  MustCreate("a", 1, "alice");
  EXPECT_TRUE(Exists(1));
}

TEST_P(SessionStoreConformanceTest, DeleteForUserRemovesOnlyThatUsersSessions) {
  MustCreate("a1", 1, "alice");
  MustCreate("a2", 2, "alice");
  MustCreate("a3", 3, "alice");
  MustCreate("b1", 4, "bob");
  MustCreate("b2", 5, "bob");
  MustCreate("x", 6, "");
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 3);
  EXPECT_EQ(ListIds("alice"), Ids{});
  for (int h : {1, 2, 3}) EXPECT_FALSE(Exists(h)) << h;
  for (int h : {4, 5, 6}) EXPECT_TRUE(Exists(h)) << h;
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "nobody", ""));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(ListIds("bob"), (Ids{"b2", "b1"}));
}

TEST_P(SessionStoreConformanceTest, DeleteForUserKeepsExceptId) {
  MustCreate("a1", 1, "alice");
  MustCreate("a2", 2, "alice");
  MustCreate("a3", 3, "alice");
  MustCreate("b1", 4, "bob");
  ASSERT_OK_AND_ASSIGN(int64_t n,
                       store_->DeleteForUser(kTenant, "alice", "a2"));
  EXPECT_EQ(n, 2);
  EXPECT_EQ(ListIds("alice"), Ids{"a2"});
  EXPECT_TRUE(Exists(2));
  // except_id naming another user's session protects nothing of alice's and
  // does not touch bob's.
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", "b1"));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(ListIds("alice"), Ids{});
  EXPECT_TRUE(Exists(4));
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "bob", "missing"));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(Exists(4));
}

TEST_P(SessionStoreConformanceTest, DeleteForUserRejectsEmptyUser) {
  MustCreate("x", 1, "");
  MustCreate("a", 2, "alice");
  EXPECT_EQ(Code(store_->DeleteForUser(kTenant, "", "")),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(Exists(1));
  EXPECT_TRUE(Exists(2));
}

TEST_P(SessionStoreConformanceTest, PruneExpiredRemovesOnlyExpiredSessions) {
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 0);
  MustCreate("e1", 1, "alice", absl::Minutes(1));
  MustCreate("e2", 2, "", absl::Minutes(1));
  MustCreate("e3", 3, "bob", kIdle, absl::Minutes(1));
  SessionRecord l1 = MustCreate("l1", 4, "alice");
  SessionRecord l2 = MustCreate("l2", 5, "bob", absl::Minutes(2));
  // Plenty of live sessions next to the expired ones.
  constexpr int kLive = 200;
  for (int i = 0; i < kLive; ++i) MustCreate(absl::StrCat("live", i), 100 + i);
  clock_.Advance(absl::Seconds(59));
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 0);
  clock_.Set(l1.created_at + absl::Minutes(1));  // e1, e2, e3 expire exactly
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 3);
  ASSERT_OK_AND_ASSIGN(SessionRecord r1, store_->Load(kTenant, TokenHash(4)));
  EXPECT_EQ(r1, l1);
  ASSERT_OK_AND_ASSIGN(SessionRecord r2, store_->Load(kTenant, TokenHash(5)));
  EXPECT_EQ(r2, l2);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(ListIds("alice"), Ids{"l1"});
  EXPECT_EQ(ListIds("bob"), Ids{"l2"});
  MustCreate("e1", 1, "alice");
  clock_.Set(l2.created_at + absl::Minutes(2));
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(Exists(1));
  EXPECT_TRUE(Exists(4));
  EXPECT_FALSE(Exists(5));
  for (int i = 0; i < kLive; ++i) EXPECT_TRUE(Exists(100 + i)) << i;
}

// ---------------------------------------------------------------------------
// Tenants.

namespace {

// Names IsValidTenantName rejects, each labelled.
std::vector<std::pair<std::string, std::string>> InvalidTenantNames() {
  return {
      {"empty", ""},          {"65 characters", std::string(65, 't')},
      {"space", "acme corp"}, {"colon", "acme:eu"},
      {"slash", "acme/eu"},   {"braces", "{acme}"},
      {"asterisk", "acme*"},  {"percent", "acme%"},
      {"quote", "acme'"},     {"NUL", std::string("ac\0me", 5)},
      {"newline", "acme\n"},  {"non-ASCII", "acm\xc3\xa9"},
  };
}

}  // namespace

// A session is its tenant's alone: every call of another tenant on its
// token hash, id or user finds nothing, changes nothing and removes
// nothing, exactly as for a missing session, and counts only its own.
TEST_P(SessionStoreConformanceTest, AnotherTenantsSessionIsLikeAMissingOne) {
  const SessionRecord a1 = MustCreateIn(kTenant, "a1", 1, "alice");
  const SessionRecord a2 = MustCreateIn(kTenant, "a2", 2, "carol");
  EXPECT_EQ(a1.tenant, kTenant);
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a1);
  EXPECT_EQ(loaded.tenant, kTenant);
  const SessionRecord b1 = MustCreateIn(kOther, "b1", 11, "alice");
  EXPECT_EQ(b1.tenant, kOther);
  clock_.Advance(absl::Minutes(1));

  for (int h : {1, 2}) {
    SCOPED_TRACE(h);
    const std::string hash = TokenHash(h);
    EXPECT_EQ(Code(store_->Load(kOther, hash)), StatusCode::kNotFound);
    EXPECT_EQ(Code(store_->LoadAndTouch(kOther, hash, absl::ZeroDuration())),
              StatusCode::kNotFound);
    EXPECT_EQ(Code(store_->Update(kOther, hash, MakeUpdate("stolen"))),
              StatusCode::kNotFound);
    // NOT_FOUND, not ABORTED: to tenant B there is no version to compare.
    EXPECT_EQ(Code(store_->Update(kOther, hash, MakeUpdate("stolen", 7))),
              StatusCode::kNotFound);
    SessionUpdate timeouts;
    timeouts.idle_timeout = absl::Seconds(1);
    EXPECT_EQ(Code(store_->Update(kOther, hash, timeouts)),
              StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->Cycle(kOther, hash,
                           MakeCycle(TokenHash(20), "mallory", "x"), limits_)),
        StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->Cycle(
            kOther, hash,
            MakeCycle(TokenHash(20), std::nullopt, std::nullopt, 7), limits_)),
        StatusCode::kNotFound);
    // NOT_FOUND, not ALREADY_EXISTS, onto a hash that is taken (in either
    // tenant).
    EXPECT_EQ(
        Code(store_->Cycle(kOther, hash, MakeCycle(TokenHash(3 - h)), limits_)),
        StatusCode::kNotFound);
    EXPECT_EQ(
        Code(store_->Cycle(kOther, hash, MakeCycle(TokenHash(11)), limits_)),
        StatusCode::kNotFound);
    ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteByTokenHash(kOther, hash));
    EXPECT_EQ(n, 0);
  }
  for (const char* id : {"a1", "a2"}) {
    ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kOther, id));
    EXPECT_EQ(n, 0) << id;
  }
  // carol is a user of kTenant only; alice of both.
  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kOther, "carol", 10, {}));
  EXPECT_TRUE(page.sessions.empty());
  EXPECT_FALSE(page.next.has_value());
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteForUser(kOther, "carol", ""));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(ListIdsIn(kOther, "alice"), Ids{"b1"});
  EXPECT_EQ(Live(kOther), 1);

  // Nothing of kTenant changed: not a touch, a write, a cycle or a delete.
  EXPECT_FALSE(Exists(20));
  EXPECT_FALSE(ExistsIn(kOther, 20));
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a1);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kTenant, TokenHash(2)));
  EXPECT_EQ(loaded, a2);
  EXPECT_EQ(ListIds("alice"), Ids{"a1"});
  EXPECT_EQ(ListIds("carol"), Ids{"a2"});
  EXPECT_EQ(Live(kTenant), 2);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kOther, TokenHash(11)));
  EXPECT_EQ(loaded, b1);
  // And kTenant's calls on kOther's session are as blind.
  EXPECT_EQ(Code(store_->Load(kTenant, TokenHash(11))), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kTenant, "b1"));
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(ExistsIn(kOther, 11));
}

// User ids are per tenant: alice of one tenant is not alice of another.
TEST_P(SessionStoreConformanceTest, UserIdsArePerTenant) {
  MustCreateIn(kTenant, "a1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreateIn(kTenant, "a2", 2, "alice");
  MustCreateIn(kOther, "b1", 11, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreateIn(kOther, "b2", 12, "alice");
  MustCreateIn(kOther, "b3", 13, "alice");
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), (Ids{"a2", "a1"}));
  EXPECT_EQ(ListIdsIn(kOther, "alice"), (Ids{"b3", "b2", "b1"}));

  // Pages of one tenant's listing hold only its sessions.
  ASSERT_OK_AND_ASSIGN(SessionPage page,
                       store_->ListForUser(kOther, "alice", 2, {}));
  ASSERT_EQ(page.sessions.size(), 2u);
  ASSERT_TRUE(page.next.has_value());
  for (const SessionRecord& r : page.sessions) EXPECT_EQ(r.tenant, kOther);
  ASSERT_OK_AND_ASSIGN(page,
                       store_->ListForUser(kOther, "alice", 2, page.next));
  ASSERT_EQ(page.sessions.size(), 1u);
  EXPECT_EQ(page.sessions[0].id, "b1");
  EXPECT_FALSE(page.next.has_value());

  // DeleteForUser removes the user's sessions in its tenant only; an
  // except_id of another tenant's session protects nothing.
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteForUser(kOther, "alice", "a1"));
  EXPECT_EQ(n, 3);
  EXPECT_EQ(ListIdsIn(kOther, "alice"), Ids{});
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), (Ids{"a2", "a1"}));
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", "a1"));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), Ids{"a1"});
}

// The per-user cap counts the user's sessions of the tenant written to.
TEST_P(SessionStoreConformanceTest, PerUserCapIsPerTenant) {
  limits_.max_sessions_per_user = 2;
  MustCreateIn(kTenant, "a1", 1, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreateIn(kOther, "b1", 11, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreateIn(kTenant, "a2", 2, "alice");
  clock_.Advance(absl::Seconds(1));
  MustCreateIn(kOther, "b2", 12, "alice");
  clock_.Advance(absl::Seconds(1));
  // Four sessions of "alice", but two per tenant: nothing evicted.
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), (Ids{"a2", "a1"}));
  EXPECT_EQ(ListIdsIn(kOther, "alice"), (Ids{"b2", "b1"}));

  // A third in kTenant evicts kTenant's least recently active, although
  // kOther's b1 is less recently active still.
  MustCreateIn(kTenant, "a3", 3, "alice");
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), (Ids{"a3", "a2"}));
  EXPECT_EQ(ListIdsIn(kOther, "alice"), (Ids{"b2", "b1"}));
  clock_.Advance(absl::Seconds(1));

  // A login by Cycle in kOther evicts kOther's only.
  MustCreateIn(kOther, "b3", 13, "");
  clock_.Advance(absl::Seconds(1));
  limits_.max_sessions_per_user = 1;
  ASSERT_OK(store_
                ->Cycle(kOther, TokenHash(13),
                        MakeCycle(TokenHash(14), "alice"), limits_)
                .status());
  EXPECT_EQ(ListIdsIn(kOther, "alice"), Ids{"b3"});
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), (Ids{"a3", "a2"}));
  EXPECT_EQ(Live(kTenant), 2);
  EXPECT_EQ(Live(kOther), 1);
}

// Ids and token hashes are unique across tenants: Create and Cycle onto
// one that a live session of another tenant holds are ALREADY_EXISTS and
// write nothing.
TEST_P(SessionStoreConformanceTest, IdsAndTokenHashesAreUniqueAcrossTenants) {
  const SessionRecord a = MustCreateIn(kTenant, "shared-id", 1, "alice");
  const SessionRecord b = MustCreateIn(kOther, "b", 11, "bob");
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Code(store_->Create(
                InTenant(kOther, NewRecord("shared-id", 12, "bob")), limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Code(store_->Create(
                InTenant(kOther, NewRecord("other-id", 1, "bob")), limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Code(store_->Cycle(kOther, TokenHash(11), MakeCycle(TokenHash(1)),
                               limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(
      Code(store_->Cycle(kOther, TokenHash(11),
                         MakeCycle(TokenHash(1), "carol", "x", 1), limits_)),
      StatusCode::kAlreadyExists);
  // ... and the other way round.
  EXPECT_EQ(Code(store_->Create(NewRecord("b", 13, "alice"), limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Code(store_->Create(NewRecord("a-new", 11, "alice"), limits_)),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Code(store_->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(11)),
                               limits_)),
            StatusCode::kAlreadyExists);

  // Nothing was written in either tenant.
  for (int h : {12, 13}) {
    EXPECT_FALSE(Exists(h)) << h;
    EXPECT_FALSE(ExistsIn(kOther, h)) << h;
  }
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
  ASSERT_OK_AND_ASSIGN(loaded, store_->Load(kOther, TokenHash(11)));
  EXPECT_EQ(loaded, b);
  EXPECT_EQ(ListIdsIn(kOther, "bob"), Ids{"b"});
  EXPECT_EQ(ListIdsIn(kOther, "carol"), Ids{});
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), Ids{"shared-id"});
  EXPECT_EQ(Live(kTenant), 1);
  EXPECT_EQ(Live(kOther), 1);
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kOther, "shared-id"));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteById(kOther, "other-id"));
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(Exists(1));
}

// Expired is missing across tenants too: a session of another tenant may
// take the id or token hash of an expired one, which stays gone.
TEST_P(SessionStoreConformanceTest,
       AnotherTenantMayReuseIdsAndHashesOfExpired) {
  MustCreateIn(kTenant, "e1", 1, "alice", absl::Minutes(1));
  MustCreateIn(kTenant, "e2", 2, "alice", absl::Minutes(1));
  MustCreateIn(kTenant, "e3", 3, "alice", absl::Minutes(1));
  MustCreateIn(kOther, "b", 11, "alice");
  clock_.Advance(absl::Minutes(1));

  ASSERT_OK_AND_ASSIGN(
      SessionRecord by_id,
      store_->Create(InTenant(kOther, NewRecord("e1", 21, "alice")), limits_));
  EXPECT_EQ(by_id.tenant, kOther);
  EXPECT_EQ(by_id.version, 1);
  ASSERT_OK_AND_ASSIGN(
      SessionRecord by_hash,
      store_->Create(InTenant(kOther, NewRecord("new", 2, "alice")), limits_));
  EXPECT_EQ(by_hash.token_hash, TokenHash(2));
  ASSERT_OK_AND_ASSIGN(
      SessionRecord cycled,
      store_->Cycle(kOther, TokenHash(11), MakeCycle(TokenHash(3)), limits_));
  EXPECT_EQ(cycled.id, "b");

  // kOther has them; kTenant's expired sessions stay gone.
  for (int h : {21, 2, 3}) {
    EXPECT_TRUE(ExistsIn(kOther, h)) << h;
    EXPECT_FALSE(Exists(h)) << h;
  }
  EXPECT_FALSE(Exists(1));
  EXPECT_EQ(ListIdsIn(kTenant, "alice"), Ids{});
  EXPECT_EQ(ListIdsIn(kOther, "alice"), (Ids{"new", "e1", "b"}));
  EXPECT_EQ(Live(kTenant), 0);
  EXPECT_EQ(Live(kOther), 3);
  // kTenant's deletes by those ids and hashes remove nothing of kOther's.
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kTenant, "e1"));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteByTokenHash(kTenant, TokenHash(2)));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(ListIdsIn(kOther, "alice"), (Ids{"new", "e1", "b"}));
  // And kTenant may take them back once kOther's sessions have expired.
  clock_.Advance(kIdle);
  MustCreateIn(kTenant, "e1", 2, "alice");
  EXPECT_TRUE(Exists(2));
  EXPECT_FALSE(ExistsIn(kOther, 2));
}

TEST_P(SessionStoreConformanceTest, CountLiveCountsTheTenantsLiveSessions) {
  EXPECT_EQ(Live(kTenant), 0);
  EXPECT_EQ(Live(kOther), 0);
  MustCreateIn(kTenant, "a1", 1, "alice");
  MustCreateIn(kTenant, "a2", 2, "");
  MustCreateIn(kTenant, "short", 3, "alice", absl::Minutes(1));
  MustCreateIn(kOther, "b1", 11, "alice");
  EXPECT_EQ(Live(kTenant), 3);
  EXPECT_EQ(Live(kOther), 1);
  EXPECT_EQ(Live("nobody"), 0);
  // Expired sessions do not count, pruned or not.
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Live(kTenant), 2);
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kTenant, "a2"));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(Live(kTenant), 1);
  // Cycles and updates move no session between tenants.
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(4), "bob"),
                        limits_)
                .status());
  ASSERT_OK(store_->Update(kTenant, TokenHash(4), MakeUpdate("x")).status());
  EXPECT_EQ(Live(kTenant), 1);
  EXPECT_EQ(Live(kOther), 1);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(Live(kTenant), 1);
}

TEST_P(SessionStoreConformanceTest, PruneExpiredOfATenantRemovesOnlyItsOwn) {
  constexpr absl::string_view kThird = "third-tenant";
  MustCreateIn(kTenant, "a-e1", 1, "alice", absl::Minutes(1));
  MustCreateIn(kTenant, "a-e2", 2, "", absl::Minutes(1));
  MustCreateIn(kTenant, "a-live", 3, "alice");
  MustCreateIn(kOther, "b-e1", 11, "alice", absl::Minutes(1));
  MustCreateIn(kOther, "b-e2", 12, "alice", absl::Minutes(1));
  MustCreateIn(kOther, "b-e3", 13, "", kIdle, absl::Minutes(1));
  MustCreateIn(kOther, "b-live", 14, "alice");
  MustCreateIn(kThird, "c-e1", 21, "alice", absl::Minutes(1));
  clock_.Advance(absl::Minutes(1));

  ASSERT_OK_AND_ASSIGN(int64_t n, store_->PruneExpired(kOther));
  EXPECT_EQ(n, 3);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kOther));
  EXPECT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired("nobody"));
  EXPECT_EQ(n, 0);
  // kTenant's and kThird's expired sessions are still there to prune.
  ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(kTenant));
  EXPECT_EQ(n, 2);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneAllExpired());
  EXPECT_EQ(n, 1);
  ASSERT_OK_AND_ASSIGN(n, store_->PruneAllExpired());
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(Exists(3));
  EXPECT_TRUE(ExistsIn(kOther, 14));
  EXPECT_EQ(Live(kTenant), 1);
  EXPECT_EQ(Live(kOther), 1);
  EXPECT_EQ(Live(kThird), 0);
}

TEST_P(SessionStoreConformanceTest, PruneAllExpiredRemovesEveryTenantsExpired) {
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->PruneAllExpired());
  EXPECT_EQ(n, 0);
  const std::vector<std::string> tenants = {
      std::string(kTenant), std::string(kOther), "t2", "T2", "t2.x", "t_2"};
  int hash = 0;
  for (const std::string& tenant : tenants) {
    for (int i = 0; i < 3; ++i) {
      ++hash;
      MustCreateIn(tenant, absl::StrCat(tenant, "-e", i), hash, "alice",
                   absl::Minutes(1));
    }
    ++hash;
    MustCreateIn(tenant, absl::StrCat(tenant, "-live"), hash, "alice");
  }
  clock_.Advance(absl::Seconds(59));
  ASSERT_OK_AND_ASSIGN(n, store_->PruneAllExpired());
  EXPECT_EQ(n, 0);
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(n, store_->PruneAllExpired());
  EXPECT_EQ(n, static_cast<int64_t>(3 * tenants.size()));
  ASSERT_OK_AND_ASSIGN(n, store_->PruneAllExpired());
  EXPECT_EQ(n, 0);
  for (const std::string& tenant : tenants) {
    SCOPED_TRACE(tenant);
    EXPECT_EQ(ListIdsIn(tenant, "alice"), Ids{absl::StrCat(tenant, "-live")});
    EXPECT_EQ(Live(tenant), 1);
    ASSERT_OK_AND_ASSIGN(n, store_->PruneExpired(tenant));
    EXPECT_EQ(n, 0);
  }
}

// A tenant is its name exactly: names that differ only in case, in a
// character SQL patterns treat as a wildcard ('_'), or by a suffix, are
// different tenants. Valid names at the edges (one character, 64, every
// punctuation allowed) work like any other.
TEST_P(SessionStoreConformanceTest, TenantsAreTheirNamesExactly) {
  const std::vector<std::string> tenants = {
      "acme",
      "Acme",
      "ACME",
      "acme.eu",
      "acme-eu",
      "acme_eu",
      "acmeXeu",
      "acm",
      "a",
      "_",
      ".",
      "-",
      "0",
      "9.9_9-9",
      std::string(64, 'z'),
      std::string(63, 'z'),
  };
  for (size_t i = 0; i < tenants.size(); ++i) {
    SCOPED_TRACE(tenants[i]);
    const SessionRecord r = MustCreateIn(tenants[i], absl::StrCat("s", i),
                                         static_cast<int>(i), "alice");
    EXPECT_EQ(r.tenant, tenants[i]);
  }
  clock_.Advance(absl::Seconds(1));
  for (size_t i = 0; i < tenants.size(); ++i) {
    SCOPED_TRACE(tenants[i]);
    const std::string& tenant = tenants[i];
    EXPECT_EQ(ListIdsIn(tenant, "alice"), Ids{absl::StrCat("s", i)});
    EXPECT_EQ(Live(tenant), 1);
    for (size_t j = 0; j < tenants.size(); ++j) {
      EXPECT_EQ(ExistsIn(tenant, static_cast<int>(j)), i == j) << j;
    }
    ASSERT_OK_AND_ASSIGN(
        SessionRecord touched,
        store_->LoadAndTouch(tenant, TokenHash(static_cast<int>(i)),
                             absl::ZeroDuration()));
    EXPECT_EQ(touched.tenant, tenant);
    EXPECT_EQ(touched.last_active_at, StoreNow());
  }
  // Removing each tenant's sessions leaves the others'.
  for (size_t i = 0; i < tenants.size(); ++i) {
    SCOPED_TRACE(tenants[i]);
    ASSERT_OK_AND_ASSIGN(int64_t n,
                         store_->DeleteForUser(tenants[i], "alice", ""));
    EXPECT_EQ(n, 1);
    for (size_t j = i + 1; j < tenants.size(); ++j) {
      EXPECT_EQ(Live(tenants[j]), 1) << tenants[j];
    }
  }
}

// A tenant name IsValidTenantName rejects is INVALID_ARGUMENT in every call,
// before anything else (a token hash of the wrong size, a missing session),
// and writes nothing.
TEST_P(SessionStoreConformanceTest, InvalidTenantNamesAreInvalidArgument) {
  const SessionRecord a = MustCreate("a", 1, "alice");
  for (const auto& [what, bad] : InvalidTenantNames()) {
    SCOPED_TRACE(what);
    ASSERT_FALSE(IsValidTenantName(bad));
    EXPECT_EQ(Code(store_->Create(InTenant(bad, NewRecord("new", 2, "alice")),
                                  limits_)),
              StatusCode::kInvalidArgument);
    TenantLimits live_cap;
    live_cap.max_live_sessions = 1;
    EXPECT_EQ(Code(store_->Create(InTenant(bad, NewRecord("new", 2, "alice")),
                                  live_cap)),
              StatusCode::kInvalidArgument);
    for (const std::string& hash :
         {TokenHash(1), TokenHash(9), TokenHash(1).substr(0, 31)}) {
      SCOPED_TRACE(absl::CEscape(hash));
      EXPECT_EQ(Code(store_->Load(bad, hash)), StatusCode::kInvalidArgument);
      EXPECT_EQ(Code(store_->LoadAndTouch(bad, hash, absl::ZeroDuration())),
                StatusCode::kInvalidArgument);
      EXPECT_EQ(Code(store_->Update(bad, hash, MakeUpdate("x"))),
                StatusCode::kInvalidArgument);
      EXPECT_EQ(Code(store_->Update(bad, hash, MakeUpdate("x", 7))),
                StatusCode::kInvalidArgument);
      EXPECT_EQ(Code(store_->Cycle(bad, hash, MakeCycle(TokenHash(2), "bob"),
                                   limits_)),
                StatusCode::kInvalidArgument);
      EXPECT_EQ(Code(store_->DeleteByTokenHash(bad, hash)),
                StatusCode::kInvalidArgument);
    }
    EXPECT_EQ(Code(store_->DeleteById(bad, "a")), StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->DeleteById(bad, std::string("\xff"))),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->DeleteForUser(bad, "alice", "")),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->DeleteForUser(bad, "\xff", "")),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->ListForUser(bad, "alice", 10, {})),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->ListForUser(bad, "\xff", 10, {})),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->CountLive(bad)), StatusCode::kInvalidArgument);
    EXPECT_EQ(Code(store_->PruneExpired(bad)), StatusCode::kInvalidArgument);
  }
  // Nothing was written or removed.
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(SessionRecord loaded,
                       store_->Load(kTenant, TokenHash(1)));
  EXPECT_EQ(loaded, a);
  EXPECT_FALSE(Exists(2));
  EXPECT_EQ(ListIds("alice"), Ids{"a"});
  EXPECT_EQ(ListIds("bob"), Ids{});
  EXPECT_EQ(Live(kTenant), 1);
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->PruneAllExpired());
  EXPECT_EQ(n, 0);
}

TEST_P(SessionStoreConformanceTest,
       ConcurrentCreatesOfOneIdInManyTenantsExactlyOneWins) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(round);
    std::vector<StatusCode> codes(kThreads, StatusCode::kUnknown);
    const std::string id = absl::StrCat("same-", round);
    // Threads of two tenants race for one id, each with its own hash; then
    // for one hash, each with its own id.
    RunThreads(kThreads, [&](int i) {
      const std::string tenant =
          i % 2 == 0 ? std::string(kTenant) : absl::StrCat("tenant-", i);
      codes[i] = Code(store_->Create(
          InTenant(tenant, NewRecord(id, 1000 * round + i, "alice")), limits_));
    });
    int winners = 0;
    for (int i = 0; i < kThreads; ++i) {
      if (codes[i] == StatusCode::kOk) {
        ++winners;
      } else {
        EXPECT_EQ(codes[i], StatusCode::kAlreadyExists) << i;
      }
    }
    EXPECT_EQ(winners, 1);
    RunThreads(kThreads, [&](int i) {
      const std::string tenant =
          i % 2 == 0 ? std::string(kTenant) : absl::StrCat("tenant-", i);
      codes[i] = Code(store_->Create(
          InTenant(tenant,
                   NewRecord(absl::StrCat(id, "-", i), 100 + round, "bob")),
          limits_));
    });
    winners = 0;
    int64_t bobs = 0;
    for (int i = 0; i < kThreads; ++i) {
      const std::string tenant =
          i % 2 == 0 ? std::string(kTenant) : absl::StrCat("tenant-", i);
      if (codes[i] == StatusCode::kOk) {
        ++winners;
      } else {
        EXPECT_EQ(codes[i], StatusCode::kAlreadyExists) << i;
      }
      if (i % 2 == 1 || i == 0) {
        bobs += static_cast<int64_t>(ListIdsIn(tenant, "bob").size());
      }
    }
    EXPECT_EQ(winners, 1);
    EXPECT_EQ(bobs, round + 1);
  }
}

// ---------------------------------------------------------------------------
// The live-session cap (TenantLimits::max_live_sessions). With
// live_count_max_age zero the count Create checks is exact here: one store,
// and the clock moves only between calls.

TEST_P(SessionStoreConformanceTest, LiveCapMakesCreateResourceExhausted) {
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  ASSERT_NO_FATAL_FAILURE(ResetStore(options));
  limits_.max_live_sessions = 3;
  MustCreate("a1", 1, "alice");
  MustCreate("a2", 2, "");
  MustCreate("a3", 3, "bob");
  EXPECT_EQ(Code(store_->Create(NewRecord("a4", 4, "carol"), limits_)),
            StatusCode::kResourceExhausted);
  // Nothing was written, and nothing evicted to make room.
  EXPECT_FALSE(Exists(4));
  EXPECT_EQ(ListIds("carol"), Ids{});
  for (int h : {1, 2, 3}) EXPECT_TRUE(Exists(h)) << h;
  EXPECT_EQ(Live(kTenant), 3);
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kTenant, "a4"));
  EXPECT_EQ(n, 0);
  // The other writes are not capped: they add no session.
  ASSERT_OK(store_->Update(kTenant, TokenHash(1), MakeUpdate("x")).status());
  ASSERT_OK(store_
                ->Cycle(kTenant, TokenHash(1), MakeCycle(TokenHash(5), "dave"),
                        limits_)
                .status());
  EXPECT_EQ(Code(store_->Create(NewRecord("a4", 4, "carol"), limits_)),
            StatusCode::kResourceExhausted);
  // A larger cap, or none, lets it through: the limits are the call's.
  TenantLimits larger = limits_;
  larger.max_live_sessions = 4;
  ASSERT_OK(store_->Create(NewRecord("a4", 4, "carol"), larger).status());
  ASSERT_OK(
      store_->Create(NewRecord("a5", 6, "carol"), TenantLimits()).status());
  EXPECT_EQ(Live(kTenant), 5);
  EXPECT_EQ(Code(store_->Create(NewRecord("a6", 7), larger)),
            StatusCode::kResourceExhausted);
}

TEST_P(SessionStoreConformanceTest, LiveCapCountsOnlyLiveSessionsOfTheTenant) {
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  ASSERT_NO_FATAL_FAILURE(ResetStore(options));
  limits_.max_live_sessions = 2;
  MustCreateIn(kTenant, "a1", 1, "alice", absl::Minutes(1));
  MustCreateIn(kTenant, "a2", 2, "alice");
  // kOther has its own count: kTenant's sessions take none of its room.
  MustCreateIn(kOther, "b1", 11, "alice");
  MustCreateIn(kOther, "b2", 12, "alice");
  EXPECT_EQ(
      Code(store_->Create(InTenant(kOther, NewRecord("b3", 13)), limits_)),
      StatusCode::kResourceExhausted);
  EXPECT_EQ(Code(store_->Create(NewRecord("a3", 3), limits_)),
            StatusCode::kResourceExhausted);
  MustCreateIn("third", "c1", 21, "alice");

  // A delete makes room in its tenant only.
  ASSERT_OK_AND_ASSIGN(int64_t n, store_->DeleteById(kOther, "b2"));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(Code(store_->Create(NewRecord("a3", 3), limits_)),
            StatusCode::kResourceExhausted);
  MustCreateIn(kOther, "b3", 13, "alice");
  EXPECT_EQ(
      Code(store_->Create(InTenant(kOther, NewRecord("b4", 14)), limits_)),
      StatusCode::kResourceExhausted);

  // An expired session does not count, pruned or not.
  clock_.Advance(absl::Minutes(1));
  MustCreateIn(kTenant, "a3", 3, "alice");
  EXPECT_EQ(Code(store_->Create(NewRecord("a4", 4), limits_)),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(Live(kTenant), 2);
  EXPECT_EQ(Live(kOther), 2);
  EXPECT_EQ(Live("third"), 1);

  // Every kind of delete makes room.
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteByTokenHash(kTenant, TokenHash(2)));
  EXPECT_EQ(n, 1);
  MustCreateIn(kTenant, "a4", 4, "alice");
  ASSERT_OK_AND_ASSIGN(n, store_->DeleteForUser(kTenant, "alice", ""));
  EXPECT_EQ(n, 2);
  MustCreateIn(kTenant, "a5", 5, "");
  MustCreateIn(kTenant, "a6", 6, "");
  EXPECT_EQ(Code(store_->Create(NewRecord("a7", 7), limits_)),
            StatusCode::kResourceExhausted);
}

// Invalid arguments come before the cap.
TEST_P(SessionStoreConformanceTest, LiveCapComesAfterArgumentChecks) {
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  ASSERT_NO_FATAL_FAILURE(ResetStore(options));
  limits_.max_live_sessions = 1;
  MustCreate("a1", 1, "alice");
  EXPECT_EQ(Code(store_->Create(NewRecord("", 2), limits_)),
            StatusCode::kInvalidArgument);
  SessionRecord short_hash = NewRecord("a2", 2);
  short_hash.token_hash.resize(31);
  EXPECT_EQ(Code(store_->Create(short_hash, limits_)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->Create(NewRecord("a2", 2, "\xff"), limits_)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(store_->Create(NewRecord("a2", 2), limits_)),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(Live(kTenant), 1);
}

}  // namespace sessiond::storage

namespace sessiond::storage {
namespace {

// Keeps what a store tells its observer.
class RecordingObserver final : public OperationObserver {
 public:
  struct Seen {
    Operation operation;
    absl::StatusCode code;
    absl::Duration elapsed;
  };
  void OnOperation(Operation operation, absl::StatusCode code,
                   absl::Duration elapsed) override {
    absl::MutexLock lock(&mu_);
    seen_.push_back({operation, code, elapsed});
  }
  std::vector<Seen> TakeAll() {
    absl::MutexLock lock(&mu_);
    return std::exchange(seen_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

TEST_P(SessionStoreConformanceTest, TheObserverHearsEachBackendOperation) {
  RecordingObserver observer;
  StoreOptions options;
  options.observer = &observer;
  ASSERT_NO_FATAL_FAILURE(ResetStore(options));
  observer.TakeAll();  // whatever opening the store did

  MustCreate("a", 1, "alice");
  EXPECT_TRUE(absl::IsNotFound(store_->Load(kTenant, TokenHash(2)).status()));
  // Arguments the front refuses never reach the backend.
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->ListForUser(kTenant, "", 10, std::nullopt).status()));
  ASSERT_OK(store_->Ping());

  const std::vector<RecordingObserver::Seen> seen = observer.TakeAll();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].operation, Operation::kCreate);
  EXPECT_EQ(seen[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(seen[1].operation, Operation::kLoad);
  EXPECT_EQ(seen[1].code, absl::StatusCode::kNotFound);
  EXPECT_EQ(seen[2].operation, Operation::kPing);
  for (const RecordingObserver::Seen& s : seen) {
    EXPECT_GE(s.elapsed, absl::ZeroDuration());
    EXPECT_LT(s.elapsed, absl::Seconds(30));
  }
  EXPECT_EQ(OperationName(Operation::kLoadAndTouch), "load_and_touch");
}

TEST_P(SessionStoreConformanceTest, PoolStatsAddUpBetweenCalls) {
  MustCreate("a", 1);
  const PoolStats pool = store_->pool_stats();
  EXPECT_EQ(pool.in_use, 0) << "no call is running";
  EXPECT_GE(pool.open, 0);
  EXPECT_LE(pool.open, pool.max_open);
  if (store_->backend_name() != "memory") {
    EXPECT_GE(pool.open, 1) << "the create needed a connection";
  }
}

}  // namespace sessiond::storage
