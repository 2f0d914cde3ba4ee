// Tests of what only the Valkey backend has, against a real redis-server:
// key layout and hash slots, tenants' keys and data stored before tenants
// existed, functions, native expiry, indexes, server outages and restarts,
// authentication, databases. valkey_conformance_test.cc runs the shared
// suites on it.
//
// One server, started once, serves most tests (each store gets a flushed
// server and its own key prefix). Tests that stop, pause or reconfigure a
// server start their own.
#include "storage/valkey/valkey_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
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
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "tests/storage/valkey/v1_scripts.h"
#include "tests/storage/valkey/valkey_test_server.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_macros.h"
#include "tests/testing/subprocess.h"

namespace sessiond::storage {
namespace {

using ::absl::StatusCode;
using ::sessiond::testing::RedisReply;
using ::sessiond::testing::RedisServer;
using ::sessiond::testing::RedisServerOptions;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;

// Record number `i` of `tenant`: id "id-<i>", a distinct 32-byte token hash
// containing NUL and 0xff bytes, and a binary payload.
SessionRecord NumberedRecord(int i, const std::string& user = "",
                             absl::Duration idle = absl::Minutes(30),
                             absl::Duration absolute = absl::Hours(24),
                             absl::string_view tenant = kDefaultTenant) {
  SessionRecord r;
  r.tenant = std::string(tenant);
  r.id = absl::StrCat("id-", i);
  r.token_hash = std::string(32, '\0');
  for (int b = 0; b < 4; ++b) r.token_hash[b] = static_cast<char>(i >> (8 * b));
  r.token_hash[31] = '\xff';
  r.user_id = user;
  r.sealed_payload = absl::StrCat(std::string("sealed\0", 7), "payload-", i);
  r.idle_timeout = idle;
  r.absolute_lifetime = absolute;
  return r;
}

// The token hash of NumberedRecord(i).
std::string NumberedTokenHash(int i) { return NumberedRecord(i).token_hash; }

// An update of the payload, a compare-and-set if `expected_version` is set.
SessionUpdate MakeUpdate(const std::string& payload,
                         std::optional<int64_t> expected_version = {}) {
  SessionUpdate u;
  u.sealed_payload = payload;
  u.expected_version = expected_version;
  return u;
}

// A cycle to `new_hash`, setting the user if `user` is set.
SessionCycle MakeCycle(std::string new_hash,
                       std::optional<std::string> user = std::nullopt) {
  SessionCycle c;
  c.new_token_hash = std::move(new_hash);
  c.user_id = std::move(user);
  return c;
}

// Limits with a per-user cap.
TenantLimits PerUserCap(int cap) {
  TenantLimits limits;
  limits.max_sessions_per_user = cap;
  return limits;
}

constexpr absl::string_view kDefault = kDefaultTenant;

// ---------------------------------------------------------------------------
// The shared server.

// Serves most tests.
ServerEnvironment* const kSharedServer = static_cast<ServerEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment));

// The documented key layout (storage/valkey/README.md), for looking behind
// the store's back.
struct Layout {
  std::string prefix;
  std::string Base() const { return absl::StrCat("{", prefix, "}:"); }
  std::string Session(absl::string_view id) const {
    return absl::StrCat(Base(), "s:", id);
  }
  std::string Token(absl::string_view hash) const {
    return absl::StrCat(Base(), "t:", hash);
  }
  std::string User(absl::string_view user) const {
    return absl::StrCat(Base(), "u:", user);
  }
  std::string Expiry() const { return absl::StrCat(Base(), "x"); }
  std::string ExpiryMember(absl::string_view user, absl::string_view id) const {
    return absl::StrCat(user, std::string(1, '\0'), id);
  }
  // The indexes of a tenant other than the default one, and the set of
  // those tenants.
  std::string User(absl::string_view tenant, absl::string_view user) const {
    return absl::StrCat(Base(), "n:", tenant, ":u:", user);
  }
  std::string Expiry(absl::string_view tenant) const {
    return absl::StrCat(Base(), "n:", tenant, ":x");
  }
  std::string Tenants() const { return absl::StrCat(Base(), "n"); }
};

// Runs a command and returns its reply; a failed connection or an error
// reply fails the test.
RedisReply Cmd(const RedisServer& server, const std::vector<std::string>& args,
               int db = 0) {
  absl::StatusOr<RedisReply> r = server.Command(args, db);
  if (!r.ok()) {
    ADD_FAILURE() << absl::StrJoin(args, " ") << ": " << r.status();
    return RedisReply();
  }
  EXPECT_FALSE(r->is_error()) << absl::StrJoin(args, " ") << ": " << r->str;
  return *r;
}
int64_t Int(const RedisServer& server, const std::vector<std::string>& args,
            int db = 0) {
  RedisReply r = Cmd(server, args, db);
  EXPECT_EQ(r.type, RedisReply::Type::kInteger) << absl::StrJoin(args, " ");
  return r.integer;
}
std::vector<std::string> Strings(const RedisReply& r) {
  std::vector<std::string> out;
  for (const RedisReply& e : r.elements) out.push_back(e.str);
  return out;
}

// Writes `content` to a new file of that mode (a password file must be
// private to its owner).
std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& content, mode_t mode = 0600) {
  const std::string path = absl::StrCat(dir, "/", name);
  {
    std::ofstream out(path, std::ios::binary);
    out << content;
    EXPECT_TRUE(out.good()) << path;
  }
  EXPECT_EQ(chmod(path.c_str(), mode), 0) << path;
  return path;
}

// ---------------------------------------------------------------------------
// Fixture for tests on the shared server.

class ValkeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status status;
    server_ = kSharedServer->Get(&status);
    ASSERT_NE(server_, nullptr) << status;
    Cmd(*server_, {"FLUSHALL"});
  }

  // A store on the shared server; its prefix becomes layout_.prefix.
  std::unique_ptr<SessionStore> Open(StoreOptions store_options = {},
                                     std::optional<ValkeyOptions> o = {}) {
    ValkeyOptions options = o.value_or(OptionsFor(*server_, "test"));
    layout_.prefix = options.key_prefix;
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenValkeyStore(options, &clock_, store_options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  int64_t Pttl(const std::string& key) { return Int(*server_, {"PTTL", key}); }
  bool KeyExists(const std::string& key) {
    return Int(*server_, {"EXISTS", key}) == 1;
  }

  ManualClock clock_;
  RedisServer* server_ = nullptr;
  Layout layout_;
};

TEST_F(ValkeyStoreTest, BackendNameAndPing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->backend_name(), "valkey");
  ASSERT_OK(store->Ping());
}

// By name: sessiond looks "localhost" up itself, within the deadline, and
// hiredis connects to an address. A name with no address is UNAVAILABLE.
TEST_F(ValkeyStoreTest, ConnectsToAHostGivenByName) {
  ValkeyOptions o = OptionsFor(*server_, "test");
  ASSERT_EQ(o.host, "127.0.0.1");
  o.host = "localhost";
  auto store = Open({}, o);
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->Ping());
  o.host = "no-such-host.invalid";
  absl::StatusOr<std::unique_ptr<SessionStore>> nowhere =
      OpenValkeyStore(o, &clock_, {});
  EXPECT_EQ(nowhere.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(nowhere.status().message(),
              HasSubstr("valkey: cannot look up no-such-host.invalid"));
}

TEST_F(ValkeyStoreTest, KeysFollowTheDocumentedLayout) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2), {}).ok());
  EXPECT_EQ(Cmd(*server_, {"TYPE", layout_.Session("id-1")}).str, "hash");
  EXPECT_EQ(Cmd(*server_, {"GET", layout_.Token(NumberedTokenHash(1))}).str,
            "id-1");
  EXPECT_EQ(Cmd(*server_, {"TYPE", layout_.User("alice")}).str, "zset");
  EXPECT_EQ(Cmd(*server_, {"TYPE", layout_.Expiry()}).str, "zset");
  // id-1, id-2, their token keys, alice's index, the expiry index.
  EXPECT_EQ(Int(*server_, {"DBSIZE"}), 6);
  for (const std::string& key : Strings(Cmd(*server_, {"KEYS", "*"}))) {
    EXPECT_TRUE(absl::StartsWith(key, layout_.Base())) << key;
  }
  // The hash holds the record; the store returns exactly it.
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kDefault, NumberedTokenHash(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(Cmd(*server_, {"HGET", layout_.Session("id-1"), "th"}).str,
            NumberedTokenHash(1));
  EXPECT_EQ(Cmd(*server_, {"HGET", layout_.Session("id-1"), "p"}).str,
            loaded->sealed_payload);
  EXPECT_EQ(Cmd(*server_, {"HGET", layout_.Session("id-1"), "c"}).str,
            absl::StrCat(absl::ToUnixMicros(loaded->created_at)));
}

// A cluster node refuses a function without allow-cross-slot-keys that
// touches keys of two hash slots. Every function of the store runs on one
// here, so none of them crosses slots, and every key it leaves has the
// slot of the store's hash tag.
TEST(ValkeyClusterTest, EveryScriptStaysInOneHashSlot) {
  RedisServerOptions options;
  options.cluster = true;
  absl::StatusOr<std::unique_ptr<RedisServer>> started =
      RedisServer::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  RedisServer& server = **started;
  ASSERT_EQ(Cmd(server, {"CLUSTER", "ADDSLOTSRANGE", "0", "16383"}).str, "OK");
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!absl::StrContains(Cmd(server, {"CLUSTER", "INFO"}).str,
                            "cluster_state:ok")) {
    ASSERT_LT(absl::Now(), deadline) << "cluster never became ok";
    absl::SleepFor(absl::Milliseconds(50));
  }
  // The control: the node does check.
  absl::StatusOr<RedisReply> crossing =
      server.Command({"EVAL",
                      "#!lua\nredis.call('SET', KEYS[1], 1)\n"
                      "redis.call('SET', '{elsewhere}:k', 1)\n",
                      "1", "{sess}:k"});
  ASSERT_TRUE(crossing.ok()) << crossing.status();
  ASSERT_TRUE(crossing->is_error());
  EXPECT_THAT(crossing->str, HasSubstr("same slot"));
  Cmd(server, {"FLUSHALL"});

  ManualClock clock;
  ValkeyOptions o;
  o.host = server.host();
  o.port = server.port();
  o.key_prefix = "sess";
  absl::StatusOr<std::unique_ptr<SessionStore>> opened =
      OpenValkeyStore(o, &clock, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  SessionStore& store = **opened;

  // Every function, with users whose ids look like key syntax, including the
  // paths that remove expired holders and evict over the cap, in the
  // default tenant and in another.
  const std::vector<std::string> users = {"a:b", "{x}", "}{", "u:1"};
  int n = 0;
  for (const std::string& user : users) {
    for (int k = 0; k < 3; ++k) {
      ASSERT_TRUE(store
                      .Create(NumberedRecord(++n, user, absl::Minutes(1)),
                              PerUserCap(2))
                      .ok());
      ASSERT_TRUE(store
                      .Create(NumberedRecord(1000 + n, user, absl::Minutes(1),
                                             absl::Hours(24), "t-1"),
                              PerUserCap(2))
                      .ok());
      clock.Advance(absl::Seconds(1));
    }
  }
  ASSERT_TRUE(store.Load(kDefault, NumberedTokenHash(n)).ok());
  ASSERT_TRUE(
      store.LoadAndTouch(kDefault, NumberedTokenHash(n), absl::ZeroDuration())
          .ok());
  ASSERT_TRUE(
      store.Update(kDefault, NumberedTokenHash(n), MakeUpdate("x", 1)).ok());
  ASSERT_TRUE(store
                  .Cycle(kDefault, NumberedTokenHash(n),
                         MakeCycle(NumberedTokenHash(100), "{x}"),
                         PerUserCap(2))
                  .ok());
  ASSERT_TRUE(store
                  .Cycle("t-1", NumberedTokenHash(1000 + n),
                         MakeCycle(NumberedTokenHash(101), "{x}"),
                         PerUserCap(2))
                  .ok());
  ASSERT_TRUE(store.CountLive(kDefault).ok());
  ASSERT_TRUE(store.CountLive("t-1").ok());
  ASSERT_TRUE(store.ListForUser("t-1", "{x}", 10, {}).ok());
  ASSERT_TRUE(store.DeleteForUser("t-1", "a:b", "").ok());
  absl::StatusOr<SessionPage> page = store.ListForUser(kDefault, "{x}", 1, {});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_TRUE(page->next.has_value());
  ASSERT_TRUE(store.ListForUser(kDefault, "{x}", 1, page->next).ok());
  ASSERT_TRUE(store.DeleteByTokenHash(kDefault, NumberedTokenHash(n - 1)).ok());
  ASSERT_TRUE(store.DeleteById(kDefault, absl::StrCat("id-", n - 4)).ok());
  ASSERT_TRUE(store.DeleteForUser(kDefault, "a:b", "").ok());
  ASSERT_TRUE(store.Create(NumberedRecord(200, "}{", absl::Hours(1)), {}).ok());
  clock.Advance(absl::Minutes(2));
  // Reuses the id and token hash of expired id-6, and the token hash of
  // expired id-9.
  ASSERT_TRUE(store.Create(NumberedRecord(6, "u:1"), {}).ok());
  ASSERT_TRUE(store
                  .Cycle(kDefault, NumberedTokenHash(200),
                         MakeCycle(NumberedTokenHash(9)), {})
                  .ok());
  absl::StatusOr<int64_t> pruned = store.PruneExpired("t-1");
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_GT(*pruned, 0);
  ASSERT_TRUE(store
                  .Create(NumberedRecord(300, "u:1", absl::Minutes(1),
                                         absl::Hours(24), "t-2"),
                          {})
                  .ok());
  clock.Advance(absl::Minutes(2));
  pruned = store.PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_GT(*pruned, 0);
  ASSERT_OK(store.Ping());

  const int64_t slot = Int(server, {"CLUSTER", "KEYSLOT", "{sess}"});
  const std::vector<std::string> keys = Strings(Cmd(server, {"KEYS", "*"}));
  EXPECT_GE(keys.size(), 4u);
  for (const std::string& key : keys) {
    EXPECT_EQ(Int(server, {"CLUSTER", "KEYSLOT", key}), slot) << key;
  }
}

TEST_F(ValkeyStoreTest, UserIdsThatLookLikeKeySyntaxDoNotCollide) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> users = {"a",
                                          "a:b",
                                          "a:b:",
                                          ":a",
                                          "{a}",
                                          "{",
                                          "}",
                                          "a}:x",
                                          "u:61",
                                          "x",
                                          "\xe2\x9c\x93:\xc3\xa9"};
  for (size_t k = 0; k < users.size(); ++k) {
    ASSERT_TRUE(
        store->Create(NumberedRecord(static_cast<int>(k), users[k]), {}).ok());
  }
  for (size_t k = 0; k < users.size(); ++k) {
    SCOPED_TRACE(absl::CEscape(users[k]));
    absl::StatusOr<SessionPage> page =
        store->ListForUser(kDefault, users[k], 10, {});
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->sessions.size(), 1u);
    EXPECT_EQ(page->sessions[0].id, absl::StrCat("id-", k));
    EXPECT_EQ(page->sessions[0].user_id, users[k]);
  }
  absl::StatusOr<int64_t> n = store->DeleteForUser(kDefault, "a", "");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  for (size_t k = 1; k < users.size(); ++k) {
    EXPECT_TRUE(
        store->Load(kDefault, NumberedTokenHash(static_cast<int>(k))).ok())
        << k;
  }
  // Each remaining user has exactly one index key: the user id after "u:".
  std::vector<std::string> index_keys =
      Strings(Cmd(*server_, {"KEYS", absl::StrCat(layout_.Base(), "u:*")}));
  std::vector<std::string> expected;
  for (size_t k = 1; k < users.size(); ++k) {
    expected.push_back(layout_.User(users[k]));
  }
  EXPECT_THAT(index_keys, UnorderedElementsAreArray(expected));
}

// Stores of one build share one function library on the server; opening
// another store finds it loaded and uses it.
TEST_F(ValkeyStoreTest, StoresShareOneFunctionLibrary) {
  const ValkeyOptions options = OptionsFor(*server_, "shared");
  auto first = Open({}, options);
  ASSERT_NE(first, nullptr);
  auto second = Open({}, options);
  ASSERT_NE(second, nullptr);
  RedisReply libraries = Cmd(*server_, {"FUNCTION", "LIST"});
  ASSERT_EQ(libraries.elements.size(), 1u);
  // Each entry is a map: library_name, <name>, engine, LUA, functions, ...
  ASSERT_GE(libraries.elements[0].elements.size(), 2u);
  EXPECT_THAT(libraries.elements[0].elements[1].str, StartsWith("sessiond_"));
  ASSERT_TRUE(first->Create(NumberedRecord(1, "alice"), {}).ok());
  absl::StatusOr<SessionRecord> loaded =
      second->Load(kDefault, NumberedTokenHash(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->id, "id-1");
}

TEST_F(ValkeyStoreTest, FunctionFlushIsRecovered) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  Cmd(*server_, {"FUNCTION", "FLUSH"});
  // The library is loaded again on the first "Function not found".
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kDefault, NumberedTokenHash(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->id, "id-1");
  ASSERT_TRUE(
      store->LoadAndTouch(kDefault, NumberedTokenHash(1), absl::ZeroDuration())
          .ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "alice"), {}).ok());
  ASSERT_TRUE(
      store->Update(kDefault, NumberedTokenHash(2), MakeUpdate("x", 1)).ok());
  ASSERT_TRUE(store
                  ->Cycle(kDefault, NumberedTokenHash(2),
                          MakeCycle(NumberedTokenHash(3)), {})
                  .ok());
  ASSERT_TRUE(store->CountLive(kDefault).ok());
  ASSERT_TRUE(store->ListForUser(kDefault, "alice", 10, {}).ok());
  ASSERT_TRUE(store->DeleteByTokenHash(kDefault, NumberedTokenHash(3)).ok());
  ASSERT_TRUE(store->DeleteById(kDefault, "id-9").ok());
  ASSERT_TRUE(store->DeleteForUser(kDefault, "bob", "").ok());
  ASSERT_TRUE(store->PruneAllExpired().ok());
  Cmd(*server_, {"FUNCTION", "FLUSH"});
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kDefault, "alice", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_EQ(page->sessions[0].id, "id-1");
}

TEST_F(ValkeyStoreTest, ListAndPruneDropIndexEntriesOfExpiredSessions) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store->Create(NumberedRecord(1, "alice", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(
      store->Create(NumberedRecord(2, "alice", absl::Minutes(1)), {}).ok());
  absl::StatusOr<SessionRecord> live =
      store->Create(NumberedRecord(3, "alice"), {});
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE(
      store->Create(NumberedRecord(4, "bob", absl::Minutes(1)), {}).ok());
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("alice")}), 3);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 4);
  clock_.Advance(absl::Minutes(2));

  // Listing drops the index entries of alice's expired sessions, and the
  // sessions with them.
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kDefault, "alice", 10, {});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_EQ(page->sessions[0].id, "id-3");
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("alice")}), 1);
  EXPECT_FALSE(KeyExists(layout_.Session("id-1")));
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 2);

  // Prune removes (and counts) bob's, which no call had met.
  EXPECT_TRUE(KeyExists(layout_.Session("id-4")));
  absl::StatusOr<int64_t> pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 1);
  for (int i : {1, 2, 4}) {
    EXPECT_FALSE(KeyExists(layout_.Session(absl::StrCat("id-", i)))) << i;
    EXPECT_FALSE(KeyExists(layout_.Token(NumberedTokenHash(i)))) << i;
  }
  // bob's index went with his last session.
  EXPECT_FALSE(KeyExists(layout_.User("bob")));
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 1);
  EXPECT_EQ(Cmd(*server_, {"ZSCORE", layout_.Expiry(),
                           layout_.ExpiryMember("alice", "id-3")})
                .str,
            absl::StrCat(absl::ToUnixMicros(live->ExpiresAt())));
  absl::StatusOr<int64_t> again = store->PruneAllExpired();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);

  ASSERT_EQ(*store->DeleteById(kDefault, "id-3"), 1);
  EXPECT_EQ(Int(*server_, {"DBSIZE"}), 0);
}

TEST_F(ValkeyStoreTest, CapEvictionAndDeleteForUserDropStaleIndexEntries) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const TenantLimits cap = PerUserCap(5);
  ASSERT_TRUE(
      store->Create(NumberedRecord(1, "carol", absl::Minutes(1)), cap).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "carol"), cap).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "dave"), cap).ok());
  clock_.Advance(absl::Minutes(2));
  ASSERT_TRUE(store->Create(NumberedRecord(4, "carol"), cap).ok());
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("carol")}), 2);
  // A session whose keys vanished (as native expiry would do it).
  Cmd(*server_,
      {"DEL", layout_.Session("id-3"), layout_.Token(NumberedTokenHash(3))});
  absl::StatusOr<int64_t> n = store->DeleteForUser(kDefault, "dave", "");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  EXPECT_FALSE(KeyExists(layout_.User("dave")));
}

// Sessions whose keys the server expired natively: reads drop their index
// entries, and prune clears what is left without counting them.
TEST_F(ValkeyStoreTest, IndexEntriesOfVanishedSessionsAreDropped) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store->Create(NumberedRecord(1, "carol", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(
      store->Create(NumberedRecord(2, "dave", absl::Minutes(1)), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(3, "dave"), {}).ok());
  for (int i : {1, 2}) {
    Cmd(*server_, {"DEL", layout_.Session(absl::StrCat("id-", i)),
                   layout_.Token(NumberedTokenHash(i))});
  }
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kDefault, "carol", 10, {});
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->sessions.empty());
  EXPECT_FALSE(KeyExists(layout_.User("carol")));
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("dave")}), 2);

  clock_.Advance(absl::Minutes(2));
  absl::StatusOr<int64_t> pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 0);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("dave")}), 1);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 1);
  EXPECT_TRUE(store->Load(kDefault, NumberedTokenHash(3)).ok());
}

TEST_F(ValkeyStoreTest, NativeTtlIsABackstopConsistentWithExpiresAt) {
  // The store's clock is in 2023, the server's in the present: native expiry
  // set as an absolute time would delete everything at once.
  ASSERT_LT(clock_.Now(), absl::Now() - absl::Hours(24));
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const int64_t grace_ms = 1000;
  // Native expiry of a key: the time left plus the grace, less the real
  // time since the call (generously bounded), and never less than the time
  // left minus that.
  auto expect_ttl = [&](const std::string& key, absl::Duration left) {
    const int64_t ttl = Pttl(key);
    EXPECT_GE(ttl, absl::ToInt64Milliseconds(left) - 1000) << key;
    EXPECT_LE(ttl, absl::ToInt64Milliseconds(left) + grace_ms + 1) << key;
  };

  absl::StatusOr<SessionRecord> r = store->Create(
      NumberedRecord(1, "erin", absl::Minutes(10), absl::Minutes(25)), {});
  ASSERT_TRUE(r.ok()) << r.status();
  expect_ttl(layout_.Session("id-1"), absl::Minutes(10));
  expect_ttl(layout_.Token(NumberedTokenHash(1)), absl::Minutes(10));
  EXPECT_GE(Pttl(layout_.User("erin")), Pttl(layout_.Session("id-1")) - 1000);

  clock_.Advance(absl::Minutes(5));
  r = store->LoadAndTouch(kDefault, NumberedTokenHash(1), absl::Minutes(1));
  ASSERT_TRUE(r.ok());
  expect_ttl(layout_.Session("id-1"), r->ExpiresAt() - r->last_active_at);
  EXPECT_EQ(r->ExpiresAt() - r->last_active_at, absl::Minutes(10));

  clock_.Advance(absl::Minutes(9));
  SessionUpdate update = MakeUpdate("x");
  update.idle_timeout = absl::Minutes(20);
  r = store->Update(kDefault, NumberedTokenHash(1), update);
  ASSERT_TRUE(r.ok());
  // Now capped by the absolute lifetime: 25 - 14 minutes left.
  EXPECT_EQ(r->ExpiresAt(), r->created_at + absl::Minutes(25));
  expect_ttl(layout_.Session("id-1"), absl::Minutes(11));
  expect_ttl(layout_.Token(NumberedTokenHash(1)), absl::Minutes(11));
  EXPECT_EQ(Cmd(*server_, {"ZSCORE", layout_.Expiry(),
                           layout_.ExpiryMember("erin", "id-1")})
                .str,
            absl::StrCat(absl::ToUnixMicros(r->ExpiresAt())));

  clock_.Advance(absl::Minutes(1));
  r = store->Cycle(kDefault, NumberedTokenHash(1),
                   MakeCycle(NumberedTokenHash(2)), {});
  ASSERT_TRUE(r.ok());
  expect_ttl(layout_.Token(NumberedTokenHash(2)), absl::Minutes(10));
  EXPECT_FALSE(KeyExists(layout_.Token(NumberedTokenHash(1))));

  // The user index outlives its longest session.
  ASSERT_TRUE(
      store
          ->Create(NumberedRecord(3, "erin", absl::Hours(2), absl::Hours(3)),
                   {})
          .ok());
  expect_ttl(layout_.User("erin"), absl::Hours(2));
  ASSERT_TRUE(
      store
          ->Create(NumberedRecord(4, "erin", absl::Minutes(1), absl::Hours(3)),
                   {})
          .ok());
  expect_ttl(layout_.User("erin"), absl::Hours(2));

  // Sessions that never end get no native expiry at all.
  ASSERT_TRUE(store
                  ->Create(NumberedRecord(5, "frank", absl::InfiniteDuration(),
                                          absl::InfiniteDuration()),
                           {})
                  .ok());
  EXPECT_EQ(Pttl(layout_.Session("id-5")), -1);
  EXPECT_EQ(Pttl(layout_.Token(NumberedTokenHash(5))), -1);
  EXPECT_EQ(Pttl(layout_.User("frank")), -1);
  absl::StatusOr<SessionRecord> forever =
      store->Load(kDefault, NumberedTokenHash(5));
  ASSERT_TRUE(forever.ok());
  EXPECT_EQ(forever->idle_timeout, absl::InfiniteDuration());
  EXPECT_EQ(forever->absolute_lifetime, absl::InfiniteDuration());
}

// The functions decide expiry from the store's clock; the server's own expiry
// only removes the keys later (in real time).
TEST_F(ValkeyStoreTest, NativeExpiryRemovesKeysOnlyAfterTheSessionEnded) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store->Create(NumberedRecord(1, "gina", absl::Milliseconds(100)), {})
          .ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "gina"), {}).ok());
  clock_.Advance(absl::Milliseconds(100));
  // Expired for the store; the server has not expired the keys yet.
  EXPECT_TRUE(KeyExists(layout_.Session("id-1")));
  EXPECT_TRUE(KeyExists(layout_.Token(NumberedTokenHash(1))));
  // 100 ms of the session, a second of grace, and some slack.
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_FALSE(KeyExists(layout_.Session("id-1")));
  EXPECT_FALSE(KeyExists(layout_.Token(NumberedTokenHash(1))));
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(kDefault, NumberedTokenHash(1)).status()));
  EXPECT_TRUE(KeyExists(layout_.Session("id-2")));
  absl::StatusOr<int64_t> pruned = store->PruneAllExpired();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 0);  // the server removed it, not prune
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 1);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("gina")}), 1);
}

TEST_F(ValkeyStoreTest, DatabaseNumberIsHonored) {
  ValkeyOptions options = OptionsFor(*server_, "db");
  options.database = 5;
  auto in_five = Open({}, options);
  ASSERT_NE(in_five, nullptr);
  ASSERT_TRUE(in_five->Create(NumberedRecord(1, "alice"), {}).ok());
  EXPECT_EQ(Int(*server_, {"EXISTS", layout_.Session("id-1")}, 5), 1);
  EXPECT_EQ(Int(*server_, {"DBSIZE"}, 0), 0);
  options.database = 0;
  auto in_zero = Open({}, options);
  ASSERT_NE(in_zero, nullptr);
  EXPECT_TRUE(
      absl::IsNotFound(in_zero->Load(kDefault, NumberedTokenHash(1)).status()));
  EXPECT_TRUE(in_five->Load(kDefault, NumberedTokenHash(1)).ok());

  options.database = 1000;  // the server has 16
  absl::StatusOr<std::unique_ptr<SessionStore>> bad =
      OpenValkeyStore(options, &clock_, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr("SELECT 1000"));
}

// At maxmemory (noeviction) the server refuses functions that could grow the
// data; reads and removals still work.
TEST_F(ValkeyStoreTest, FullServerStillServesReadsAndDeletes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  ASSERT_TRUE(store->Create(NumberedRecord(2, "alice"), {}).ok());
  struct RestoreMaxmemory {
    RedisServer* server;
    ~RestoreMaxmemory() { Cmd(*server, {"CONFIG", "SET", "maxmemory", "0"}); }
  } restore{server_};
  Cmd(*server_, {"CONFIG", "SET", "maxmemory", "1"});
  absl::Status full = store->Create(NumberedRecord(3, "alice"), {}).status();
  EXPECT_EQ(full.code(), StatusCode::kUnavailable) << full;
  EXPECT_THAT(full.message(), HasSubstr("OOM"));
  EXPECT_TRUE(store->Load(kDefault, NumberedTokenHash(1)).ok());
  EXPECT_TRUE(store->ListForUser(kDefault, "alice", 10, {}).ok());
  absl::StatusOr<int64_t> n = store->DeleteById(kDefault, "id-1");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
  EXPECT_TRUE(store->PruneAllExpired().ok());
  ASSERT_OK(store->Ping());
}

// How many FCALL commands the server has run so far (one per function run).
int64_t FunctionRuns(const RedisServer& server) {
  const std::string info = Cmd(server, {"INFO", "commandstats"}).str;
  const std::string key = "cmdstat_fcall:calls=";
  const size_t at = info.find(key);
  if (at == std::string::npos) return 0;
  const size_t start = at + key.size();
  int64_t calls = 0;
  EXPECT_TRUE(absl::SimpleAtoi(
      info.substr(start, info.find(',', start) - start), &calls));
  return calls;
}

// DeleteForUser removes a user's sessions a bounded batch per function run,
// never all of them in one run that would hold the shared server; the count
// stays exact (live ones only, the kept one excepted).
TEST_F(ValkeyStoreTest, DeleteForUserRunsBoundedBatchesAndCountsExactly) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  int n = 0;
  for (int k = 0; k < 100; ++k) {
    ASSERT_TRUE(
        store->Create(NumberedRecord(++n, "heavy", absl::Minutes(1)), {}).ok());
  }
  const int last_expired = n;
  clock_.Advance(absl::Minutes(2));
  for (int k = 0; k < 1100; ++k) {
    ASSERT_TRUE(store->Create(NumberedRecord(++n, "heavy"), {}).ok());
  }
  ASSERT_TRUE(store->Create(NumberedRecord(++n, "other"), {}).ok());
  const int other = n;
  // Index entries of sessions that are gone (as after native expiry).
  std::vector<std::string> zadd = {"ZADD", layout_.User("heavy")};
  for (int k = 0; k < 50; ++k) {
    zadd.push_back("1");
    zadd.push_back(absl::StrCat("gone-", k));
  }
  Cmd(*server_, zadd);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("heavy")}), 1250);

  const std::string keep = absl::StrCat("id-", last_expired + 500);
  const int64_t calls_before = FunctionRuns(*server_);
  absl::StatusOr<int64_t> removed =
      store->DeleteForUser(kDefault, "heavy", keep);
  const int64_t calls = FunctionRuns(*server_) - calls_before;
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 1099);  // 1100 live, one kept; expired ones not counted
  EXPECT_GT(calls, 1) << "one function run went through every session";
  EXPECT_EQ(
      Strings(Cmd(*server_, {"ZRANGE", layout_.User("heavy"), "0", "-1"})),
      std::vector<std::string>{keep});
  for (int i : {1, last_expired, last_expired + 1, last_expired + 1100}) {
    EXPECT_FALSE(KeyExists(layout_.Session(absl::StrCat("id-", i)))) << i;
    EXPECT_FALSE(KeyExists(layout_.Token(NumberedTokenHash(i)))) << i;
  }
  EXPECT_TRUE(
      store->Load(kDefault, NumberedTokenHash(last_expired + 500)).ok());
  EXPECT_TRUE(store->Load(kDefault, NumberedTokenHash(other)).ok());
  // What is left: the kept session and the other user's, with their token
  // keys, user indexes, and the expiry index.
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 2);
  EXPECT_EQ(Int(*server_, {"DBSIZE"}), 7);

  absl::StatusOr<int64_t> again = store->DeleteForUser(kDefault, "heavy", "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 1);
  EXPECT_FALSE(KeyExists(layout_.User("heavy")));
}

// Many dead entries (of expired or vanished sessions) before a user's live
// ones: ListForUser clears them over several bounded function runs, and still
// returns the right page.
TEST_F(ValkeyStoreTest, ListForUserClearsManyDeadEntriesInBoundedScripts) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(store->Create(NumberedRecord(i, "lister"), {}).ok());
    clock_.Advance(absl::Microseconds(1));
  }
  clock_.Advance(absl::Seconds(1));
  for (int i = 100; i < 150; ++i) {
    ASSERT_TRUE(
        store->Create(NumberedRecord(i, "lister", absl::Minutes(1)), {}).ok());
  }
  // More recently active than the live sessions, so listed before them.
  const std::string score = absl::StrCat(absl::ToUnixMicros(clock_.Now()));
  std::vector<std::string> zadd = {"ZADD", layout_.User("lister")};
  for (int k = 0; k < 2500; ++k) {
    zadd.push_back(score);
    zadd.push_back(absl::StrCat("gone-", k));
  }
  Cmd(*server_, zadd);
  clock_.Advance(absl::Minutes(2));  // the 50 sessions expire

  const int64_t calls_before = FunctionRuns(*server_);
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kDefault, "lister", 2, {});
  const int64_t calls = FunctionRuns(*server_) - calls_before;
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 2u);
  EXPECT_EQ(page->sessions[0].id, "id-3");
  EXPECT_EQ(page->sessions[1].id, "id-2");
  ASSERT_TRUE(page->next.has_value());
  EXPECT_GT(calls, 1) << "one function run went through every dead entry";
  // The dead entries are gone, and the expired sessions with them.
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.User("lister")}), 3);
  EXPECT_FALSE(KeyExists(layout_.Session("id-100")));

  page = store->ListForUser(kDefault, "lister", 2, page->next);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_EQ(page->sessions[0].id, "id-1");
  EXPECT_FALSE(page->next.has_value());
}

// The listing seeks its cursor by score and id: pages through a large group
// of sessions active at the same microsecond (ordered by id) cover each
// once, in order, also when a page spans more than one read of the index.
TEST_F(ValkeyStoreTest, ListForUserPagesThroughSessionsWithEqualTimes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::string> want;
  for (int i = 0; i < 300; ++i) {
    SessionRecord r = NumberedRecord(i, "ties");
    r.id = absl::StrCat("t-", 1000 + (i * 7919) % 300);  // created unordered
    ASSERT_TRUE(store->Create(r, {}).ok()) << r.id;
    want.push_back(r.id);
  }
  // Sessions before and after the group.
  clock_.Advance(absl::Microseconds(1));
  SessionRecord newer = NumberedRecord(1000, "ties");
  newer.id = "a-newer";
  ASSERT_TRUE(store->Create(newer, {}).ok());
  std::sort(want.rbegin(), want.rend());
  want.insert(want.begin(), "a-newer");
  for (int limit : {7, 130, 301, 1000}) {
    SCOPED_TRACE(limit);
    std::vector<std::string> got;
    std::optional<ListCursor> cursor;
    for (int pages = 0; pages < 100; ++pages) {
      absl::StatusOr<SessionPage> page =
          store->ListForUser(kDefault, "ties", limit, cursor);
      ASSERT_TRUE(page.ok()) << page.status();
      for (const SessionRecord& r : page->sessions) got.push_back(r.id);
      if (!page->next.has_value()) break;
      EXPECT_EQ(page->sessions.size(), static_cast<size_t>(limit));
      cursor = page->next;
    }
    EXPECT_EQ(got, want);
  }
  // A cursor whose session has gone still marks a position.
  absl::StatusOr<SessionPage> first =
      store->ListForUser(kDefault, "ties", 11, {});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->next.has_value());
  ASSERT_EQ(*store->DeleteById(kDefault, first->next->id), 1);
  absl::StatusOr<SessionPage> second =
      store->ListForUser(kDefault, "ties", 3, first->next);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->sessions.size(), 3u);
  EXPECT_EQ(second->sessions[0].id, want[11]);
  EXPECT_EQ(second->sessions[2].id, want[13]);
}

// A server short of replicas (min-replicas-to-write) refuses every function
// that may write, having written nothing: UNAVAILABLE, as the server may
// well accept the call again soon, not INTERNAL.
TEST_F(ValkeyStoreTest, RefusedWritesWithoutReplicasAreUnavailable) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Create(NumberedRecord(1, "alice"), {}).ok());
  struct RestoreReplicas {
    RedisServer* server;
    ~RestoreReplicas() {
      Cmd(*server, {"CONFIG", "SET", "min-replicas-to-write", "0"});
    }
  } restore{server_};
  Cmd(*server_, {"CONFIG", "SET", "min-replicas-to-write", "1"});
  const std::vector<std::pair<std::string, std::function<absl::Status()>>>
      calls = {
          {"Create",
           [&] { return store->Create(NumberedRecord(2), {}).status(); }},
          {"Update",
           [&] {
             return store
                 ->Update(kDefault, NumberedTokenHash(1), MakeUpdate("x"))
                 .status();
           }},
          {"DeleteById",
           [&] { return store->DeleteById(kDefault, "id-1").status(); }},
      };
  for (const auto& [what, call] : calls) {
    SCOPED_TRACE(what);
    const absl::Status status = call();
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
    EXPECT_THAT(status.message(), HasSubstr("NOREPLICAS"));
  }
  ASSERT_OK(store->Ping());
  Cmd(*server_, {"CONFIG", "SET", "min-replicas-to-write", "0"});
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kDefault, NumberedTokenHash(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->user_id, "alice");
  EXPECT_EQ(loaded->version, 1);
  EXPECT_TRUE(
      absl::IsNotFound(store->Load(kDefault, NumberedTokenHash(2)).status()));
}

TEST_F(ValkeyStoreTest, ErrorMessagesCarryNoData) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  SessionRecord r = NumberedRecord(1, "user-secret");
  r.id = "id-secret";
  ASSERT_TRUE(store->Create(r, {}).ok());
  absl::Status dup = store->Create(r, {}).status();
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists);
  absl::Status stale =
      store->Update(kDefault, r.token_hash, MakeUpdate("payload", 7)).status();
  EXPECT_EQ(stale.code(), StatusCode::kAborted);
  absl::Status missing = store->Load(kDefault, NumberedTokenHash(2)).status();
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  for (const absl::Status& s : {dup, stale, missing}) {
    EXPECT_THAT(s.message(), Not(HasSubstr("secret"))) << s;
    EXPECT_THAT(s.message(),
                Not(HasSubstr(absl::BytesToHexString(NumberedTokenHash(1)))));
    EXPECT_THAT(s.message(), Not(HasSubstr(NumberedTokenHash(1))));
  }
  // NOT_FOUND has the front's one wording; the others name the backend.
  EXPECT_THAT(dup.message(), HasSubstr("valkey"));
  EXPECT_THAT(stale.message(), HasSubstr("valkey"));
}

TEST_F(ValkeyStoreTest, RejectsBadOptions) {
  const ValkeyOptions good = OptionsFor(*server_, "options");
  std::vector<std::pair<std::string, ValkeyOptions>> cases;
  auto add = [&](const std::string& what,
                 const std::function<void(ValkeyOptions&)>& change) {
    ValkeyOptions o = good;
    change(o);
    cases.push_back({what, o});
  };
  add("empty prefix", [](ValkeyOptions& o) { o.key_prefix = ""; });
  add("prefix with {", [](ValkeyOptions& o) { o.key_prefix = "a{b"; });
  add("prefix with }", [](ValkeyOptions& o) { o.key_prefix = "a}b"; });
  add("zero pool", [](ValkeyOptions& o) { o.pool_size = 0; });
  add("negative database", [](ValkeyOptions& o) { o.database = -1; });
  add("port 0", [](ValkeyOptions& o) { o.port = 0; });
  add("empty host", [](ValkeyOptions& o) { o.host = ""; });
  add("zero timeout",
      [](ValkeyOptions& o) { o.command_timeout = absl::ZeroDuration(); });
  add("username without password", [](ValkeyOptions& o) { o.username = "u"; });
  for (const auto& [what, options] : cases) {
    SCOPED_TRACE(what);
    EXPECT_EQ(OpenValkeyStore(options, &clock_, {}).status().code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(OpenValkeyStore(good, nullptr, {}).status().code(),
            StatusCode::kInvalidArgument);
  StoreOptions negative;
  negative.live_count_max_age = -absl::Seconds(1);
  EXPECT_EQ(OpenValkeyStore(good, &clock_, negative).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RedisServerTest, MissingBinarySaysHowToInstallIt) {
  RedisServerOptions options;
  options.binary = "/nonexistent/redis-server";
  absl::StatusOr<std::unique_ptr<RedisServer>> server =
      RedisServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(server.status().message(),
              HasSubstr("tools/install_deps.sh --test"));
}

TEST(ValkeyOpenTest, UnreachableServerIsUnavailableQuickly) {
  ManualClock clock;
  ValkeyOptions o;
  o.port = testing::PickFreePort();  // nothing listens there
  o.connect_timeout = absl::Milliseconds(500);
  o.command_timeout = absl::Milliseconds(500);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenValkeyStore(o, &clock, {});
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("cannot connect"));
}

// ---------------------------------------------------------------------------
// Authentication (a server of its own, with a password).

class ValkeyAuthTest : public ::testing::Test {
 protected:
  static constexpr char kPassword[] = "correct horse battery";

  void SetUp() override {
    RedisServerOptions options;
    options.password = kPassword;
    absl::StatusOr<std::unique_ptr<RedisServer>> server =
        RedisServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    dir_ = testing::MakeTempDir("valkey_auth");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  absl::StatusOr<std::unique_ptr<SessionStore>> OpenWith(
      const std::string& password_file, const std::string& username = "") {
    ValkeyOptions o = OptionsFor(*server_, "auth");
    o.password_file = password_file;
    o.username = username;
    return OpenValkeyStore(o, &clock_, {});
  }

  ManualClock clock_;
  std::unique_ptr<RedisServer> server_;
  std::string dir_;
};

TEST_F(ValkeyAuthTest, PasswordFileWorks) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenWith(WriteFile(dir_, "pw", absl::StrCat(kPassword, "\n")));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(NumberedRecord(1, "alice"), {}).ok());
  EXPECT_TRUE((*store)->Load(kDefault, NumberedTokenHash(1)).ok());
  ASSERT_OK((*store)->Ping());
}

TEST_F(ValkeyAuthTest, WrongPasswordIsAClearErrorWithoutThePassword) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenWith(WriteFile(dir_, "pw", "not-the-password-42\n"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kPermissionDenied)
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("AUTH"));
  EXPECT_THAT(store.status().message(), HasSubstr("WRONGPASS"));
  EXPECT_THAT(store.status().message(), Not(HasSubstr("not-the-password")));
  EXPECT_THAT(store.status().message(), Not(HasSubstr(kPassword)));
}

TEST_F(ValkeyAuthTest, MissingPasswordIsAClearError) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store = OpenWith("");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kPermissionDenied)
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("NOAUTH"));
}

TEST_F(ValkeyAuthTest, AclUserWithPassword) {
  Cmd(*server_,
      {"ACL", "SETUSER", "sessiond", "on", ">user-pass", "~*", "+@all"});
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenWith(WriteFile(dir_, "user-pw", "user-pass\r\n"), "sessiond");
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(NumberedRecord(1), {}).ok());

  absl::StatusOr<std::unique_ptr<SessionStore>> wrong =
      OpenWith(WriteFile(dir_, "pw", absl::StrCat(kPassword, "\n")), "nobody");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong.status().message(), HasSubstr("\"nobody\""));
  EXPECT_THAT(wrong.status().message(), Not(HasSubstr(kPassword)));
}

// The least an ACL user needs (storage/valkey/README.md): FUNCTION LOAD, FCALL,
// PING and SELECT, the commands the functions run, and keys under its prefix
// only.
TEST_F(ValkeyAuthTest, AclUserWithOnlyTheDocumentedCommands) {
  ValkeyOptions o = OptionsFor(*server_, "acl");
  Cmd(*server_, {"ACL",
                 "SETUSER",
                 "least",
                 "on",
                 ">least-pass",
                 absl::StrCat("~{", o.key_prefix, "}:*"),
                 "+function|load",
                 "+fcall",
                 "+ping",
                 "+select",
                 "+hmget",
                 "+hset",
                 "+get",
                 "+set",
                 "+del",
                 "+exists",
                 "+pexpire",
                 "+persist",
                 "+pttl",
                 "+zadd",
                 "+zrem",
                 "+zrange",
                 "+zrangebyscore",
                 "+zcount",
                 "+zcard"});
  o.password_file = WriteFile(dir_, "least-pw", "least-pass\n");
  o.username = "least";
  absl::StatusOr<std::unique_ptr<SessionStore>> opened =
      OpenValkeyStore(o, &clock_, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  SessionStore& store = **opened;
  for (absl::string_view tenant : {kDefault, absl::string_view("acme")}) {
    SCOPED_TRACE(tenant);
    const int base = tenant == kDefault ? 0 : 100;
    for (int i = 1; i <= 3; ++i) {
      ASSERT_OK(store
                    .Create(NumberedRecord(base + i, "alice", absl::Minutes(1),
                                           absl::Hours(24), tenant),
                            PerUserCap(2))
                    .status());
    }
    ASSERT_OK(store.Load(tenant, NumberedTokenHash(base + 3)).status());
    ASSERT_OK(store
                  .LoadAndTouch(tenant, NumberedTokenHash(base + 3),
                                absl::ZeroDuration())
                  .status());
    ASSERT_OK(
        store.Update(tenant, NumberedTokenHash(base + 3), MakeUpdate("x", 1))
            .status());
    ASSERT_OK(store
                  .Cycle(tenant, NumberedTokenHash(base + 3),
                         MakeCycle(NumberedTokenHash(base + 4), "bob"),
                         PerUserCap(2))
                  .status());
    ASSERT_OK(store.ListForUser(tenant, "alice", 10, {}).status());
    ASSERT_OK(store.CountLive(tenant).status());
    ASSERT_OK(
        store.DeleteByTokenHash(tenant, NumberedTokenHash(base + 4)).status());
    ASSERT_OK(store.DeleteById(tenant, absl::StrCat("id-", base + 2)).status());
    ASSERT_OK(store.DeleteForUser(tenant, "alice", "").status());
    ASSERT_OK(store
                  .Create(NumberedRecord(base + 5, "carol", absl::Minutes(1),
                                         absl::Hours(24), tenant),
                          {})
                  .status());
  }
  clock_.Advance(absl::Minutes(2));
  ASSERT_OK(store.PruneExpired("acme").status());
  ASSERT_OK(store.PruneAllExpired().status());
  ASSERT_OK(store.Ping());
}

TEST_F(ValkeyAuthTest, MissingEmptyOrOversizedPasswordFileIsRefused) {
  const std::string missing = absl::StrCat(dir_, "/no-such-file");
  absl::StatusOr<std::unique_ptr<SessionStore>> store = OpenWith(missing);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument)
      << store.status();
  EXPECT_TRUE(absl::StartsWith(store.status().message(), "valkey: "))
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(missing));
  for (const std::string& content :
       {std::string("\r\n"), std::string(4097, 'p')}) {
    store = OpenWith(WriteFile(dir_, "bad", content));
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument)
        << store.status();
    EXPECT_TRUE(absl::StartsWith(store.status().message(), "valkey: "))
        << store.status();
  }
}

// A password file that group or others may read or write is refused before
// anything is sent, whatever it holds (here the right password).
TEST_F(ValkeyAuthTest, PasswordFileOthersMayReadIsFailedPrecondition) {
  for (const mode_t mode : {0640, 0604, 0620, 0666}) {
    SCOPED_TRACE(mode);
    const std::string path =
        WriteFile(dir_, absl::StrCat("pw-", mode), kPassword, mode);
    absl::StatusOr<std::unique_ptr<SessionStore>> store = OpenWith(path);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition)
        << store.status();
    EXPECT_TRUE(absl::StartsWith(store.status().message(), "valkey: "))
        << store.status();
    EXPECT_THAT(store.status().message(), HasSubstr("chmod 600"));
    EXPECT_THAT(store.status().message(), Not(HasSubstr(kPassword)));
  }
  // The same file, once private, works.
  const std::string path = WriteFile(dir_, "pw-fixed", kPassword, 0640);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  absl::StatusOr<std::unique_ptr<SessionStore>> store = OpenWith(path);
  ASSERT_TRUE(store.ok()) << store.status();
}

// ---------------------------------------------------------------------------
// A fake server (a thread with a listening socket), for what a real one
// cannot be made to do on demand: trickle its replies, or refuse writes for
// want of disk space.

// The length of the first whole RESP command (an array of bulk strings, as
// hiredis sends them) at the start of `buf`, with its arguments in `args`;
// 0 while incomplete.
size_t ParseCommand(absl::string_view buf, std::vector<std::string>* args) {
  args->clear();
  size_t pos = 0;
  auto header = [&](char type, int64_t* n) {
    if (pos >= buf.size() || buf[pos] != type) return false;
    const size_t end = buf.find("\r\n", pos);
    if (end == absl::string_view::npos) return false;
    if (!absl::SimpleAtoi(buf.substr(pos + 1, end - pos - 1), n)) return false;
    pos = end + 2;
    return true;
  };
  int64_t count = 0;
  if (!header('*', &count)) return 0;
  for (int64_t k = 0; k < count; ++k) {
    int64_t len = 0;
    if (!header('$', &len)) return 0;
    if (buf.size() < pos + static_cast<size_t>(len) + 2) return 0;
    args->emplace_back(buf.substr(pos, static_cast<size_t>(len)));
    pos += static_cast<size_t>(len) + 2;
  }
  return pos;
}

class FakeValkeyServer {
 public:
  struct Behavior {
    // The reply to every FCALL (raw RESP).
    std::string fcall_reply;
    // If set, replies to the chosen commands go out a byte at a time, one
    // every `byte_interval`.
    absl::Duration byte_interval = absl::ZeroDuration();
    bool trickle_fcall = false;
    bool trickle_function_load = false;
  };

  explicit FakeValkeyServer(Behavior behavior)
      : behavior_(std::move(behavior)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listen_fd_, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
              0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len),
              0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  // Stops trickling, closes every connection and joins the threads.
  ~FakeValkeyServer() {
    stop_ = true;
    acceptor_.join();
    for (std::thread& t : workers_) t.join();
    close(listen_fd_);
  }

  int port() const { return port_; }
  int connections() const { return connections_.load(); }
  int fcalls() const { return fcalls_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p = {};
      p.fd = listen_fd_;
      p.events = POLLIN;
      if (poll(&p, 1, 20) != 1) continue;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      workers_.emplace_back([this, fd] {
        Serve(fd);
        close(fd);
      });
    }
  }

  void Serve(int fd) {
    std::string buf;
    char chunk[4096];
    std::vector<std::string> args;
    while (!stop_) {
      pollfd p = {};
      p.fd = fd;
      p.events = POLLIN;
      const int ready = poll(&p, 1, 20);
      if (ready < 0) return;
      if (ready == 0) continue;
      const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      for (size_t used; (used = ParseCommand(buf, &args)) > 0;) {
        buf.erase(0, used);
        std::string reply;
        bool trickle = false;
        if (!args.empty() && absl::EqualsIgnoreCase(args[0], "PING")) {
          reply = "+PONG\r\n";
        } else if (args.size() == 3 &&
                   absl::EqualsIgnoreCase(args[0], "FUNCTION")) {
          // FUNCTION LOAD replies with the name from "#!lua name=NAME\n".
          absl::string_view name = args[2];
          name = name.substr(0, name.find('\n'));
          absl::ConsumePrefix(&name, "#!lua name=");
          reply = absl::StrCat("$", name.size(), "\r\n", name, "\r\n");
          trickle = behavior_.trickle_function_load;
        } else {
          ++fcalls_;
          reply = behavior_.fcall_reply;
          trickle = behavior_.trickle_fcall;
        }
        if (!Send(fd, reply, trickle)) return;
      }
    }
  }

  bool Send(int fd, absl::string_view reply, bool trickle) {
    if (!trickle) {
      return send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) ==
             static_cast<ssize_t>(reply.size());
    }
    for (char c : reply) {
      const absl::Time next = absl::Now() + behavior_.byte_interval;
      while (absl::Now() < next) {
        if (stop_) return false;
        absl::SleepFor(std::min(next - absl::Now(), absl::Milliseconds(10)));
      }
      if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) return false;
    }
    return true;
  }

  const Behavior behavior_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> fcalls_{0};
  std::thread acceptor_;
  std::vector<std::thread> workers_;  // used by acceptor_, then joined
};

// Short timeouts: a call must be over within their sum.
ValkeyOptions FakeServerOptions(const FakeValkeyServer& server) {
  ValkeyOptions o;
  o.host = "127.0.0.1";
  o.port = server.port();
  o.key_prefix = "fake";
  o.connect_timeout = absl::Milliseconds(300);
  o.command_timeout = absl::Milliseconds(300);
  return o;
}

// The bound of a call (connect_timeout + command_timeout), and slack for a
// loaded machine.
constexpr absl::Duration kFakeServerBound = absl::Milliseconds(1500);

// A peer that answers a byte at a time, each within the per-read timeout
// (which hiredis applies to each read(2), not the whole reply): the call
// still ends at its deadline, UNAVAILABLE, and the connection is dropped.
TEST(ValkeyFakeServerTest, TricklingReplyFailsWithinTheDeadline) {
  FakeValkeyServer::Behavior behavior;
  // 40 bytes at 200 ms each: 8 s for the whole reply.
  behavior.fcall_reply = absl::StrCat("$32\r\n", std::string(32, 'x'), "\r\n");
  behavior.byte_interval = absl::Milliseconds(200);
  behavior.trickle_fcall = true;
  FakeValkeyServer server(behavior);
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenValkeyStore(FakeServerOptions(server), &clock, {});
  ASSERT_TRUE(store.ok()) << store.status();

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const absl::Time start = absl::Now();
    const absl::Status status =
        (*store)->Load(kDefault, NumberedTokenHash(1)).status();
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
    EXPECT_LT(took, kFakeServerBound);
  }
  // Each stuck connection was dropped; PING works on a new one.
  ASSERT_OK((*store)->Ping());
  EXPECT_EQ(server.fcalls(), 2);
  EXPECT_EQ(server.connections(), 3);
}

// Opening the store (FUNCTION LOAD) is bounded the same way.
TEST(ValkeyFakeServerTest, TricklingServerFailsOpenWithinTheDeadline) {
  FakeValkeyServer::Behavior behavior;
  behavior.byte_interval = absl::Milliseconds(200);
  behavior.trickle_function_load = true;
  FakeValkeyServer server(behavior);
  ManualClock clock;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenValkeyStore(FakeServerOptions(server), &clock, {});
  EXPECT_LT(absl::Now() - start, kFakeServerBound);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status();
}

// Replies that refuse a write, which then did not happen: the server cannot
// persist (MISCONF) or lacks replicas (NOREPLICAS). UNAVAILABLE, not
// INTERNAL, with the server's word in the message.
TEST(ValkeyFakeServerTest, RefusedWritesAreUnavailable) {
  for (const std::string& error :
       {std::string("MISCONF Redis is configured to save RDB snapshots, but "
                    "it's currently unable to persist to disk."),
        std::string("MISCONF Errors writing to the AOF file: No space left on "
                    "device"),
        std::string("NOREPLICAS Not enough good replicas to write.")}) {
    SCOPED_TRACE(error);
    FakeValkeyServer::Behavior behavior;
    behavior.fcall_reply = absl::StrCat("-", error, "\r\n");
    FakeValkeyServer server(behavior);
    ManualClock clock;
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenValkeyStore(FakeServerOptions(server), &clock, {});
    ASSERT_TRUE(store.ok()) << store.status();
    const absl::Status created =
        (*store)->Create(NumberedRecord(1, "alice"), {}).status();
    EXPECT_EQ(created.code(), StatusCode::kUnavailable) << created;
    EXPECT_THAT(created.message(), HasSubstr(error.substr(0, error.find(' '))));
    const absl::Status deleted =
        (*store)->DeleteForUser(kDefault, "alice", "").status();
    EXPECT_EQ(deleted.code(), StatusCode::kUnavailable) << deleted;
  }
}

// ---------------------------------------------------------------------------
// Tenants, and the data and the builds from before them.

// A store and direct access to its keys, with a second tenant at hand.
class ValkeyTenantTest : public ValkeyStoreTest {
 protected:
  static constexpr absl::string_view kAcme = "acme";

  SessionRecord In(absl::string_view tenant, SessionRecord r) {
    r.tenant = std::string(tenant);
    return r;
  }
  std::vector<std::string> Members(const std::string& key) {
    return Strings(Cmd(*server_, {"ZRANGE", key, "0", "-1"}));
  }
  std::string Field(const std::string& key, const std::string& field) {
    return Cmd(*server_, {"HGET", key, field}).str;
  }
  bool HasField(const std::string& key, const std::string& field) {
    return Int(*server_, {"HEXISTS", key, field}) == 1;
  }
};

TEST_F(ValkeyTenantTest, OtherTenantsHaveIndexesOfTheirOwn) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->Create(NumberedRecord(1, "alice"), {}).status());
  ASSERT_OK(store->Create(In(kAcme, NumberedRecord(2, "alice")), {}).status());
  ASSERT_OK(
      store->Create(In("b.c-d_e", NumberedRecord(3, "alice")), {}).status());
  // A default-tenant user whose id spells another tenant's index name.
  ASSERT_OK(store->Create(NumberedRecord(4, "n:acme:u:alice"), {}).status());

  // Hashes and token keys are shared; the tenant is a field, absent for the
  // default tenant (the shape hashes had before tenants).
  EXPECT_FALSE(HasField(layout_.Session("id-1"), "n"));
  EXPECT_EQ(Field(layout_.Session("id-2"), "n"), "acme");
  EXPECT_EQ(Field(layout_.Session("id-3"), "n"), "b.c-d_e");
  EXPECT_EQ(Cmd(*server_, {"GET", layout_.Token(NumberedTokenHash(2))}).str,
            "id-2");
  EXPECT_EQ(Members(layout_.User("alice")), std::vector<std::string>{"id-1"});
  EXPECT_EQ(Members(layout_.User(kAcme, "alice")),
            std::vector<std::string>{"id-2"});
  EXPECT_EQ(Members(layout_.User("b.c-d_e", "alice")),
            std::vector<std::string>{"id-3"});
  EXPECT_EQ(Members(layout_.User("n:acme:u:alice")),
            std::vector<std::string>{"id-4"});
  EXPECT_EQ(Members(layout_.Expiry()),
            (std::vector<std::string>{
                layout_.ExpiryMember("alice", "id-1"),
                layout_.ExpiryMember("n:acme:u:alice", "id-4")}));
  EXPECT_EQ(Members(layout_.Expiry(kAcme)),
            std::vector<std::string>{layout_.ExpiryMember("alice", "id-2")});
  EXPECT_EQ(Members(layout_.Tenants()),
            (std::vector<std::string>{"acme", "b.c-d_e"}));
  // 4 hashes, 4 token keys, 4 user indexes, 3 expiry indexes, the set.
  EXPECT_EQ(Int(*server_, {"DBSIZE"}), 16);

  // To another tenant a session is missing.
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kAcme, NumberedTokenHash(2));
  ASSERT_OK(loaded.status());
  EXPECT_EQ(loaded->tenant, "acme");
  EXPECT_EQ(store->Load(kDefault, NumberedTokenHash(2)).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store->Load(kAcme, NumberedTokenHash(1)).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store->Update(kAcme, NumberedTokenHash(1), MakeUpdate("x"))
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store
                ->Cycle(kAcme, NumberedTokenHash(1),
                        MakeCycle(NumberedTokenHash(9)), {})
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(*store->DeleteById(kAcme, "id-1"), 0);
  EXPECT_EQ(*store->DeleteByTokenHash(kAcme, NumberedTokenHash(1)), 0);
  absl::StatusOr<SessionPage> page = store->ListForUser(kAcme, "alice", 10, {});
  ASSERT_OK(page.status());
  ASSERT_EQ(page->sessions.size(), 1u);
  EXPECT_EQ(page->sessions[0].id, "id-2");
  EXPECT_EQ(*store->DeleteForUser(kDefault, "alice", ""), 1);
  EXPECT_TRUE(KeyExists(layout_.Session("id-2")));
  EXPECT_TRUE(KeyExists(layout_.Session("id-3")));

  // Ids and token hashes are unique across tenants.
  SessionRecord taken_id = In(kAcme, NumberedRecord(5));
  taken_id.id = "id-4";
  EXPECT_EQ(store->Create(taken_id, {}).status().code(),
            StatusCode::kAlreadyExists);
  SessionRecord taken_hash = NumberedRecord(6);
  taken_hash.token_hash = NumberedTokenHash(3);
  EXPECT_EQ(store->Create(taken_hash, {}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(store
                ->Cycle(kAcme, NumberedTokenHash(2),
                        MakeCycle(NumberedTokenHash(4)), {})
                .status()
                .code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(Field(layout_.Session("id-4"), "th"), NumberedTokenHash(4));
}

// An expired session of one tenant frees its id and token hash for any
// other, and leaves nothing behind in its own tenant's indexes.
TEST_F(ValkeyTenantTest, ExpiredHolderOfAnotherTenantIsRemovedWithItsIndexes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(
      store->Create(In(kAcme, NumberedRecord(1, "alice", absl::Minutes(1))), {})
          .status());
  ASSERT_OK(
      store->Create(In(kAcme, NumberedRecord(2, "bob", absl::Minutes(1))), {})
          .status());
  ASSERT_OK(store->Create(NumberedRecord(3, "carol"), {}).status());
  clock_.Advance(absl::Minutes(2));
  // id-1 again, in the default tenant.
  absl::StatusOr<SessionRecord> reused =
      store->Create(NumberedRecord(1, "alice"), {});
  ASSERT_OK(reused.status());
  EXPECT_EQ(reused->tenant, "default");
  EXPECT_FALSE(HasField(layout_.Session("id-1"), "n"));
  EXPECT_TRUE(Members(layout_.User(kAcme, "alice")).empty());
  EXPECT_EQ(Members(layout_.User("alice")), std::vector<std::string>{"id-1"});
  // id-2's token hash, taken over by a cycle in the default tenant.
  ASSERT_OK(store
                ->Cycle(kDefault, NumberedTokenHash(3),
                        MakeCycle(NumberedTokenHash(2)), {})
                .status());
  EXPECT_FALSE(KeyExists(layout_.Session("id-2")));
  EXPECT_FALSE(KeyExists(layout_.User(kAcme, "bob")));
  EXPECT_FALSE(KeyExists(layout_.Expiry(kAcme)));
  EXPECT_EQ(*store->CountLive(kAcme), 0);
  EXPECT_EQ(*store->CountLive(kDefault), 2);
  // The set still names acme until a prune finds its index empty.
  EXPECT_EQ(Members(layout_.Tenants()), std::vector<std::string>{"acme"});
  EXPECT_EQ(*store->PruneAllExpired(), 0);
  EXPECT_FALSE(KeyExists(layout_.Tenants()));
}

// CountLive is one function run reading one count of the tenant's expiry
// index, whatever the number of sessions; expired sessions drop out of it
// without a prune.
TEST_F(ValkeyTenantTest, CountLiveIsOneCountOfTheTenantsExpiryIndex) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  int n = 0;
  for (int k = 0; k < 200; ++k) {
    ASSERT_OK(
        store->Create(NumberedRecord(++n, "", absl::Minutes(1)), {}).status());
  }
  for (int k = 0; k < 30; ++k) {
    ASSERT_OK(store->Create(In(kAcme, NumberedRecord(++n, "u")), {}).status());
  }
  for (int k = 0; k < 20; ++k) {
    ASSERT_OK(
        store->Create(In(kAcme, NumberedRecord(++n, "", absl::Minutes(1))), {})
            .status());
  }
  ASSERT_OK(store->Create(NumberedRecord(++n), {}).status());
  const int64_t runs = FunctionRuns(*server_);
  EXPECT_EQ(*store->CountLive(kDefault), 201);
  EXPECT_EQ(FunctionRuns(*server_) - runs, 1);
  EXPECT_EQ(*store->CountLive(kAcme), 50);
  EXPECT_EQ(*store->CountLive("nobody"), 0);
  clock_.Advance(absl::Minutes(2));
  EXPECT_EQ(*store->CountLive(kDefault), 1);
  EXPECT_EQ(*store->CountLive(kAcme), 30);
  // A touch, an update and a cycle keep the entry at the new expiry.
  ASSERT_OK(
      store->LoadAndTouch(kAcme, NumberedTokenHash(201), absl::ZeroDuration())
          .status());
  ASSERT_OK(
      store->Update(kAcme, NumberedTokenHash(202), MakeUpdate("p")).status());
  ASSERT_OK(store
                ->Cycle(kAcme, NumberedTokenHash(203),
                        MakeCycle(NumberedTokenHash(900), "v"), {})
                .status());
  EXPECT_EQ(*store->DeleteById(kAcme, "id-204"), 1);
  EXPECT_EQ(*store->CountLive(kAcme), 29);
  clock_.Advance(absl::Minutes(29));
  // Only the three written two minutes in are left.
  EXPECT_EQ(*store->CountLive(kAcme), 3);
  EXPECT_EQ(*store->CountLive(kDefault), 0);
}

TEST_F(ValkeyTenantTest, PruneOneTenantOrAllInBoundedBatches) {
  ValkeyOptions options = OptionsFor(*server_, "prune");
  options.prune_batch_size = 4;
  auto store = Open({}, options);
  ASSERT_NE(store, nullptr);
  // Expired: 5 of the default tenant, 3 of each of 12 others (so a batch
  // meets several tenants, and one run cannot go through them all); live:
  // one of each.
  std::vector<std::string> tenants = {std::string(kDefault)};
  for (int t = 0; t < 12; ++t) tenants.push_back(absl::StrCat("t", t));
  int n = 0;
  for (const std::string& tenant : tenants) {
    const int expired = tenant == kDefault ? 5 : 3;
    for (int k = 0; k < expired; ++k) {
      ASSERT_OK(
          store
              ->Create(In(tenant, NumberedRecord(++n, absl::StrCat("u", k),
                                                 absl::Minutes(1))),
                       {})
              .status());
    }
  }
  clock_.Advance(absl::Minutes(2));
  for (const std::string& tenant : tenants) {
    ASSERT_OK(
        store->Create(In(tenant, NumberedRecord(++n, "u0")), {}).status());
  }
  // One more tenant whose only session expired and vanished (native
  // expiry): its index entry is dropped, not counted.
  ASSERT_OK(
      store->Create(In("gone", NumberedRecord(++n, "", absl::Minutes(1))), {})
          .status());
  Cmd(*server_, {"DEL", layout_.Session(absl::StrCat("id-", n)),
                 layout_.Token(NumberedTokenHash(n))});
  clock_.Advance(absl::Minutes(2));

  // One tenant: only its sessions.
  EXPECT_EQ(*store->PruneExpired("t3"), 3);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry("t3")}), 1);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry("t4")}), 4);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry()}), 6);
  EXPECT_EQ(*store->PruneExpired("t3"), 0);
  EXPECT_EQ(*store->PruneExpired(kDefault), 5);
  EXPECT_EQ(Int(*server_, {"ZCARD", layout_.Expiry("t4")}), 4);

  // All: every other tenant, in runs of at most 4 entries or tenants.
  const int64_t runs = FunctionRuns(*server_);
  EXPECT_EQ(*store->PruneAllExpired(), 11 * 3);
  EXPECT_GE(FunctionRuns(*server_) - runs, (11 * 3 + 13) / 4);
  for (const std::string& tenant : tenants) {
    SCOPED_TRACE(tenant);
    EXPECT_EQ(*store->CountLive(tenant), 1);
    EXPECT_EQ(
        Int(*server_, {"ZCARD", tenant == kDefault ? layout_.Expiry()
                                                   : layout_.Expiry(tenant)}),
        1);
  }
  EXPECT_FALSE(KeyExists(layout_.Expiry("gone")));
  // The set lost the tenant with no sessions left, and only it.
  std::vector<std::string> others(tenants.begin() + 1, tenants.end());
  std::sort(others.begin(), others.end());
  EXPECT_EQ(Members(layout_.Tenants()), others);
  EXPECT_EQ(*store->PruneAllExpired(), 0);

  // A tenant dropped from the set is back in it with its next session.
  ASSERT_OK(
      store->Create(In("gone", NumberedRecord(++n, "", absl::Minutes(1))), {})
          .status());
  clock_.Advance(absl::Minutes(2));
  EXPECT_EQ(*store->PruneAllExpired(), 1);
}

// The library of a build from before tenants (v1_scripts.h), as that build
// assembled it, under a name of its own; and calls of its functions, with
// that build's calling convention (no tenant).
class V1Functions {
 public:
  static constexpr char kLibrary[] = "sessiond_v1test";

  V1Functions(const RedisServer& server, const Layout& layout,
              const ManualClock& clock)
      : server_(server), layout_(layout), clock_(clock) {}
  // Other tests count the libraries on the shared server (FLUSHALL keeps
  // them).
  ~V1Functions() { Cmd(server_, {"FUNCTION", "DELETE", kLibrary}); }

  void Load() {
    namespace v1 = valkey_v1;
    struct F {
      const char* name;
      bool allow_oom;
      const char* body;
    };
    const F functions[] = {
        {"load", true, v1::kLoadScript},
        {"load_and_touch", false, v1::kLoadAndTouchScript},
        {"create", false, v1::kCreateScript},
        {"update", false, v1::kUpdateScript},
        {"cycle", false, v1::kCycleScript},
        {"delete_by_token_hash", true, v1::kDeleteByTokenHashScript},
        {"delete_by_id", true, v1::kDeleteByIdScript},
        {"delete_for_user", true, v1::kDeleteForUserScript},
        {"list_for_user", true, v1::kListForUserScript},
        {"prune", true, v1::kPruneScript},
    };
    std::string text =
        absl::StrCat("#!lua name=", kLibrary, "\n", v1::kPrelude);
    for (const F& f : functions) {
      absl::StrAppend(
          &text, "redis.register_function{function_name='", kLibrary, "_",
          f.name, "', flags={", f.allow_oom ? "'allow-oom'" : "",
          "}, callback=function(_, args)\nbegin(args)\n", f.body, "end}\n");
    }
    EXPECT_EQ(Cmd(server_, {"FUNCTION", "LOAD", "REPLACE", text}).str,
              kLibrary);
  }

  // FCALL of the function (ARGV: base, now, args...); an error reply fails
  // the test.
  RedisReply Call(const std::string& function,
                  const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "FCALL",
        absl::StrCat(kLibrary, "_", function),
        "1",
        layout_.Expiry(),
        layout_.Base(),
        absl::StrCat(absl::ToUnixMicros(TruncateToMicros(clock_.Now())))};
    argv.insert(argv.end(), args.begin(), args.end());
    return Cmd(server_, argv);
  }
  // The reply of the old create, update, ... or load: {id, th, u, p, c, a,
  // i, l, v}.
  RedisReply Create(int i, const std::string& user,
                    absl::Duration idle = absl::Minutes(30)) {
    const SessionRecord r = NumberedRecord(i, user, idle);
    return Call(
        "create",
        {r.id, r.token_hash, r.user_id, r.sealed_payload,
         absl::StrCat(absl::ToInt64Microseconds(r.idle_timeout)),
         absl::StrCat(absl::ToInt64Microseconds(r.absolute_lifetime)), "0"});
  }

 private:
  const RedisServer& server_;
  const Layout& layout_;
  const ManualClock& clock_;
};

// Sessions an old build stored (its own functions writing the layout
// before tenants) are the default tenant's to the new build, with every
// call; and the new build's writes in the default tenant leave the shape
// the old build reads.
TEST_F(ValkeyTenantTest, DataOfTheLayoutBeforeTenantsIsTheDefaultTenants) {
  ValkeyOptions options = OptionsFor(*server_, "upgrade");
  layout_.prefix = options.key_prefix;
  V1Functions old(*server_, layout_, clock_);
  old.Load();
  old.Create(1, "alice");
  clock_.Advance(absl::Seconds(1));
  old.Create(2, "alice", absl::Minutes(1));
  old.Create(3, "");
  old.Create(4, "bob");
  const std::vector<std::string> old_keys =
      Strings(Cmd(*server_, {"KEYS", "*"}));
  EXPECT_EQ(old_keys.size(), 11u);  // 4 hashes, 4 token keys, 2 users, x

  // The new build, beside the old one on the same server.
  auto store = Open({}, options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Cmd(*server_, {"FUNCTION", "LIST"}).elements.size(), 2u);
  absl::StatusOr<SessionRecord> loaded =
      store->Load(kDefault, NumberedTokenHash(1));
  ASSERT_OK(loaded.status());
  EXPECT_EQ(loaded->tenant, "default");
  EXPECT_EQ(loaded->id, "id-1");
  EXPECT_EQ(loaded->user_id, "alice");
  EXPECT_EQ(loaded->sealed_payload, NumberedRecord(1).sealed_payload);
  EXPECT_EQ(loaded->version, 1);
  EXPECT_EQ(store->Load(kAcme, NumberedTokenHash(1)).status().code(),
            StatusCode::kNotFound);
  absl::StatusOr<SessionPage> page =
      store->ListForUser(kDefault, "alice", 10, {});
  ASSERT_OK(page.status());
  ASSERT_EQ(page->sessions.size(), 2u);
  EXPECT_EQ(page->sessions[0].id, "id-2");
  EXPECT_EQ(page->sessions[0].tenant, "default");
  EXPECT_EQ(*store->CountLive(kDefault), 4);
  EXPECT_EQ(*store->CountLive(kAcme), 0);

  // New writes of old sessions keep the old shape, which the old build
  // reads back.
  ASSERT_OK(store->Update(kDefault, NumberedTokenHash(1), MakeUpdate("new"))
                .status());
  ASSERT_OK(store
                ->Cycle(kDefault, NumberedTokenHash(3),
                        MakeCycle(NumberedTokenHash(30), "carol"),
                        PerUserCap(1))
                .status());
  ASSERT_OK(store->Create(NumberedRecord(5, "bob"), PerUserCap(5)).status());
  for (const char* id : {"id-1", "id-3", "id-5"}) {
    EXPECT_FALSE(HasField(layout_.Session(id), "n")) << id;
  }
  RedisReply r = old.Call("load", {NumberedTokenHash(1)});
  ASSERT_EQ(r.elements.size(), 9u);
  EXPECT_EQ(r.elements[3].str, "new");
  EXPECT_EQ(r.elements[8].str, "2");
  r = old.Call("load", {NumberedTokenHash(30)});
  ASSERT_EQ(r.elements.size(), 9u);
  EXPECT_EQ(r.elements[2].str, "carol");
  r = old.Call("list_for_user", {"bob", "10", "", "", "", "100"});
  EXPECT_EQ(r.elements.size(), 2u);

  // And the other way round: old writes, new reads.
  old.Call("update", {NumberedTokenHash(5), "bob", "old", "", "", "1", "0"});
  loaded = store->Load(kDefault, NumberedTokenHash(5));
  ASSERT_OK(loaded.status());
  EXPECT_EQ(loaded->sealed_payload, "old");
  EXPECT_EQ(loaded->version, 2);
  old.Call("cycle",
           {NumberedTokenHash(4), NumberedTokenHash(40), "0", "", "0"});
  loaded = store->Load(kDefault, NumberedTokenHash(40));
  ASSERT_OK(loaded.status());
  EXPECT_EQ(loaded->id, "id-4");
  EXPECT_EQ(*store->CountLive(kDefault), 5);

  // Expiry and prune agree between the two: the old prune removes what
  // expired in the default tenant, the new one finds nothing left.
  clock_.Advance(absl::Minutes(2));  // id-2 expires
  EXPECT_EQ(*store->CountLive(kDefault), 4);
  r = old.Call("prune", {"100"});
  ASSERT_EQ(r.elements.size(), 2u);
  EXPECT_EQ(r.elements[0].integer, 1);
  EXPECT_EQ(*store->PruneAllExpired(), 0);
  EXPECT_FALSE(KeyExists(layout_.Session("id-2")));
  EXPECT_EQ(Members(layout_.User("alice")), std::vector<std::string>{"id-1"});
  EXPECT_EQ(*store->DeleteForUser(kDefault, "bob", ""), 2);
}

// What an old build's functions can reach through the default tenant's
// names (user and expiry indexes, list, prune, delete for user) never
// includes another tenant's sessions, even with the same user ids.
TEST_F(ValkeyTenantTest, OldFunctionsOnDefaultKeysLeaveOtherTenantsAlone) {
  ValkeyOptions options = OptionsFor(*server_, "upgrade");
  layout_.prefix = options.key_prefix;
  V1Functions old(*server_, layout_, clock_);
  old.Load();
  auto store = Open({}, options);
  ASSERT_NE(store, nullptr);
  old.Create(1, "alice", absl::Minutes(1));
  ASSERT_OK(
      store->Create(In(kAcme, NumberedRecord(2, "alice", absl::Minutes(1))), {})
          .status());
  ASSERT_OK(store->Create(In(kAcme, NumberedRecord(3, "alice")), {}).status());
  RedisReply r = old.Call("list_for_user", {"alice", "10", "", "", "", "100"});
  ASSERT_EQ(r.elements.size(), 1u);
  EXPECT_EQ(r.elements[0].elements[0].str, "id-1");
  clock_.Advance(absl::Minutes(2));
  r = old.Call("prune", {"100"});
  ASSERT_EQ(r.elements.size(), 2u);
  EXPECT_EQ(r.elements[0].integer, 1);  // id-1 only
  EXPECT_TRUE(KeyExists(layout_.Session("id-2")));
  r = old.Call("delete_for_user", {"alice", "", "100"});
  ASSERT_EQ(r.elements.size(), 2u);
  EXPECT_EQ(r.elements[0].integer, 0);
  EXPECT_EQ(*store->CountLive(kAcme), 1);
  EXPECT_EQ(*store->PruneAllExpired(), 1);  // acme's id-2
  ASSERT_OK(store->Load(kAcme, NumberedTokenHash(3)).status());
}

// With the default timeouts (2 s each) a call to a hung server still gives
// up in under 5 s, and works again once it resumes.
TEST(ValkeyHungServerTest, DefaultTimeoutsBoundACall) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenValkeyStore(OptionsFor(**server, "defaults"), &clock, {});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(NumberedRecord(1), {}).ok());
  ASSERT_OK((*server)->Pause());
  const absl::Time start = absl::Now();
  absl::Status status = (*store)->Load(kDefault, NumberedTokenHash(1)).status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
  ASSERT_OK((*server)->Resume());
  absl::StatusOr<SessionRecord> after =
      (*store)->Load(kDefault, NumberedTokenHash(1));
  EXPECT_TRUE(after.ok()) << after.status();
}

}  // namespace
}  // namespace sessiond::storage
