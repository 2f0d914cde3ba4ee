#include "storage/memory/memory_store.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "tests/storage/conformance.h"

namespace sessiond::storage {

INSTANTIATE_TEST_SUITE_P(
    Memory, SessionStoreConformanceTest,
    testing::Values(StoreFactory{
        "Memory",
        [](const Clock* clock, const StoreOptions& options)
            -> absl::StatusOr<std::unique_ptr<SessionStore>> {
          return OpenMemoryStore(clock, options);
        }}),
    StoreFactoryName());

namespace {

using ::absl::StatusCode;

std::string Hash(int n) {
  std::string h(32, '\x5a');
  h[0] = static_cast<char>(n & 0xff);
  h[1] = static_cast<char>((n >> 8) & 0xff);
  h[2] = '\0';
  return h;
}

constexpr absl::string_view kT = kDefaultTenant;

SessionRecord Record(const std::string& id, int hash, const std::string& user,
                     const std::string& payload,
                     absl::Duration idle = absl::Minutes(30),
                     absl::string_view tenant = kT) {
  SessionRecord r;
  r.tenant = std::string(tenant);
  r.id = id;
  r.token_hash = Hash(hash);
  r.user_id = user;
  r.sealed_payload = payload;
  r.idle_timeout = idle;
  r.absolute_lifetime = absl::Hours(24);
  return r;
}

TEST(MemoryStoreTest, BackendNameIsMemory) {
  ManualClock clock;
  EXPECT_EQ((*OpenMemoryStore(&clock, {}))->backend_name(), "memory");
}

TEST(MemoryStoreTest, CreatesPastMaxBytesAreResourceExhausted) {
  ManualClock clock;
  std::unique_ptr<SessionStore> store =
      *OpenMemoryStore(&clock, {}, MemoryOptions{8192});
  const std::string payload(1000, 'p');
  int created = 0;
  absl::Status refused;
  for (int i = 1; i <= 100 && refused.ok(); ++i) {
    refused = store->Create(Record(absl::StrCat("s", i), i, "u", payload), {})
                  .status();
    if (refused.ok()) ++created;
  }
  // About 8192 / (1000 + overhead) sessions fit, and no more.
  EXPECT_GE(created, 5);
  EXPECT_LE(created, 8);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("--memory_max_bytes"),
            absl::string_view::npos);
  EXPECT_EQ(store->Load(kT, Hash(created + 1)).status().code(),
            StatusCode::kNotFound);  // nothing of it was stored
  // A deleted session makes room again.
  ASSERT_TRUE(store->DeleteByTokenHash(kT, Hash(1)).ok());
  EXPECT_TRUE(store->Create(Record("again", 500, "u", payload), {}).ok());
  // 0: no bound.
  std::unique_ptr<SessionStore> unbounded =
      *OpenMemoryStore(&clock, {}, MemoryOptions{0});
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(
        unbounded->Create(Record(absl::StrCat("s", i), i, "u", payload), {})
            .ok());
  }
  EXPECT_EQ(OpenMemoryStore(&clock, {}, MemoryOptions{-1}).status().code(),
            StatusCode::kInvalidArgument);
}

// A save that grows a session takes room too: past the bound it is
// refused and changes nothing; one that keeps or shrinks its size is not.
TEST(MemoryStoreTest, GrowingPastMaxBytesIsResourceExhausted) {
  ManualClock clock;
  std::unique_ptr<SessionStore> store =
      *OpenMemoryStore(&clock, {}, MemoryOptions{8192});
  const std::string small(500, 's');
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(
        store->Create(Record(absl::StrCat("s", i), i, "u", small), {}).ok());
  }
  SessionUpdate grow;
  grow.sealed_payload = std::string(7000, 'g');
  absl::Status refused = store->Update(kT, Hash(1), grow).status();
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  SessionCycle cycle;
  cycle.new_token_hash = Hash(100);
  cycle.sealed_payload = grow.sealed_payload;
  refused = store->Cycle(kT, Hash(2), cycle, {}).status();
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  for (int i : {1, 2}) {
    absl::StatusOr<SessionRecord> kept = store->Load(kT, Hash(i));
    ASSERT_TRUE(kept.ok()) << kept.status();
    EXPECT_EQ(kept->sealed_payload, small);
    EXPECT_EQ(kept->version, 1);
  }
  SessionUpdate same;
  same.sealed_payload = std::string(500, 't');
  EXPECT_TRUE(store->Update(kT, Hash(1), same).ok());
  SessionUpdate shrink;
  shrink.sealed_payload = "x";
  EXPECT_TRUE(store->Update(kT, Hash(3), shrink).ok());
}

TEST(MemoryStoreTest, WorksWithTheRealClock) {
  std::unique_ptr<SessionStore> store = *OpenMemoryStore(Clock::Real(), {});
  absl::StatusOr<SessionRecord> r = store->Create(Record("a", 1, "u", "p"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->created_at, TruncateToMicros(r->created_at));
  EXPECT_LT(absl::AbsDuration(r->created_at - absl::Now()), absl::Seconds(5));
  EXPECT_TRUE(store->Load(kT, Hash(1)).ok());
}

// Payloads that grow, shrink and move (in-place rewrite and reallocation),
// and user changes on Cycle, with and without a new payload, in a tenant
// whose name is longer than the default's.
TEST(MemoryStoreTest, ContentSurvivesResizesAndUserChanges) {
  ManualClock clock;
  std::unique_ptr<SessionStore> store = *OpenMemoryStore(&clock, {});
  const std::string tenant(64, 't');
  ASSERT_TRUE(
      store->Create(Record("a", 1, "", "p", absl::Minutes(30), tenant), {})
          .ok());
  int hash = 1;
  const std::vector<size_t> sizes = {0, 1, 1000, 990, 10, 100000, 3, 256, 0};
  const std::vector<std::string> users = {"", "alice", "a-much-longer-user-id",
                                          "", "bob"};
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE(i);
    std::string payload(sizes[i], '\0');
    for (size_t k = 0; k < payload.size(); ++k) {
      payload[k] = static_cast<char>((k * 7 + i) & 0xff);
    }
    const std::string& user = users[i % users.size()];
    SessionUpdate u;
    u.sealed_payload = payload;
    absl::StatusOr<SessionRecord> r = store->Update(tenant, Hash(hash), u);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->sealed_payload, payload);
    EXPECT_EQ(r->id, "a");
    EXPECT_EQ(r->tenant, tenant);
    // A new user, keeping the payload; then the same user, a new payload.
    SessionCycle to_user;
    to_user.new_token_hash = Hash(hash + 1);
    to_user.user_id = user;
    r = store->Cycle(tenant, Hash(hash), to_user, {});
    ASSERT_TRUE(r.ok()) << r.status();
    ++hash;
    EXPECT_EQ(r->sealed_payload, payload);
    EXPECT_EQ(r->user_id, user);
    SessionCycle resealed;
    resealed.new_token_hash = Hash(hash + 1);
    resealed.sealed_payload = payload + "!";
    r = store->Cycle(tenant, Hash(hash), resealed, {});
    ASSERT_TRUE(r.ok()) << r.status();
    ++hash;
    EXPECT_EQ(r->sealed_payload, payload + "!");
    EXPECT_EQ(r->user_id, user);
    EXPECT_EQ(r->tenant, tenant);
    absl::StatusOr<SessionRecord> loaded = store->Load(tenant, Hash(hash));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(*loaded, *r);
    if (!user.empty()) {
      absl::StatusOr<SessionPage> page =
          store->ListForUser(tenant, user, 10, {});
      ASSERT_TRUE(page.ok());
      ASSERT_EQ(page->sessions.size(), 1u);
      EXPECT_EQ(page->sessions[0], *r);
      page = store->ListForUser(kT, user, 10, {});
      ASSERT_TRUE(page.ok());
      EXPECT_TRUE(page->sessions.empty());
    }
  }
}

// A user with more sessions than there are shards of a kind: calls that
// lock every shard.
TEST(MemoryStoreTest, UserWithManySessions) {
  ManualClock clock;
  std::unique_ptr<SessionStore> store = *OpenMemoryStore(&clock, {});
  constexpr int kSessions = 2000;
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(
        store->Create(Record(absl::StrCat("s", i), i, "alice", "p"), {}).ok());
    if (i % 7 == 0) clock.Advance(absl::Milliseconds(1));
  }
  int seen = 0;
  std::optional<ListCursor> cursor;
  std::optional<SessionRecord> previous;
  do {
    absl::StatusOr<SessionPage> page =
        store->ListForUser(kT, "alice", 123, cursor);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const SessionRecord& r : page->sessions) {
      if (previous.has_value()) {
        EXPECT_TRUE(ListsBefore(previous->last_active_at, previous->id,
                                r.last_active_at, r.id));
      }
      previous = r;
      ++seen;
    }
    cursor = page->next;
  } while (cursor.has_value());
  EXPECT_EQ(seen, kSessions);
  absl::StatusOr<int64_t> n = store->DeleteForUser(kT, "alice", "s5");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, kSessions - 1);
  EXPECT_TRUE(store->Load(kT, Hash(5)).ok());
  EXPECT_FALSE(store->Load(kT, Hash(6)).ok());
}

// Many threads, every kind of call, two tenants with the same user ids, few
// keys, a cap and a moving clock: no deadlock, no unexpected status, and the
// invariants hold throughout.
TEST(MemoryStoreTest, MixedOperationsStress) {
  constexpr int kThreads = 8;
  constexpr int kOpsPerThread = 20000;
  constexpr int kHashes = 96;
  constexpr int kCap = 3;
  const std::vector<std::string> users = {"", "u0", "u1", "u2", "u3"};
  const std::vector<std::string> tenants = {"a", "b"};
  ManualClock clock;
  TenantLimits limits;
  limits.max_sessions_per_user = kCap;
  std::unique_ptr<SessionStore> store = *OpenMemoryStore(&clock, {});

  std::atomic<int> unexpected{0};
  std::atomic<int> broken_invariants{0};
  auto expect = [&](const absl::Status& s,
                    std::initializer_list<StatusCode> allowed) {
    if (s.ok()) return;
    for (StatusCode c : allowed) {
      if (s.code() == c) return;
    }
    if (unexpected.fetch_add(1) < 5) ADD_FAILURE() << s;
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      auto pick = [&](int n) {
        return static_cast<int>(rng() % static_cast<unsigned>(n));
      };
      int next_id = 0;
      for (int op = 0; op < kOpsPerThread; ++op) {
        const std::string& user = users[pick(users.size())];
        const std::string& tenant = tenants[pick(tenants.size())];
        const int h = pick(kHashes);
        switch (pick(11)) {
          case 0:
          case 1: {
            SessionRecord r = Record(absl::StrCat("t", t, "-", next_id++), h,
                                     user, std::string(pick(300), 'x'),
                                     absl::Seconds(1 + pick(30)), tenant);
            expect(store->Create(r, limits).status(),
                   {StatusCode::kAlreadyExists});
            break;
          }
          case 2: {
            absl::StatusOr<SessionRecord> r = store->Load(tenant, Hash(h));
            expect(r.status(), {StatusCode::kNotFound});
            if (r.ok() && (r->token_hash != Hash(h) || r->tenant != tenant)) {
              broken_invariants++;
            }
            break;
          }
          case 3:
            expect(store->LoadAndTouch(tenant, Hash(h), absl::Seconds(pick(3)))
                       .status(),
                   {StatusCode::kNotFound});
            break;
          case 4: {
            SessionUpdate u;
            if (pick(4) != 0) u.sealed_payload = std::string(pick(600), 'y');
            if (pick(2) == 0) u.expected_version = 1 + pick(3);
            if (pick(4) == 0) u.idle_timeout = absl::Seconds(1 + pick(30));
            expect(store->Update(tenant, Hash(h), u).status(),
                   {StatusCode::kNotFound, StatusCode::kAborted});
            break;
          }
          case 5: {
            SessionCycle c;
            c.new_token_hash = Hash(pick(kHashes));
            if (pick(2) == 0) c.user_id = user;
            if (pick(3) == 0) c.sealed_payload = std::string(pick(600), 'z');
            if (pick(3) == 0) c.expected_version = 1 + pick(3);
            expect(store->Cycle(tenant, Hash(h), c, limits).status(),
                   {StatusCode::kNotFound, StatusCode::kAlreadyExists,
                    StatusCode::kAborted, StatusCode::kInvalidArgument});
            break;
          }
          case 6:
            expect(store->DeleteByTokenHash(tenant, Hash(h)).status(), {});
            break;
          case 7:
            expect(
                store
                    ->DeleteById(tenant, absl::StrCat("t", pick(kThreads), "-",
                                                      pick(next_id + 1)))
                    .status(),
                {});
            break;
          case 8:
            if (!user.empty() && pick(8) == 0) {
              expect(store
                         ->DeleteForUser(
                             tenant, user,
                             absl::StrCat("t", t, "-", pick(next_id + 1)))
                         .status(),
                     {});
            }
            break;
          case 9: {
            // Pages through the user's sessions. Each page is one atomic
            // step, so it holds at most kCap sessions; the listing as a
            // whole is in strict listing order, names each id once, and
            // a page is followed by another exactly when `next` is set.
            if (user.empty()) break;
            const int limit = 1 + pick(kCap + 2);  // also above the cap
            std::optional<ListCursor> cursor;
            std::optional<SessionRecord> previous;
            std::set<std::string> ids;
            for (int pages = 0;; ++pages) {
              if (pages == 1000) {  // more than could ever exist
                broken_invariants++;
                break;
              }
              absl::StatusOr<SessionPage> page =
                  store->ListForUser(tenant, user, limit, cursor);
              expect(page.status(), {});
              if (!page.ok()) break;
              if (page->sessions.size() > static_cast<size_t>(kCap) ||
                  page->sessions.size() > static_cast<size_t>(limit)) {
                broken_invariants++;
              }
              for (const SessionRecord& r : page->sessions) {
                if (r.user_id != user || r.tenant != tenant ||
                    !ids.insert(r.id).second) {
                  broken_invariants++;
                }
                if (previous.has_value() &&
                    !ListsBefore(previous->last_active_at, previous->id,
                                 r.last_active_at, r.id)) {
                  broken_invariants++;
                }
                previous = r;
              }
              if (!page->next.has_value()) break;
              // Only a full page can have a successor (so never one above
              // the cap), and the cursor is its last session.
              if (page->sessions.size() != static_cast<size_t>(limit) ||
                  page->next->id != page->sessions.back().id ||
                  page->next->last_active_at !=
                      page->sessions.back().last_active_at) {
                broken_invariants++;
                break;
              }
              cursor = page->next;
            }
            break;
          }
          case 10:
            if (t == 0) {
              clock.Advance(absl::Milliseconds(50 + pick(200)));
            } else if (pick(50) == 0) {
              expect((pick(2) == 0 ? store->PruneExpired(tenant)
                                   : store->PruneAllExpired())
                         .status(),
                     {});
            }
            break;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(broken_invariants.load(), 0);

  // Quiescent: indexes agree with each other, every user is within the cap
  // however the listing is paged, and each tenant sees only its own.
  for (const std::string& tenant : tenants) {
    SCOPED_TRACE(tenant);
    int live = 0;
    int live_with_user = 0;
    for (int h = 0; h < kHashes; ++h) {
      absl::StatusOr<SessionRecord> r = store->Load(tenant, Hash(h));
      if (!r.ok()) continue;
      ++live;
      if (!r->user_id.empty()) {
        ++live_with_user;
        absl::StatusOr<SessionPage> page =
            store->ListForUser(tenant, r->user_id, 100, std::nullopt);
        ASSERT_TRUE(page.ok());
        int found = 0;
        for (const SessionRecord& s : page->sessions) found += s == *r ? 1 : 0;
        EXPECT_EQ(found, 1) << r->id;
      }
    }
    int listed = 0;
    for (const std::string& user : users) {
      if (user.empty()) continue;
      SCOPED_TRACE(user);
      absl::StatusOr<SessionPage> all =
          store->ListForUser(tenant, user, 100, {});
      ASSERT_TRUE(all.ok()) << all.status();
      EXPECT_FALSE(all->next.has_value());
      EXPECT_LE(all->sessions.size(), static_cast<size_t>(kCap));
      listed += static_cast<int>(all->sessions.size());
      for (const SessionRecord& r : all->sessions) {
        absl::StatusOr<SessionRecord> loaded =
            store->Load(tenant, r.token_hash);
        ASSERT_TRUE(loaded.ok()) << r.id << ": " << loaded.status();
        EXPECT_EQ(*loaded, r);
      }
      for (int limit = 1; limit <= kCap + 1; ++limit) {
        SCOPED_TRACE(limit);
        std::vector<SessionRecord> paged;
        std::optional<ListCursor> cursor;
        int pages = 0;
        do {
          absl::StatusOr<SessionPage> page =
              store->ListForUser(tenant, user, limit, cursor);
          ASSERT_TRUE(page.ok()) << page.status();
          ASSERT_LE(++pages, kCap + 1);
          ASSERT_LE(page->sessions.size(), static_cast<size_t>(limit));
          paged.insert(paged.end(), page->sessions.begin(),
                       page->sessions.end());
          if (page->next.has_value()) {
            ASSERT_EQ(page->sessions.size(), static_cast<size_t>(limit));
          }
          cursor = page->next;
        } while (cursor.has_value());
        EXPECT_EQ(paged, all->sessions);
        const int n = static_cast<int>(all->sessions.size());
        EXPECT_EQ(pages, std::max(1, (n + limit - 1) / limit));
      }
    }
    EXPECT_EQ(listed, live_with_user);
    absl::StatusOr<int64_t> count = store->CountLive(tenant);
    ASSERT_TRUE(count.ok());
    EXPECT_EQ(*count, live);
    int64_t deleted = 0;
    for (int h = 0; h < kHashes; ++h) {
      absl::StatusOr<SessionRecord> r = store->Load(tenant, Hash(h));
      if (!r.ok()) continue;
      absl::StatusOr<int64_t> n = store->DeleteById(tenant, r->id);
      ASSERT_TRUE(n.ok());
      deleted += *n;
      EXPECT_FALSE(store->Load(tenant, Hash(h)).ok());
    }
    EXPECT_EQ(deleted, live);
    absl::StatusOr<int64_t> counted = store->CountLive(tenant);
    ASSERT_TRUE(counted.ok());
    EXPECT_EQ(*counted, 0);
    for (const std::string& user : users) {
      if (user.empty()) continue;
      absl::StatusOr<SessionPage> page =
          store->ListForUser(tenant, user, 100, {});
      ASSERT_TRUE(page.ok());
      EXPECT_TRUE(page->sessions.empty());
    }
  }
  clock.Advance(absl::Hours(25));
  ASSERT_TRUE(store->PruneAllExpired().ok());
  absl::StatusOr<int64_t> again = store->PruneAllExpired();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

}  // namespace
}  // namespace sessiond::storage
