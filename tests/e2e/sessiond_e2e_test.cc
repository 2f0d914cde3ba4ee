// End-to-end: the real sessiond binary on a loopback port, driven through
// the client library.
#include <signal.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"

namespace sessiond::testing {
namespace {

using ::testing::HasSubstr;

class SessiondE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_FALSE(dir_.empty());
  }

  std::vector<std::string> SqliteFlags() const {
    return {"--backend=sqlite", "--db_path=" + dir_ + "/sessions.db",
            "--key_files=" + dir_ + "/sessiond.key", "--create_key_if_missing",
            "--prune_interval=0"};
  }

  std::unique_ptr<SessiondProcess> StartServer(
      const std::vector<std::string>& flags, const std::string& log_name) {
    absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
        SessiondProcess::Start(flags, dir_ + "/" + log_name);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  static std::unique_ptr<Client> ClientFor(const SessiondProcess& server) {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
        server.address(),
        ClientOptions{absl::Seconds(5), 3, absl::Milliseconds(50), ""});
    EXPECT_TRUE(client.ok()) << client.status();
    return std::move(*client);
  }

  std::string dir_;
};

TEST_F(SessiondE2eTest, EveryRpcThroughTheClientLibrary) {
  std::unique_ptr<SessiondProcess> server =
      StartServer(SqliteFlags(), "sessiond.log");
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientFor(*server);

  absl::StatusOr<v1::HealthResponse> health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->serving());
  EXPECT_EQ(health->backend(), "sqlite");

  absl::StatusOr<v1::SaveResponse> created =
      client->Create("", "anonymous cart", {{"ip", "198.51.100.4"}});
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(created->created());

  absl::StatusOr<v1::LoadResponse> loaded =
      client->Load(created->token(), /*touch=*/true);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "anonymous cart");
  EXPECT_EQ(loaded->session().metadata().at("ip"), "198.51.100.4");

  // Login: cycle the token and bind the user in one step.
  absl::StatusOr<v1::CycleResponse> cycled =
      client->Cycle(created->token(), std::string("alice"));
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(client->Load(created->token()).status().code(),
            absl::StatusCode::kNotFound);

  v1::SaveRequest update;
  update.set_token(cycled->token());
  update.set_user_id("alice");
  update.set_data("logged-in cart");
  update.set_expected_version(cycled->session().version());
  absl::StatusOr<v1::SaveResponse> updated = client->Save(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->session().version(), cycled->session().version() + 1);
  absl::StatusOr<v1::SaveResponse> stale = client->Save(update);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);

  absl::StatusOr<v1::SaveResponse> second = client->Create("alice", "phone");
  ASSERT_TRUE(second.ok());
  absl::StatusOr<v1::ListForUserResponse> listed = client->ListForUser("alice");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->sessions_size(), 2);
  EXPECT_EQ(listed->sessions(0).id(), second->session().id());

  absl::StatusOr<v1::DeleteResponse> others =
      client->DeleteForUser("alice", second->session().id());
  ASSERT_TRUE(others.ok());
  EXPECT_EQ(others->deleted(), 1);
  absl::StatusOr<v1::DeleteResponse> by_id =
      client->DeleteById(second->session().id());
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->deleted(), 1);

  absl::StatusOr<v1::PruneResponse> pruned = client->Prune();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->pruned(), 0);

  absl::StatusOr<v1::LoadResponse> bad = client->Load("not a token");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("token"));

  absl::StatusOr<int> exit_code = server->Stop(SIGTERM, absl::Seconds(15));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  // No token ever reaches the log.
  const std::string log = ReadFileOrEmpty(server->log_path());
  EXPECT_EQ(log.find(created->token()), std::string::npos);
  EXPECT_EQ(log.find(cycled->token()), std::string::npos);
  EXPECT_THAT(log, HasSubstr("SIGTERM"));
}

TEST_F(SessiondE2eTest, RestartKeepsSqliteSessionsAndFileHoldsNoSecrets) {
  const std::string data = "payload-that-must-not-be-stored-in-clear";
  const std::string ua = "Mozilla/5.0 (metadata-in-clear-check)";
  std::string token;
  {
    std::unique_ptr<SessiondProcess> server =
        StartServer(SqliteFlags(), "first.log");
    ASSERT_NE(server, nullptr);
    absl::StatusOr<v1::SaveResponse> created =
        ClientFor(*server)->Create("alice", data, {{"ua", ua}});
    ASSERT_TRUE(created.ok()) << created.status();
    token = created->token();
    EXPECT_THAT(ReadFileOrEmpty(server->log_path()),
                HasSubstr("Created a new encryption key"));
    absl::StatusOr<int> exit_code = server->Stop(SIGTERM, absl::Seconds(15));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);
  }

  std::string stored = ReadFileOrEmpty(dir_ + "/sessions.db") +
                       ReadFileOrEmpty(dir_ + "/sessions.db-wal");
  ASSERT_GT(stored.size(), 0u);
  EXPECT_EQ(stored.find(data), std::string::npos);
  EXPECT_EQ(stored.find(ua), std::string::npos);
  EXPECT_EQ(stored.find(token), std::string::npos);
  EXPECT_NE(stored.find("alice"), std::string::npos)
      << "sanity: the user id is stored in clear, so the file was read";

  std::unique_ptr<SessiondProcess> restarted =
      StartServer(SqliteFlags(), "second.log");
  ASSERT_NE(restarted, nullptr);
  absl::StatusOr<v1::LoadResponse> loaded = ClientFor(*restarted)->Load(token);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), data);
  EXPECT_EQ(loaded->session().metadata().at("ua"), ua);
}

TEST_F(SessiondE2eTest, StandardHealthServiceReportsServing) {
  std::unique_ptr<SessiondProcess> server =
      StartServer({"--backend=memory", "--insecure_plaintext"}, "health.log");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(StandardHealth(server->address(), ""), 1);
  EXPECT_EQ(StandardHealth(server->address(), "sessiond.v1.SessionService"), 1);
}

TEST_F(SessiondE2eTest, DrainsBeforeShuttingDown) {
  std::unique_ptr<SessiondProcess> server = StartServer(
      {"--backend=memory", "--insecure_plaintext", "--shutdown_drain_delay=3s"},
      "drain.log");
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientFor(*server);
  ASSERT_TRUE(client->Create().ok());
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  // During the drain delay: health says NOT_SERVING, calls still work.
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  int health = StandardHealth(server->address(), "");
  while (health != 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    health = StandardHealth(server->address(), "");
  }
  EXPECT_EQ(health, 2);
  EXPECT_TRUE(client->Create().ok());
  absl::StatusOr<int> exit_code = server->Stop(SIGTERM, absl::Seconds(20));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST_F(SessiondE2eTest, RefusesToStartWithoutKeyOrExplicitPlaintext) {
  absl::StatusOr<int> exit_code = SessiondProcess::RunToExit(
      {"--backend=memory"}, dir_ + "/nokey.log", absl::Seconds(15));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 2);
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/nokey.log"), HasSubstr("--key_files"));

  exit_code = SessiondProcess::RunToExit(
      {"--backend=memory", "--key_files=" + dir_ + "/absent.key"},
      dir_ + "/missing.log", absl::Seconds(15));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 1);
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/missing.log"), HasSubstr("absent.key"));
}

// --reflection=false: grpcurl can no longer learn the API from the server,
// while the API itself still serves.
TEST_F(SessiondE2eTest, ReflectionCanBeTurnedOff) {
  const char* grpcurl = std::getenv("SESSIOND_GRPCURL");
  ASSERT_NE(grpcurl, nullptr) << "SESSIOND_GRPCURL is not set";
  auto list = [&](const SessiondProcess& server, const std::string& out) {
    const std::string command = std::string(grpcurl) +
                                " -plaintext -max-time 5 " + server.address() +
                                " list > " + dir_ + "/" + out + " 2>&1";
    return std::system(command.c_str());
  };
  std::vector<std::string> flags = SqliteFlags();
  std::unique_ptr<SessiondProcess> with = StartServer(flags, "with.log");
  ASSERT_NE(with, nullptr);
  EXPECT_EQ(list(*with, "with.out"), 0) << ReadFileOrEmpty(dir_ + "/with.out");
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/with.out"),
              HasSubstr("sessiond.v1.SessionService"));
  with.reset();

  flags.push_back("--reflection=false");
  std::unique_ptr<SessiondProcess> without = StartServer(flags, "without.log");
  ASSERT_NE(without, nullptr);
  EXPECT_NE(list(*without, "without.out"), 0)
      << ReadFileOrEmpty(dir_ + "/without.out");
  std::unique_ptr<Client> client = ClientFor(*without);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<v1::HealthResponse> health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->serving());
}

}  // namespace
}  // namespace sessiond::testing
