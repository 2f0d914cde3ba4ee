#include "storage/common/database_clock.h"

#include "gtest/gtest.h"

namespace sessiond::storage {
namespace {

TEST(DatabaseClockTest, FollowsTheDatabaseFromTheMidpointOfTheRead) {
  ManualClock local;
  DatabaseClock clock(&local);
  EXPECT_EQ(clock.Now(), local.Now());  // nothing measured yet

  const absl::Time database = local.Now() + absl::Hours(1);
  ASSERT_TRUE(clock
                  .Measure([&]() -> absl::StatusOr<absl::Time> {
                    local.Advance(absl::Milliseconds(100));  // the round trip
                    return database;
                  })
                  .ok());
  // The database read its clock halfway, 50 ms into the read.
  EXPECT_EQ(clock.offset(), absl::Hours(1) - absl::Milliseconds(50));
  local.Advance(absl::Seconds(10));
  EXPECT_EQ(clock.Now(), local.Now() + clock.offset());
}

TEST(DatabaseClockTest, AFailedOrSlowReadKeepsTheOffset) {
  ManualClock local;
  DatabaseClock clock(&local);
  ASSERT_TRUE(clock
                  .Measure([&]() -> absl::StatusOr<absl::Time> {
                    return local.Now() - absl::Minutes(5);
                  })
                  .ok());
  ASSERT_EQ(clock.offset(), -absl::Minutes(5));

  const absl::Status failed = clock.Measure([]() -> absl::StatusOr<absl::Time> {
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(clock.offset(), -absl::Minutes(5));

  EXPECT_TRUE(clock
                  .Measure(
                      [&]() -> absl::StatusOr<absl::Time> {
                        local.Advance(absl::Seconds(3));
                        return local.Now() + absl::Hours(2);
                      },
                      absl::Seconds(1))
                  .ok());
  EXPECT_EQ(clock.offset(), -absl::Minutes(5));
}

}  // namespace
}  // namespace sessiond::storage
