// PolicyHolder: reloads swap the policy whole or not at all, and calls that
// authenticate meanwhile never fail for a caller in every version.
#include "auth/policy_holder.h"

#include <stdio.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/authenticator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_macros.h"
#include "tests/testing/threads.h"

namespace sessiond::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Version A: "web" may Load. Version B: "web" may also Save, and there is a
// second caller. "web" is in both.
constexpr char kVersionA[] = R"(version: 1
tenants: {shop: {max_sessions_per_user: 1}}
callers:
  - {name: web, tenant: shop, uri_san: "spiffe://x/web", allow: [Load]}
)";
constexpr char kVersionB[] = R"(version: 1
tenants: {shop: {max_sessions_per_user: 2}}
callers:
  - {name: web, tenant: shop, uri_san: "spiffe://x/web", allow: [Load, Save]}
  - {name: ops, tenant: shop, common_name: ops, allow: [Prune]}
)";
constexpr char kSyntaxError[] = "version: 1\ntenants: [\n";
constexpr char kBadPermission[] = R"(version: 1
tenants: {shop: }
callers:
  - {name: web, tenant: shop, uri_san: "spiffe://x/web", allow: [Lod]}
)";

class PolicyHolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/policy.yaml");
  }

  // Replaces the file whole (write, then rename), as a ConfigMap update does.
  void Write(const std::string& text) {
    const std::string temp = path_ + ".tmp";
    std::ofstream(temp) << text;
    ASSERT_EQ(::rename(temp.c_str(), path_.c_str()), 0);
  }

  std::string path_;
};

TEST_F(PolicyHolderTest, LoadFailsOnABadFile) {
  Write(kBadPermission);
  absl::StatusOr<std::unique_ptr<PolicyHolder>> holder =
      PolicyHolder::Load(path_);
  EXPECT_EQ(holder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(holder.status().message(),
            absl::StrCat(path_,
                         ":4: caller \"web\": unknown permission "
                         "\"Lod\""));
}

TEST_F(PolicyHolderTest, ReloadSwapsOnSuccessAndKeepsTheOldPolicyOnFailure) {
  Write(kVersionA);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PolicyHolder> holder,
                       PolicyHolder::Load(path_));
  const std::shared_ptr<const Policy> a = holder->Current();
  EXPECT_EQ(a->callers().size(), 1u);
  EXPECT_EQ(holder->Current(), a);  // the same object, not a copy
  EXPECT_EQ(holder->reloads(), 0);
  EXPECT_EQ(holder->reload_failures(), 0);

  Write(kSyntaxError);
  absl::Status status = holder->Reload();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              StartsWith(absl::StrCat(path_, ":3: YAML syntax error")));
  EXPECT_EQ(holder->Current(), a);
  EXPECT_EQ(holder->reloads(), 0);
  EXPECT_EQ(holder->reload_failures(), 1);

  Write(kVersionB);
  ASSERT_OK(holder->Reload());
  const std::shared_ptr<const Policy> b = holder->Current();
  EXPECT_NE(b, a);
  EXPECT_EQ(b->callers().size(), 2u);
  EXPECT_EQ(holder->reloads(), 1);
  EXPECT_EQ(holder->reload_failures(), 1);
  // A call that took the old policy still holds all of it.
  EXPECT_EQ(a->callers()[0].name, "web");
  EXPECT_FALSE(a->callers()[0].Allows(Permission::kSave));

  ASSERT_EQ(::unlink(path_.c_str()), 0);
  status = holder->Reload();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path_));
  EXPECT_EQ(holder->Current(), b);
  EXPECT_EQ(holder->reloads(), 1);
  EXPECT_EQ(holder->reload_failures(), 2);
}

// The server's own check rejects a policy at load and at reload alike.
TEST_F(PolicyHolderTest, CheckRejectsAtLoadAndAtReload) {
  const PolicyHolder::Check at_most_one_per_user =
      [](const Policy& policy) -> absl::Status {
    const TenantSettings* shop = policy.FindTenant("shop");
    if (shop != nullptr && shop->max_sessions_per_user.value_or(0) > 1) {
      return absl::InvalidArgumentError("tenant \"shop\": too many");
    }
    return absl::OkStatus();
  };
  Write(kVersionB);
  absl::StatusOr<std::unique_ptr<PolicyHolder>> rejected =
      PolicyHolder::Load(path_, at_most_one_per_user);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rejected.status().message(),
            absl::StrCat(path_, ": tenant \"shop\": too many"));

  Write(kVersionA);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PolicyHolder> holder,
                       PolicyHolder::Load(path_, at_most_one_per_user));
  const std::shared_ptr<const Policy> a = holder->Current();
  Write(kVersionB);
  EXPECT_EQ(holder->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(holder->Current(), a);
  EXPECT_EQ(holder->reload_failures(), 1);
  EXPECT_EQ(holder->reloads(), 0);
}

TEST_F(PolicyHolderTest, FixedNeverChanges) {
  const std::shared_ptr<const Policy> all = Policy::AllowAll();
  std::unique_ptr<PolicyHolder> holder = PolicyHolder::Fixed(all);
  ASSERT_OK(holder->Reload());
  EXPECT_EQ(holder->Current(), all);
  EXPECT_EQ(holder->reloads(), 0);
  EXPECT_EQ(holder->reload_failures(), 0);
}

// Readers authenticate "web" in a loop while one thread reloads good and bad
// files in turn: no reader ever fails, every reader sees a whole version
// (A's or B's permissions with A's or B's tenant limit), and the counters
// add up.
TEST_F(PolicyHolderTest, ConcurrentReadersNeverFailDuringReloads) {
  Write(kVersionA);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PolicyHolder> holder,
                       PolicyHolder::Load(path_));
  constexpr int kReaders = 6;
  constexpr int kRounds = 100;  // each: A, syntax error, B, bad permission
  std::atomic<bool> done{false};
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> failures{0};
  std::atomic<int64_t> torn{0};
  // The version the readers saw last: 1 for A, 2 for B.
  std::atomic<int> seen{0};
  const PeerIdentity web{{"spiffe://x/web"}, {}, {}, {}};

  testing::RunThreads(kReaders + 1, [&](int i) {
    if (i > 0) {
      while (!done.load()) {
        const std::shared_ptr<const Policy> policy = holder->Current();
        absl::StatusOr<const Caller*> caller = Authenticate(*policy, web);
        calls.fetch_add(1);
        if (!caller.ok() || !Authorize(**caller, Permission::kLoad).ok()) {
          failures.fetch_add(1);
          continue;
        }
        const int version = (*caller)->Allows(Permission::kSave) ? 2 : 1;
        const TenantSettings* shop = policy->FindTenant((*caller)->tenant);
        if (shop == nullptr || shop->max_sessions_per_user != version ||
            static_cast<int>(policy->callers().size()) != version) {
          torn.fetch_add(1);
        }
        seen.store(version);
      }
      return;
    }
    // Waits until a reader has seen `version` (at most 10 s).
    auto await = [&](int version) {
      const absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (seen.load() != version && absl::Now() < deadline) {
        std::this_thread::yield();
      }
      EXPECT_EQ(seen.load(), version);
    };
    for (int round = 0; round < kRounds; ++round) {
      Write(kVersionA);
      EXPECT_TRUE(holder->Reload().ok());
      await(1);
      Write(kSyntaxError);
      EXPECT_FALSE(holder->Reload().ok());
      Write(kVersionB);
      EXPECT_TRUE(holder->Reload().ok());
      await(2);
      Write(kBadPermission);
      EXPECT_FALSE(holder->Reload().ok());
    }
    done.store(true);
  });

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(calls.load(), 2 * kRounds);
  EXPECT_EQ(holder->reloads(), 2 * kRounds);
  EXPECT_EQ(holder->reload_failures(), 2 * kRounds);
  // The last good file (B) is in force.
  EXPECT_EQ(holder->Current()->callers().size(), 2u);
}

// Reloads from several threads at once: each is counted once, and the
// policy in force is one of the files' versions.
TEST_F(PolicyHolderTest, ConcurrentReloads) {
  Write(kVersionA);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PolicyHolder> holder,
                       PolicyHolder::Load(path_));
  constexpr int kThreads = 4;
  constexpr int kReloads = 50;
  testing::RunThreads(kThreads, [&](int) {
    for (int i = 0; i < kReloads; ++i) EXPECT_TRUE(holder->Reload().ok());
  });
  EXPECT_EQ(holder->reloads(), kThreads * kReloads);
  EXPECT_EQ(holder->reload_failures(), 0);
  EXPECT_EQ(holder->Current()->callers().size(), 1u);
}

}  // namespace
}  // namespace sessiond::auth
