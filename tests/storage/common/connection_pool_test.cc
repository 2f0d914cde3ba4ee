#include "storage/common/connection_pool.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace sessiond::storage {
namespace {

struct FakeConn {
  explicit FakeConn(int id) : id(id) {}
  bool Reusable() const { return reusable; }
  bool StillAlive() const { return alive; }
  int id;
  bool reusable = true;
  bool alive = true;
};

class ConnectionPoolTest : public testing::Test {
 protected:
  // A pool of FakeConns numbered 1, 2, ... in the order they are opened.
  ConnectionPool<FakeConn> NumberedPool(int max_open) {
    return ConnectionPool<FakeConn>(
        "test", max_open, absl::Seconds(1),
        [this](absl::Time) -> absl::StatusOr<std::unique_ptr<FakeConn>> {
          return std::make_unique<FakeConn>(++opened_);
        });
  }
  static absl::Time Soon() { return absl::Now() + absl::Milliseconds(50); }

  std::atomic<int> opened_{0};
};

TEST_F(ConnectionPoolTest, ReusesAnIdleConnection) {
  ConnectionPool<FakeConn> pool = NumberedPool(2);
  {
    auto lease = pool.Acquire(Soon(), Soon());
    ASSERT_TRUE(lease.ok());
    EXPECT_FALSE(lease->reused());
    EXPECT_EQ((**lease).id, 1);
  }
  auto lease = pool.Acquire(Soon(), Soon());
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(lease->reused());
  EXPECT_EQ((**lease).id, 1);
  EXPECT_EQ(opened_, 1);
}

TEST_F(ConnectionPoolTest, DropsConnectionsUnfitForUse) {
  ConnectionPool<FakeConn> pool = NumberedPool(1);
  {
    auto lease = pool.Acquire(Soon(), Soon());
    ASSERT_TRUE(lease.ok());
    (**lease).reusable = false;  // e.g. broken during the call
  }
  {
    auto lease = pool.Acquire(Soon(), Soon());
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ((**lease).id, 2);
    (**lease).alive = false;  // e.g. closed by the server while idle
  }
  auto lease = pool.Acquire(Soon(), Soon());
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ((**lease).id, 3);
  EXPECT_FALSE(lease->reused());
}

TEST_F(ConnectionPoolTest, FreshNeverReusesAnIdleConnection) {
  ConnectionPool<FakeConn> pool = NumberedPool(1);
  { ASSERT_TRUE(pool.Acquire(Soon(), Soon()).ok()); }
  auto lease = pool.Acquire(Soon(), Soon(), /*fresh=*/true);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ((**lease).id, 2);
}

TEST_F(ConnectionPoolTest, WaitsForAFreeSlotThenGivesUp) {
  ConnectionPool<FakeConn> pool = NumberedPool(1);
  auto held = pool.Acquire(Soon(), Soon());
  ASSERT_TRUE(held.ok());
  const absl::Time start = absl::Now();
  auto refused = pool.Acquire(start + absl::Milliseconds(100), Soon());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));

  // A slot that frees up while a caller waits goes to that caller.
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(50));
    held = absl::UnavailableError("released");
  });
  auto waited = pool.Acquire(absl::Now() + absl::Seconds(10), Soon());
  releaser.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ((**waited).id, 1);
}

TEST_F(ConnectionPoolTest, AFailedOpenGivesItsSlotBack) {
  absl::Status error = absl::UnavailableError("refused");
  ConnectionPool<FakeConn> pool(
      "test", 1, absl::Seconds(1),
      [this, &error](absl::Time) -> absl::StatusOr<std::unique_ptr<FakeConn>> {
        if (!error.ok()) return error;
        return std::make_unique<FakeConn>(++opened_);
      });
  EXPECT_EQ(pool.Acquire(Soon(), Soon()).status(), error);
  error = absl::OkStatus();
  EXPECT_TRUE(pool.Acquire(Soon(), Soon()).ok());
}

TEST_F(ConnectionPoolTest, AddIdleCountsAgainstTheLimit) {
  ConnectionPool<FakeConn> pool = NumberedPool(1);
  pool.AddIdle(std::make_unique<FakeConn>(100));
  auto lease = pool.Acquire(Soon(), Soon());
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ((**lease).id, 100);
  EXPECT_EQ(pool.Acquire(Soon(), Soon()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(opened_, 0);
}

TEST_F(ConnectionPoolTest, OpensByTheEarlierOfCallDeadlineAndOpenTimeout) {
  std::vector<absl::Time> deadlines;
  ConnectionPool<FakeConn> pool(
      "test", 2, absl::Seconds(1),
      [&](absl::Time deadline) -> absl::StatusOr<std::unique_ptr<FakeConn>> {
        deadlines.push_back(deadline);
        return std::make_unique<FakeConn>(0);
      });
  const absl::Time near = absl::Now() + absl::Milliseconds(10);
  auto a = pool.Acquire(near, near);
  const absl::Time far = absl::Now() + absl::Hours(1);
  const absl::Time before = absl::Now();
  auto b = pool.Acquire(far, far);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(deadlines.size(), 2u);
  EXPECT_EQ(deadlines[0], near);
  EXPECT_GE(deadlines[1], before + absl::Seconds(1));
  EXPECT_LE(deadlines[1], absl::Now() + absl::Seconds(1));
}

}  // namespace
}  // namespace sessiond::storage
