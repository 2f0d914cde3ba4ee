#include "server/call_executor.h"

#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace sessiond {
namespace {

using Expiry = CallExecutor::Expiry;

// Records what happened to it; Run executes `body` first, if set.
class RecordingCall final : public CallExecutor::Call {
 public:
  explicit RecordingCall(std::function<void()> body = nullptr)
      : body_(std::move(body)) {}

  void Run() override {
    if (body_) body_();
    {
      absl::MutexLock lock(&mu_);
      ran_ = true;
      ran_on_ = std::this_thread::get_id();
      at_ = absl::Now();
    }
    done_.Notify();
  }
  void Expire(Expiry why) override {
    {
      absl::MutexLock lock(&mu_);
      expired_ = why;
      at_ = absl::Now();
    }
    done_.Notify();
  }

  bool WaitDone() {
    return done_.WaitForNotificationWithTimeout(absl::Seconds(10));
  }
  bool ran() const {
    absl::MutexLock lock(&mu_);
    return ran_;
  }
  std::thread::id ran_on() const {
    absl::MutexLock lock(&mu_);
    return ran_on_;
  }
  std::optional<Expiry> expired() const {
    absl::MutexLock lock(&mu_);
    return expired_;
  }
  absl::Time at() const {
    absl::MutexLock lock(&mu_);
    return at_;
  }

 private:
  const std::function<void()> body_;
  mutable absl::Mutex mu_;
  bool ran_ = false;
  std::thread::id ran_on_;
  std::optional<Expiry> expired_;
  absl::Time at_;
  absl::Notification done_;
};

absl::Time Later() { return absl::Now() + absl::Seconds(30); }

constexpr int64_t kManyBytes = int64_t{1} << 40;

// A call that, once run, holds its worker until Release().
class HeldCall {
 public:
  HeldCall()
      : call_([this] {
          started_.Notify();
          release_.WaitForNotification();
        }) {}
  RecordingCall* get() { return &call_; }
  RecordingCall* operator->() { return &call_; }
  bool WaitStarted() {
    return started_.WaitForNotificationWithTimeout(absl::Seconds(10));
  }
  void Release() { release_.Notify(); }

 private:
  absl::Notification started_, release_;
  RecordingCall call_;
};

TEST(CallExecutorTest, RunsEachCallOnAWorkerInArrivalOrder) {
  CallExecutor executor(1, 100, kManyBytes);
  std::vector<int> order;
  absl::Mutex mu;
  std::vector<std::unique_ptr<RecordingCall>> calls;
  for (int i = 0; i < 20; ++i) {
    calls.push_back(std::make_unique<RecordingCall>([&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
    }));
  }
  for (auto& call : calls) executor.Submit(call.get(), Later(), 1);
  for (auto& call : calls) {
    ASSERT_TRUE(call->WaitDone());
    EXPECT_TRUE(call->ran());
    EXPECT_FALSE(call->expired().has_value());
    EXPECT_NE(call->ran_on(), std::this_thread::get_id());
  }
  absl::MutexLock lock(&mu);
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[i], i);
}

TEST(CallExecutorTest, AWaitingCallExpiresAtItsDeadlineWhileWorkersAreBusy) {
  CallExecutor executor(2, 100, kManyBytes);
  HeldCall stuck_a, stuck_b;
  executor.Submit(stuck_a.get(), Later(), 1);
  executor.Submit(stuck_b.get(), Later(), 1);
  ASSERT_TRUE(stuck_a.WaitStarted());
  ASSERT_TRUE(stuck_b.WaitStarted());
  // Both workers are held; these two wait, the later deadline first.
  const absl::Time start = absl::Now();
  RecordingCall late, soon;
  executor.Submit(&late, start + absl::Milliseconds(400), 1);
  executor.Submit(&soon, start + absl::Milliseconds(100), 1);
  ASSERT_TRUE(soon.WaitDone());
  EXPECT_EQ(soon.expired(), Expiry::kDeadline);
  EXPECT_GE(soon.at(), start + absl::Milliseconds(100));
  ASSERT_TRUE(late.WaitDone());
  EXPECT_EQ(late.expired(), Expiry::kDeadline);
  EXPECT_GE(late.at(), start + absl::Milliseconds(400));
  EXPECT_FALSE(stuck_a->ran());  // still held: the expiry did not wait
  stuck_a.Release();
  stuck_b.Release();
  ASSERT_TRUE(stuck_a->WaitDone());
  ASSERT_TRUE(stuck_b->WaitDone());
  EXPECT_FALSE(late.ran());
  EXPECT_FALSE(soon.ran());
}

TEST(CallExecutorTest, ACallPastItsDeadlineIsNeverRun) {
  CallExecutor executor(1, 100, kManyBytes);
  RecordingCall call;
  executor.Submit(&call, absl::Now() - absl::Seconds(1), 1);
  ASSERT_TRUE(call.WaitDone());
  EXPECT_EQ(call.expired(), Expiry::kDeadline);
  EXPECT_FALSE(call.ran());
}

TEST(CallExecutorTest, RefusesCallsBeyondTheQueueAtOnce) {
  CallExecutor executor(1, 2, kManyBytes);
  HeldCall stuck;
  executor.Submit(stuck.get(), Later(), 1);
  ASSERT_TRUE(stuck.WaitStarted());
  RecordingCall first, second, third;
  executor.Submit(&first, Later(), 1);
  executor.Submit(&second, Later(), 1);
  executor.Submit(&third, Later(), 1);
  // Refused on this thread, before Submit returned.
  EXPECT_EQ(third.expired(), Expiry::kQueueFull);
  stuck.Release();
  ASSERT_TRUE(first.WaitDone());
  ASSERT_TRUE(second.WaitDone());
  EXPECT_TRUE(first.ran());
  EXPECT_TRUE(second.ran());
}

TEST(CallExecutorTest, RefusesCallsBeyondTheQueuedBytes) {
  CallExecutor executor(1, 100, 10);
  HeldCall stuck;
  // Taken by the worker at once: a running call's bytes do not count.
  executor.Submit(stuck.get(), Later(), 1000);
  ASSERT_TRUE(stuck.WaitStarted());
  RecordingCall big, six, five, four;
  executor.Submit(&big, Later(), 50);  // alone in the queue: it may wait
  EXPECT_FALSE(big.expired().has_value());
  executor.Submit(&six, Later(), 6);
  EXPECT_EQ(six.expired(), Expiry::kQueueFull);
  stuck.Release();
  ASSERT_TRUE(big.WaitDone());
  EXPECT_TRUE(big.ran());
  // Once `big` is taken, its bytes no longer count.
  HeldCall again;
  executor.Submit(again.get(), Later(), 1);
  ASSERT_TRUE(again.WaitStarted());
  executor.Submit(&five, Later(), 6);
  executor.Submit(&four, Later(), 4);
  EXPECT_FALSE(five.expired().has_value());
  EXPECT_FALSE(four.expired().has_value());
  again.Release();
  ASSERT_TRUE(five.WaitDone());
  ASSERT_TRUE(four.WaitDone());
  EXPECT_TRUE(five.ran());
  EXPECT_TRUE(four.ran());
}

TEST(CallExecutorTest, StopExpiresWaitingCallsAndLetsRunningOnesFinish) {
  CallExecutor executor(1, 100, kManyBytes);
  HeldCall running;
  RecordingCall waiting;
  executor.Submit(running.get(), Later(), 1);
  ASSERT_TRUE(running.WaitStarted());
  executor.Submit(&waiting, Later(), 1);
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(100));
    running.Release();
  });
  EXPECT_TRUE(executor.Stop(Later()));
  releaser.join();
  EXPECT_TRUE(running->ran());
  EXPECT_EQ(waiting.expired(), Expiry::kStopping);
  RecordingCall after;
  executor.Submit(&after, Later(), 1);
  EXPECT_EQ(after.expired(), Expiry::kStopping);
}

TEST(CallExecutorTest, StopReportsACallStillRunningAtItsDeadline) {
  // Lives to the process's end, as a stuck server's does: its detached
  // worker still uses it.
  static CallExecutor* const executor = new CallExecutor(1, 100, kManyBytes);
  HeldCall running;
  executor->Submit(running.get(), Later(), 1);
  ASSERT_TRUE(running.WaitStarted());
  const absl::Time start = absl::Now();
  EXPECT_FALSE(executor->Stop(start + absl::Milliseconds(100)));
  EXPECT_GE(absl::Now(), start + absl::Milliseconds(100));
  running.Release();
  ASSERT_TRUE(running->WaitDone());
}

}  // namespace
}  // namespace sessiond
