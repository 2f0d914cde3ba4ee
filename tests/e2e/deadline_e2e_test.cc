// End-to-end: a call whose caller's deadline passed while it waited for a
// server thread is not started, so it writes nothing after the caller gave
// up. One worker, and a Valkey server hung (SIGSTOP) so that the first call
// holds that worker. Shutdown lets such a held call finish within its call
// timeout. And one connection has no more calls open than
// --max_concurrent_streams.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {
namespace {

// sessiond on a Valkey server that a test can hang.
class DeadlineE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("deadline");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<std::unique_ptr<RedisServer>> valkey =
        RedisServer::Start(RedisServerOptions{});
    ASSERT_TRUE(valkey.ok()) << valkey.status();
    valkey_ = *std::move(valkey);
  }

  // sessiond with `flags` too, on valkey_ with --valkey_timeout=2s.
  absl::StatusOr<std::unique_ptr<SessiondProcess>> StartSessiond(
      std::vector<std::string> flags) {
    flags.insert(
        flags.end(),
        {"--backend=valkey", "--insecure_plaintext", "--valkey_timeout=2s",
         "--valkey_address=127.0.0.1:" + std::to_string(valkey_->port())});
    return SessiondProcess::Start(flags, dir_ + "/sessiond.log");
  }

  std::string dir_;
  std::unique_ptr<RedisServer> valkey_;
};

TEST_F(DeadlineE2eTest, ACallPastItsDeadlineIsNotStarted) {
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      StartSessiond({"--workers=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto connect = [&](absl::Duration deadline) {
    return *Client::Connect(
        (*server)->address(),
        ClientOptions{deadline, 1, absl::Milliseconds(50), ""});
  };
  std::unique_ptr<Client> patient = connect(absl::Seconds(10));
  std::unique_ptr<Client> hasty = connect(absl::Milliseconds(500));
  ASSERT_TRUE(patient->Health().ok());  // both channels connected
  ASSERT_TRUE(hasty->Health().ok());

  ASSERT_TRUE(valkey_->Pause().ok());
  // The patient call takes the one worker until the backend times out.
  std::thread holder([&] { (void)patient->Create("patient"); });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Status gave_up = hasty->Create("hasty").status();
  EXPECT_EQ(gave_up.code(), absl::StatusCode::kDeadlineExceeded) << gave_up;
  holder.join();
  ASSERT_TRUE(valkey_->Resume().ok());

  // Whatever the hung server took in runs now; the hasty Create must not
  // have been sent.
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<v1::ListForUserResponse> listed =
      patient->ListForUser("hasty");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sessions_size(), 0)
      << "a Create ran after its caller's deadline";
}

// A call still within its --call_timeout when SIGTERM's grace period ends
// is let finish: the process exits cleanly (0), not as if it were stuck.
TEST_F(DeadlineE2eTest, ShutdownWaitsForCallsWithinTheirCallTimeout) {
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      StartSessiond({"--shutdown_grace=0s", "--call_timeout=3s"});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Client> client = *Client::Connect(
      (*server)->address(),
      ClientOptions{absl::Seconds(10), 1, absl::Milliseconds(50), ""});
  ASSERT_TRUE(client->Health().ok());
  ASSERT_TRUE(valkey_->Pause().ok());
  std::thread caller([&] { (void)client->Create("held"); });
  absl::SleepFor(absl::Milliseconds(500));  // the Create waits on Valkey
  absl::StatusOr<int> exit_code = (*server)->Stop(SIGTERM, absl::Seconds(15));
  caller.join();
  ASSERT_TRUE(valkey_->Resume().ok());
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << ReadFileOrEmpty((*server)->log_path());
}

// With the backend hung, each call the server has takes --valkey_timeout
// (2 s) to fail. With 2 streams per connection, 4 calls on one connection
// run two by two: the last ends after about 4 s, not 2 s.
TEST_F(DeadlineE2eTest, OneConnectionHasAtMostMaxConcurrentStreamsOpen) {
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      StartSessiond({"--max_concurrent_streams=2", "--call_timeout=10s"});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Client> client = *Client::Connect(
      (*server)->address(),
      ClientOptions{absl::Seconds(20), 1, absl::Milliseconds(50), ""});
  ASSERT_TRUE(client->Health().ok());
  ASSERT_TRUE(valkey_->Pause().ok());
  const absl::Time start = absl::Now();
  std::vector<absl::Duration> took(4);
  std::vector<absl::Status> status(4);
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] {
      status[i] = client->Create("streams").status();
      took[i] = absl::Now() - start;
    });
  }
  for (std::thread& t : callers) t.join();
  ASSERT_TRUE(valkey_->Resume().ok());
  std::sort(took.begin(), took.end());
  for (const absl::Status& s : status) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  }
  EXPECT_LT(took[1], absl::Seconds(3.5)) << "the first two ran at once";
  EXPECT_GT(took[3], absl::Seconds(3.5)) << "all four ran at once";
}

}  // namespace
}  // namespace sessiond::testing
