// End-to-end: two sessiond processes (two replicas) share one PostgreSQL or
// one Valkey, both real servers started by the test. A session written
// through one replica is read, updated, cycled and deleted through the other;
// while the database is down, calls fail with UNAVAILABLE within their
// deadline, and once it is back the replicas recover by themselves.
#include <signal.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/redis_server.h"

namespace sessiond::testing {
namespace {

// One database server, of either kind, behind the same few verbs.
class Database {
 public:
  virtual ~Database() = default;
  virtual std::vector<std::string> SessiondFlags() const = 0;
  virtual absl::Status Stop() = 0;
  virtual absl::Status Restart() = 0;
};

class Postgres : public Database {
 public:
  absl::Status Start() { return server_.Start(); }
  std::vector<std::string> SessiondFlags() const override {
    return {"--backend=postgres", "--postgres_dsn=" + server_.dsn()};
  }
  absl::Status Stop() override { return server_.Stop(); }
  absl::Status Restart() override { return server_.Restart(); }

 private:
  PostgresServer server_;
};

class Valkey : public Database {
 public:
  absl::Status Start() {
    absl::StatusOr<std::unique_ptr<RedisServer>> server =
        RedisServer::Start(RedisServerOptions{});
    if (!server.ok()) return server.status();
    server_ = std::move(*server);
    return absl::OkStatus();
  }
  std::vector<std::string> SessiondFlags() const override {
    return {"--backend=valkey",
            "--valkey_address=127.0.0.1:" + std::to_string(server_->port())};
  }
  absl::Status Stop() override { return server_->Stop(); }
  absl::Status Restart() override { return server_->Restart(); }

 private:
  std::unique_ptr<RedisServer> server_;
};

class SharedBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("shared");
    ASSERT_FALSE(dir_.empty());
    if (GetParam() == "postgres") {
      auto postgres = std::make_unique<Postgres>();
      ASSERT_TRUE(postgres->Start().ok());
      database_ = std::move(postgres);
    } else {
      auto valkey = std::make_unique<Valkey>();
      absl::Status started = valkey->Start();
      ASSERT_TRUE(started.ok()) << started;
      database_ = std::move(valkey);
    }
    // Replicas share the database and the key ring.
    std::vector<std::string> flags = database_->SessiondFlags();
    flags.push_back("--key_files=" + dir_ + "/sessiond.key");
    flags.push_back("--create_key_if_missing");
    flags.push_back("--prune_interval=0");
    replica_a_ = Start(flags, "a.log");
    ASSERT_NE(replica_a_, nullptr);
    replica_b_ = Start(flags, "b.log");
    ASSERT_NE(replica_b_, nullptr);
    a_ = Connect(*replica_a_);
    b_ = Connect(*replica_b_);
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }

  std::unique_ptr<SessiondProcess> Start(const std::vector<std::string>& flags,
                                         const std::string& log) {
    absl::StatusOr<std::unique_ptr<SessiondProcess>> process =
        SessiondProcess::Start(flags, dir_ + "/" + log);
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? std::move(*process) : nullptr;
  }

  static std::unique_ptr<Client> Connect(const SessiondProcess& process) {
    // One attempt per call, so that a test sees each failure as it happens.
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
        process.address(),
        ClientOptions{absl::Seconds(20), 1, absl::Milliseconds(50), ""});
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<SessiondProcess> replica_a_;
  std::unique_ptr<SessiondProcess> replica_b_;
  std::unique_ptr<Client> a_;
  std::unique_ptr<Client> b_;
};

TEST_P(SharedBackendTest, ReplicasSeeOneAnothersWrites) {
  absl::StatusOr<v1::SaveResponse> created =
      a_->Create("", "written by A", {{"ip", "192.0.2.10"}});
  ASSERT_TRUE(created.ok()) << created.status();

  absl::StatusOr<v1::LoadResponse> loaded = b_->Load(created->token());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().data(), "written by A");
  EXPECT_EQ(loaded->session().metadata().at("ip"), "192.0.2.10");

  // Login through B: A must stop accepting the old token at once.
  absl::StatusOr<v1::CycleResponse> cycled =
      b_->Cycle(created->token(), std::string("alice"));
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_EQ(a_->Load(created->token()).status().code(),
            absl::StatusCode::kNotFound);

  // Compare-and-set through A against the version B wrote.
  v1::SaveRequest update;
  update.set_token(cycled->token());
  update.set_user_id("alice");
  update.set_data("updated by A");
  update.set_expected_version(cycled->session().version());
  ASSERT_TRUE(a_->Save(update).ok());
  EXPECT_EQ(b_->Save(update).status().code(), absl::StatusCode::kAborted);
  absl::StatusOr<v1::LoadResponse> reloaded = b_->Load(cycled->token());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->session().data(), "updated by A");

  absl::StatusOr<v1::ListForUserResponse> listed = a_->ListForUser("alice");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->sessions_size(), 1);
  EXPECT_EQ(listed->sessions(0).id(), created->session().id());

  absl::StatusOr<v1::DeleteResponse> deleted =
      b_->DeleteById(created->session().id());
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->deleted(), 1);
  EXPECT_EQ(a_->Load(cycled->token()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(SharedBackendTest, DatabaseOutageIsUnavailableThenRecovers) {
  absl::StatusOr<v1::SaveResponse> before = a_->Create("bob", "acknowledged");
  ASSERT_TRUE(before.ok()) << before.status();

  ASSERT_TRUE(database_->Stop().ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::LoadResponse> during = a_->Load(before->token());
  EXPECT_EQ(during.status().code(), absl::StatusCode::kUnavailable)
      << during.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(15)) << "no bound on waiting";
  absl::StatusOr<v1::HealthResponse> health = b_->Health();
  ASSERT_TRUE(health.ok());
  EXPECT_FALSE(health->serving());

  ASSERT_TRUE(database_->Restart().ok());
  // Neither replica restarts; both reconnect on their own.
  for (Client* client : {a_.get(), b_.get()}) {
    absl::StatusOr<v1::LoadResponse> after;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    do {
      after = client->Load(before->token());
      if (after.ok()) break;
      absl::SleepFor(absl::Milliseconds(200));
    } while (absl::Now() < deadline);
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(after->session().data(), "acknowledged");
  }
  absl::StatusOr<v1::HealthResponse> healthy = b_->Health();
  ASSERT_TRUE(healthy.ok()) << healthy.status();
  EXPECT_TRUE(healthy->serving());
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedBackendTest,
                         ::testing::Values("postgres", "valkey"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace sessiond::testing
