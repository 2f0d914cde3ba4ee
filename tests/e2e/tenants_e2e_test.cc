// End-to-end: callers and tenants. The real sessiond serves mutual TLS with
// a policy file: two client certificates in two tenants, an API key, and a
// read-only identity, with certificates made by the openssl command line
// tool for this test.
#include <signal.h>
#include <stdio.h>

#include <atomic>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/e2e/test_certificates.h"

namespace sessiond::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kApiKey[] = "beta-key-0123456789abcdefghijklmnop";
// printf %s beta-key-0123456789abcdefghijklmnop | sha256sum
constexpr char kApiKeySha256[] =
    "80b770078bebfd41c3c2a785d96912b71ea384c0a587b57152671e9304cd8cf9";

constexpr char kEveryRpc[] =
    "[Load, Save, Cycle, Delete, ListForUser, Prune, Health]";

// The policy: tenants alpha and beta; alpha-app and beta-app by URI SAN with
// every RPC; beta-key by API key with every RPC; alpha-reader by DNS SAN
// with Load and ListForUser, and Health too when `reader_health`.
std::string Policy(bool reader_health) {
  return absl::StrCat(
      "version: 1\n"
      "tenants:\n"
      "  alpha: {}\n"
      "  beta:\n"
      "    max_sessions_per_user: 1000\n"
      "callers:\n"
      "  - name: alpha-app\n"
      "    tenant: alpha\n"
      "    uri_san: spiffe://sessiond.test/alpha\n"
      "    allow: ",
      kEveryRpc,
      "\n"
      "  - name: beta-app\n"
      "    tenant: beta\n"
      "    uri_san: spiffe://sessiond.test/beta\n"
      "    allow: ",
      kEveryRpc,
      "\n"
      "  - name: beta-key\n"
      "    tenant: beta\n"
      "    api_key_sha256: ",
      kApiKeySha256,
      "\n"
      "    allow: ",
      kEveryRpc,
      "\n"
      "  - name: alpha-reader\n"
      "    tenant: alpha\n"
      "    dns_san: reader.sessiond.test\n"
      "    allow: [Load, ListForUser",
      reader_health ? ", Health" : "", "]\n");
}

class TenantsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tenants");
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(MakeCertificates(
        dir_, {{"alpha", "/CN=alpha", "URI:spiffe://sessiond.test/alpha"},
               {"beta", "/CN=beta", "URI:spiffe://sessiond.test/beta"},
               {"reader", "/CN=reader", "DNS:reader.sessiond.test"},
               {"nobody", "/CN=nobody", "URI:spiffe://sessiond.test/nobody"}}))
        << ReadFileOrEmpty(dir_ + "/openssl.log");
    WritePolicy(Policy(false));
    absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
        SessiondProcess::Start({"--backend=memory", "--insecure_plaintext",
                                "--tls_cert_file=" + dir_ + "/server.pem",
                                "--tls_key_file=" + dir_ + "/server.key",
                                "--tls_client_ca_file=" + dir_ + "/ca.pem",
                                "--policy_file=" + dir_ + "/policy.yaml"},
                               dir_ + "/sessiond.log");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  // Replaces the policy file in one step, as a ConfigMap update does.
  void WritePolicy(const std::string& text) {
    const std::string path = dir_ + "/policy.yaml";
    {
      std::ofstream out(path + ".new");
      out << text;
    }
    ASSERT_EQ(::rename((path + ".new").c_str(), path.c_str()), 0);
  }

  // A client presenting the certificate `stem`, and `api_key` if not empty.
  std::unique_ptr<Client> As(const std::string& stem,
                             const std::string& api_key = "") {
    ClientTls tls;
    tls.root_ca_pem = ReadFileOrEmpty(dir_ + "/ca.pem");
    tls.cert_chain_pem = ReadFileOrEmpty(dir_ + "/" + stem + ".pem");
    tls.private_key_pem = ReadFileOrEmpty(dir_ + "/" + stem + ".key");
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
        server_->address(),
        ClientOptions{absl::Seconds(5), 1, absl::Milliseconds(50), api_key},
        tls);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<SessiondProcess> server_;
};

// One probe of a session that is not the caller's: what the caller saw, as
// code, message and whatever the response reveals.
struct Outcome {
  bool success = false;  // a session read, written, or deleted
  std::string seen;

  bool operator==(const Outcome& other) const {
    return success == other.success && seen == other.seen;
  }
};

template <typename T>
Outcome Failed(const absl::StatusOr<T>& result) {
  if (result.ok()) return {true, "OK"};
  return {false, absl::StrCat(absl::StatusCodeToString(result.status().code()),
                              ": ", result.status().message())};
}

Outcome Deleted(const absl::StatusOr<v1::DeleteResponse>& result) {
  if (!result.ok()) return Failed(result);
  return {result->deleted() != 0, absl::StrCat("deleted ", result->deleted())};
}

Outcome Listed(const absl::StatusOr<v1::ListForUserResponse>& result) {
  if (!result.ok()) return Failed(result);
  return {result->sessions_size() != 0,
          absl::StrCat("listed ", result->sessions_size(), " next '",
                       result->next_page_token(), "'")};
}

// What `client` sees when it aims RPC number `rpc` at a session with this
// token, id and user.
Outcome Probe(const Client& client, int rpc, const std::string& token,
              const std::string& id, const std::string& user) {
  switch (rpc) {
    case 0:
      return Failed(client.Load(token));
    case 1:
      return Failed(client.Load(token, /*touch=*/true));
    case 2: {
      v1::SaveRequest update;
      update.set_token(token);
      update.set_data("taken over");
      return Failed(client.Save(update));
    }
    case 3: {
      v1::SaveRequest update;
      update.set_token(token);
      update.set_user_id(user);
      update.mutable_update_mask()->add_paths("data");
      return Failed(client.Save(update));
    }
    case 4:
      return Failed(client.Cycle(token));
    case 5:
      return Failed(client.Cycle(token, "mallory"));
    case 6:
      return Deleted(client.DeleteByToken(token));
    case 7:
      return Deleted(client.DeleteById(id));
    case 8:
      return Deleted(client.DeleteForUser(user));
    default:
      return Listed(client.ListForUser(user));
  }
}
constexpr int kRpcs = 10;

struct Victim {
  std::string token;
  std::string id;
  std::string user;
};

TEST_F(TenantsE2eTest, AnotherTenantsSessionsReadAsAbsent) {
  std::unique_ptr<Client> alpha = As("alpha");
  std::unique_ptr<Client> beta = As("beta");
  std::unique_ptr<Client> beta_key = As("nobody", kApiKey);
  ASSERT_TRUE(alpha && beta && beta_key);
  // The API key is beta's identity, not only a way to fail.
  absl::StatusOr<v1::SaveResponse> by_key = beta_key->Create("key-user");
  ASSERT_TRUE(by_key.ok()) << by_key.status();
  EXPECT_TRUE(beta->Load(by_key->token()).ok());

  // Alpha's sessions, the targets; beta has sessions of the same user ids.
  std::vector<Victim> victims;
  for (int i = 0; i < 40; ++i) {
    const std::string user = absl::StrCat("user-", i);
    absl::StatusOr<v1::SaveResponse> created =
        alpha->Create(user, absl::StrCat("alpha secret ", i));
    ASSERT_TRUE(created.ok()) << created.status();
    victims.push_back({created->token(), created->session().id(), user});
    ASSERT_TRUE(beta->Create(user, "beta's own").ok());
  }
  // Tokens, ids and users that exist nowhere, shaped like the real ones.
  std::vector<Victim> absent;
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<v1::SaveResponse> made = alpha->Create("");
    ASSERT_TRUE(made.ok());
    absent.push_back(
        {made->token(), made->session().id(), absl::StrCat("nobody-", i)});
    ASSERT_EQ(alpha->DeleteByToken(made->token())->deleted(), 1);
  }

  std::mt19937 random(20261202);
  const Client* attackers[] = {beta.get(), beta_key.get()};
  int successes = 0;
  int differences = 0;
  std::string first_difference;
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const Client& attacker = *attackers[random() % 2];
    const int rpc = static_cast<int>(random() % kRpcs);
    const Victim& victim = victims[random() % victims.size()];
    const Victim& none = absent[random() % absent.size()];
    // Beta shares alpha's user ids: a user-scoped probe at one of them
    // finds beta's own sessions, so those probes name absent users only.
    const bool by_user = rpc == 8 || rpc == 9;
    const Outcome other =
        Probe(attacker, rpc, victim.token, victim.id,
              by_user ? absl::StrCat("alpha-only-", victim.user) : victim.user);
    const Outcome missing = Probe(attacker, rpc, none.token, none.id,
                                  by_user ? none.user : victim.user);
    if (other.success) ++successes;
    if (!(other == missing)) {
      if (differences++ == 0) {
        first_difference =
            absl::StrCat("rpc ", rpc, ": other tenant's '", other.seen,
                         "', absent '", missing.seen, "'");
      }
    }
  }
  EXPECT_EQ(successes, 0);
  EXPECT_EQ(differences, 0) << first_difference;

  // Alpha's users, by the ids they have in alpha only.
  for (int i = 0; i < 40; ++i) {
    const std::string user = absl::StrCat("alpha-only-user-", i);
    absl::StatusOr<v1::SaveResponse> created = alpha->Create(user, "x");
    ASSERT_TRUE(created.ok());
    EXPECT_EQ(beta->ListForUser(user)->sessions_size(), 0);
    EXPECT_EQ(beta->DeleteForUser(user)->deleted(), 0);
    EXPECT_EQ(alpha->ListForUser(user)->sessions_size(), 1);
  }

  // Nothing of alpha's was touched; beta's own sessions are beta's.
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<v1::LoadResponse> loaded = alpha->Load(victims[i].token);
    ASSERT_TRUE(loaded.ok()) << i << ": " << loaded.status();
    EXPECT_EQ(loaded->session().data(), absl::StrCat("alpha secret ", i));
    EXPECT_EQ(loaded->session().user_id(), victims[i].user);
    EXPECT_EQ(loaded->session().version(), 1);
    absl::StatusOr<v1::ListForUserResponse> theirs =
        beta->ListForUser(victims[i].user);
    ASSERT_TRUE(theirs.ok());
    for (const v1::Session& session : theirs->sessions()) {
      EXPECT_EQ(session.data(), "beta's own");
    }
  }
  // Prune is scoped too: it cannot tell beta about alpha's sessions.
  EXPECT_TRUE(beta->Prune().ok());
  EXPECT_TRUE(alpha->Load(victims[0].token).ok());
}

TEST_F(TenantsE2eTest, EveryRpcIsRefusedWithoutItsGrant) {
  std::unique_ptr<Client> alpha = As("alpha");
  std::unique_ptr<Client> reader = As("reader");
  ASSERT_TRUE(alpha && reader);
  absl::StatusOr<v1::SaveResponse> created = alpha->Create("alice", "data");
  ASSERT_TRUE(created.ok());
  const std::string token = created->token();
  const std::string id = created->session().id();

  // The read-only identity reads its tenant's sessions...
  absl::StatusOr<v1::LoadResponse> read = reader->Load(token);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->session().data(), "data");
  EXPECT_EQ(reader->ListForUser("alice")->sessions_size(), 1);
  // ...and may call nothing else.
  v1::SaveRequest save;
  save.set_token(token);
  save.set_data("changed");
  const std::vector<std::pair<std::string, absl::Status>> refused = {
      {"Save", reader->Save(save).status()},
      {"Save", reader->Create("eve").status()},
      {"Cycle", reader->Cycle(token).status()},
      {"DeleteByToken", reader->DeleteByToken(token).status()},
      {"DeleteById", reader->DeleteById(id).status()},
      {"DeleteForUser", reader->DeleteForUser("alice").status()},
      {"Prune", reader->Prune().status()},
      {"Health", reader->Health().status()},
  };
  for (const auto& [rpc, status] : refused) {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied)
        << rpc << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("alpha-reader")) << rpc;
    EXPECT_THAT(status.message(), HasSubstr(rpc)) << status;
  }
  // None of them changed anything.
  read = alpha->Load(token);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->session().data(), "data");
  EXPECT_EQ(read->session().version(), 1);

  // A certificate that names no caller, with or without a wrong key:
  // UNAUTHENTICATED for every RPC, and the key is never echoed.
  for (const char* key : {"", "wrong-key-value-never-echoed"}) {
    std::unique_ptr<Client> stranger = As("nobody", key);
    ASSERT_NE(stranger, nullptr);
    const std::vector<absl::Status> statuses = {
        stranger->Load(token).status(),
        stranger->Create("eve").status(),
        stranger->Save(save).status(),
        stranger->Cycle(token).status(),
        stranger->DeleteByToken(token).status(),
        stranger->DeleteById(id).status(),
        stranger->DeleteForUser("alice").status(),
        stranger->ListForUser("alice").status(),
        stranger->Prune().status(),
        stranger->Health().status()};
    for (const absl::Status& status : statuses) {
      EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
      EXPECT_THAT(status.message(), Not(HasSubstr("never-echoed")));
    }
  }
  EXPECT_THAT(ReadFileOrEmpty(server_->log_path()),
              Not(HasSubstr("never-echoed")));
  EXPECT_TRUE(alpha->Load(token).ok());
}

TEST_F(TenantsE2eTest, PolicyReloadsUnderLoadWithoutAFailedCall) {
  std::unique_ptr<Client> reader = As("reader");
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->Health().status().code(),
            absl::StatusCode::kPermissionDenied);

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  absl::Mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> load;
  for (const char* stem : {"alpha", "beta"}) {
    for (int t = 0; t < 2; ++t) {
      load.emplace_back([&, client = As(stem)] {
        while (!stop.load()) {
          absl::Status status;
          absl::StatusOr<v1::SaveResponse> created = client->Create("u", "d");
          status = created.status();
          if (status.ok()) status = client->Load(created->token()).status();
          if (status.ok()) {
            status = client->DeleteByToken(created->token()).status();
          }
          calls.fetch_add(3);
          if (!status.ok()) {
            absl::MutexLock lock(&mu);
            failures.push_back(status.ToString());
          }
        }
      });
    }
  }

  // Reload good and bad policies while the calls run.
  for (int round = 0; round < 6; ++round) {
    absl::SleepFor(absl::Milliseconds(150));
    WritePolicy(round == 3 ? "version: 1\ncallers: [oops\n"
                           : Policy(/*reader_health=*/round % 2 == 0));
    ASSERT_EQ(::kill(server_->pid(), SIGHUP), 0);
  }
  absl::SleepFor(absl::Milliseconds(300));
  stop = true;
  for (std::thread& thread : load) thread.join();

  EXPECT_GT(calls.load(), 100);
  EXPECT_THAT(failures, ::testing::IsEmpty()) << absl::StrJoin(failures, "\n");
  // The last policy (round 5) took Health away again; round 4 granted it.
  EXPECT_EQ(reader->Health().status().code(),
            absl::StatusCode::kPermissionDenied);
  WritePolicy(Policy(true));
  ASSERT_EQ(::kill(server_->pid(), SIGHUP), 0);
  absl::Status health;
  for (int i = 0; i < 100; ++i) {
    health = reader->Health().status();
    if (health.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(health.ok()) << health;
  // The bad file was logged, naming its line, and left the policy alone.
  const std::string log = ReadFileOrEmpty(server_->log_path());
  EXPECT_THAT(log, HasSubstr("policy.yaml:3: YAML syntax error"));
  EXPECT_THAT(log, HasSubstr("previous one stays in force"));
}

// A ConfigMap update sends no signal: sessiond sees the file change.
TEST_F(TenantsE2eTest, AChangedPolicyFileIsReloadedWithoutASignal) {
  std::unique_ptr<Client> reader = As("reader");
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->Health().status().code(),
            absl::StatusCode::kPermissionDenied);
  WritePolicy(Policy(/*reader_health=*/true));
  absl::Status health;
  for (int i = 0; i < 200; ++i) {  // the poll is every 2 s
    health = reader->Health().status();
    if (health.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(health.ok()) << health;

  WritePolicy("version: 1\ncallers: [oops\n");
  std::string log;
  for (int i = 0; i < 200; ++i) {
    log = ReadFileOrEmpty(server_->log_path());
    if (log.find("policy file changed: policy not reloaded") !=
        std::string::npos) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(log, HasSubstr("policy file changed: policy not reloaded"));
  EXPECT_TRUE(reader->Health().ok());  // the previous policy stays
}

TEST_F(TenantsE2eTest, ABadPolicyAtStartRefusesToStartNamingTheLine) {
  const std::string bad = dir_ + "/bad.yaml";
  {
    std::ofstream out(bad);
    out << Policy(false) << "  - name: alpha-app\n";
  }
  absl::StatusOr<int> code = SessiondProcess::RunToExit(
      {"--backend=memory", "--insecure_plaintext",
       "--tls_cert_file=" + dir_ + "/server.pem",
       "--tls_key_file=" + dir_ + "/server.key",
       "--tls_client_ca_file=" + dir_ + "/ca.pem", "--policy_file=" + bad},
      dir_ + "/bad.log", absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_NE(*code, 0);
  const std::string log = ReadFileOrEmpty(dir_ + "/bad.log");
  EXPECT_THAT(log, HasSubstr("bad.yaml:"));
  EXPECT_THAT(log, Not(HasSubstr("serving on")));
}

TEST_F(TenantsE2eTest, SaveNeverChangesTheUserAndCycleDoes) {
  std::unique_ptr<Client> alpha = As("alpha");
  ASSERT_NE(alpha, nullptr);
  absl::StatusOr<v1::SaveResponse> created = alpha->Create("alice", "cart");
  ASSERT_TRUE(created.ok());
  const std::string token = created->token();

  v1::SaveRequest takeover;
  takeover.set_token(token);
  takeover.set_user_id("admin");
  absl::Status refused = alpha->Save(takeover).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("Cycle"));

  // An update that leaves out user_id keeps the user.
  v1::SaveRequest update;
  update.set_token(token);
  update.set_data("cart 2");
  absl::StatusOr<v1::SaveResponse> updated = alpha->Save(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->session().user_id(), "alice");
  EXPECT_EQ(updated->session().data(), "cart 2");

  // update_mask leaves what it does not name.
  v1::SaveRequest partial;
  partial.set_token(token);
  (*partial.mutable_metadata())["ip"] = "203.0.113.7";
  partial.mutable_update_mask()->add_paths("metadata");
  updated = alpha->Save(partial);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->session().data(), "cart 2");
  EXPECT_EQ(updated->session().metadata().at("ip"), "203.0.113.7");

  // Cycle changes the user and the token in one step.
  absl::StatusOr<v1::CycleResponse> cycled = alpha->Cycle(token, "admin");
  ASSERT_TRUE(cycled.ok()) << cycled.status();
  EXPECT_NE(cycled->token(), token);
  EXPECT_EQ(cycled->session().user_id(), "admin");
  EXPECT_EQ(alpha->Load(token).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<v1::LoadResponse> loaded = alpha->Load(cycled->token());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->session().user_id(), "admin");
  EXPECT_EQ(loaded->session().data(), "cart 2");
}

}  // namespace
}  // namespace sessiond::testing
