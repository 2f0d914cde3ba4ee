#include "storage/common/host_lookup.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sessiond::storage::internal {
namespace {

using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;

TEST(HostLookupTest, NumericAddressesNeedNoLookup) {
  std::atomic<int> calls{0};
  HostLookup lookup([&](const std::string&) {
    ++calls;
    return absl::StatusOr<std::vector<std::string>>(
        std::vector<std::string>{"10.0.0.1"});
  });
  const absl::Time past = absl::Now() - absl::Seconds(1);
  EXPECT_EQ(*lookup.Addresses("192.0.2.7", past),
            std::vector<std::string>{"192.0.2.7"});
  EXPECT_EQ(*lookup.Addresses("::1", past), std::vector<std::string>{"::1"});
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(*lookup.Addresses("db.internal", absl::Now() + absl::Seconds(5)),
            std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(calls.load(), 1);
}

// The deadline holds while the resolver hangs; once kMaxStuckLookups are
// stuck, lookups fail at once; when they end, lookups work again.
TEST(HostLookupTest, AHangingResolverIsBoundedByTheDeadline) {
  absl::Notification answer;
  HostLookup lookup([&](const std::string& host) {
    if (host == "stuck.example") answer.WaitForNotification();
    return absl::StatusOr<std::vector<std::string>>(
        std::vector<std::string>{"10.0.0.2"});
  });
  for (int i = 0; i < HostLookup::kMaxStuckLookups; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::vector<std::string>> r =
        lookup.Addresses("stuck.example", start + absl::Milliseconds(100));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("stuck.example"));
    EXPECT_THAT(r.status().message(), HasSubstr("no answer in time"));
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<std::string>> refused =
      lookup.Addresses("other.example", start + absl::Seconds(10));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("still unanswered"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));

  answer.Notify();
  absl::StatusOr<std::vector<std::string>> again;
  for (int tries = 0; tries < 500; ++tries) {
    again = lookup.Addresses("other.example", absl::Now() + absl::Seconds(5));
    if (again.ok()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, std::vector<std::string>{"10.0.0.2"});
}

TEST(HostLookupTest, FailuresAndEmptyAnswersAreUnavailable) {
  HostLookup lookup(
      [](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
        if (host == "none.example") return std::vector<std::string>{};
        return absl::UnavailableError("cannot look up " + host + ": nope");
      });
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  absl::StatusOr<std::vector<std::string>> r =
      lookup.Addresses("none.example", deadline);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("no address"));
  r = lookup.Addresses("bad.example", deadline);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("nope"));
}

TEST(HostLookupTest, GetaddrinfoFindsLocalhost) {
  HostLookup lookup;
  absl::StatusOr<std::vector<std::string>> r =
      lookup.Addresses("localhost", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, Contains(AnyOf("127.0.0.1", "::1")));
  EXPECT_EQ(ResolveWithGetaddrinfo("no-such-host.invalid").status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sessiond::storage::internal
