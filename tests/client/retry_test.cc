// The retry policy as pure functions: which RPCs, which codes, how many
// attempts, and how long between them.
#include "client/retry.h"

#include <vector>

#include "gtest/gtest.h"

namespace sessiond {
namespace {

const std::vector<Rpc>& AllRpcs() {
  static const auto* rpcs = new std::vector<Rpc>{
      Rpc::kLoad,        Rpc::kSave,  Rpc::kCycle, Rpc::kDelete,
      Rpc::kListForUser, Rpc::kPrune, Rpc::kHealth};
  return *rpcs;
}

TEST(RetryPolicyTest, OnlySaveAndCycleAreNotIdempotent) {
  for (Rpc rpc : AllRpcs()) {
    const bool writes_or_rotates = rpc == Rpc::kSave || rpc == Rpc::kCycle;
    EXPECT_EQ(IsIdempotent(rpc), !writes_or_rotates) << RpcName(rpc);
  }
}

TEST(RetryPolicyTest, RetriesOnlyIdempotentRpcsOnlyOnUnavailable) {
  for (Rpc rpc : AllRpcs()) {
    for (int c = 0; c <= 16; ++c) {
      const auto code = static_cast<absl::StatusCode>(c);
      const bool want =
          IsIdempotent(rpc) && code == absl::StatusCode::kUnavailable;
      EXPECT_EQ(ShouldRetry(rpc, code, 1, 3), want)
          << RpcName(rpc) << " " << absl::StatusCodeToString(code);
    }
  }
}

TEST(RetryPolicyTest, NeverRetriesSaveOrCycle) {
  for (Rpc rpc : {Rpc::kSave, Rpc::kCycle}) {
    EXPECT_FALSE(ShouldRetry(rpc, absl::StatusCode::kUnavailable, 1, 100))
        << RpcName(rpc);
  }
}

TEST(RetryPolicyTest, DeadlineExceededIsNotRetried) {
  // The deadline covers the whole call: nothing is left to retry with.
  EXPECT_FALSE(
      ShouldRetry(Rpc::kLoad, absl::StatusCode::kDeadlineExceeded, 1, 3));
}

TEST(RetryPolicyTest, AttemptsAreBounded) {
  EXPECT_TRUE(ShouldRetry(Rpc::kLoad, absl::StatusCode::kUnavailable, 1, 3));
  EXPECT_TRUE(ShouldRetry(Rpc::kLoad, absl::StatusCode::kUnavailable, 2, 3));
  EXPECT_FALSE(ShouldRetry(Rpc::kLoad, absl::StatusCode::kUnavailable, 3, 3));
  EXPECT_FALSE(ShouldRetry(Rpc::kLoad, absl::StatusCode::kUnavailable, 1, 1));
}

TEST(BackoffTest, DoublesFromTheInitialBackoff) {
  const absl::Duration initial = absl::Milliseconds(50);
  EXPECT_EQ(BackoffAfter(1, initial), absl::Milliseconds(50));
  EXPECT_EQ(BackoffAfter(2, initial), absl::Milliseconds(100));
  EXPECT_EQ(BackoffAfter(3, initial), absl::Milliseconds(200));
  EXPECT_EQ(BackoffAfter(4, initial), absl::Milliseconds(400));
}

TEST(BackoffTest, DegenerateInputs) {
  EXPECT_EQ(BackoffAfter(0, absl::Milliseconds(50)), absl::ZeroDuration());
  EXPECT_EQ(BackoffAfter(3, absl::ZeroDuration()), absl::ZeroDuration());
  EXPECT_EQ(BackoffAfter(3, absl::Milliseconds(-5)), absl::ZeroDuration());
}

TEST(BackoffTest, SaturatesInsteadOfOverflowing) {
  EXPECT_GT(BackoffAfter(40, absl::Milliseconds(50)), absl::Hours(24 * 365));
  EXPECT_GE(BackoffAfter(1000, absl::Milliseconds(50)),
            BackoffAfter(40, absl::Milliseconds(50)));
  EXPECT_EQ(BackoffAfter(1000, absl::Hours(1000000)), absl::InfiniteDuration());
}

TEST(RpcNameTest, MatchesTheProto) {
  EXPECT_EQ(RpcName(Rpc::kLoad), "Load");
  EXPECT_EQ(RpcName(Rpc::kSave), "Save");
  EXPECT_EQ(RpcName(Rpc::kCycle), "Cycle");
  EXPECT_EQ(RpcName(Rpc::kDelete), "Delete");
  EXPECT_EQ(RpcName(Rpc::kListForUser), "ListForUser");
  EXPECT_EQ(RpcName(Rpc::kPrune), "Prune");
  EXPECT_EQ(RpcName(Rpc::kHealth), "Health");
}

}  // namespace
}  // namespace sessiond
