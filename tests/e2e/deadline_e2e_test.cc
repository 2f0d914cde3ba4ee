// End-to-end: a call whose caller's deadline passed while it waited for a
// server thread is not started, so it writes nothing after the caller gave
// up. One worker, and a Valkey server hung (SIGSTOP) so that the first call
// holds that worker. And shutdown lets such a held call finish within its
// call timeout.
#include <signal.h>

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

}  // namespace
}  // namespace sessiond::testing
