// sessionctl, run in-process against the fake service: output, exit codes,
// address selection, and that no token is printed except the created one.
#include <sstream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "gtest/gtest.h"
#include "tests/client/fake_session_service.h"

namespace sessiond {
namespace {

constexpr char kToken[] = "TOKEN-the-operator-passed-in-43-characters";

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCli(std::vector<std::string> args,
              std::optional<std::string> env_addr = std::nullopt,
              const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  const int code = RunSessionctl(args, env_addr, in, out, err);
  return {code, out.str(), err.str()};
}

class SessionctlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.started()); }

  // Runs against the fake server.
  Result RunFake(std::vector<std::string> args,
                 const std::string& stdin_text = "") {
    args.insert(args.begin(), "--addr=" + server_.address());
    return RunCli(args, std::nullopt, stdin_text);
  }
  FakeSessionService& fake() { return server_.service(); }

  FakeServer server_;
};

TEST(SessionctlUsageTest, HelpGoesToStdout) {
  for (const char* flag : {"--help", "-h"}) {
    Result r = RunCli({flag});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_NE(r.out.find("usage: sessionctl"), std::string::npos);
    EXPECT_EQ(r.err, "");
  }
}

TEST(SessionctlUsageTest, UsageErrorsExitTwoWithoutCallingAnything) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate"},
      {"--bogus", "health"},
      {"health", "extra"},
      {"load"},
      {"load", "a", "b"},
      {"load", "t", "--page-size", "3"},
      {"load", "t", "--touch=yes"},
      {"list"},
      {"list", "u", "--page-size", "many"},
      {"list", "u", "--page-size", "-1"},
      {"list", "u", "--page-token"},
      {"delete"},
      {"delete", "--token", "t", "--id", "i"},
      {"delete", "--id", "i", "--except-id", "j"},
      {"create", "--meta", "novalue"},
      {"create", "--meta", "=v"},
      {"create", "--user", "a", "--user", "b"},
      {"--deadline", "soon", "health"},
      {"--deadline", "0s", "health"},
      {"--addr=", "health"},
      {"load", "-"},  // "-" reads stdin, which is empty.
  };
  for (const auto& args : bad) {
    // 127.0.0.1:1 refuses: a usage error must be found before any RPC.
    Result r = RunCli(args, "127.0.0.1:1");
    EXPECT_EQ(r.code, kExitUsage) << ::testing::PrintToString(args);
    EXPECT_EQ(r.out, "") << ::testing::PrintToString(args);
    EXPECT_NE(r.err.find("sessionctl: "), std::string::npos);
  }
}

TEST(SessionctlUsageTest, UsageErrorsDoNotEchoFlagValues) {
  Result r = RunCli({"--tokn=" + std::string(kToken), "health"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_EQ(r.err.find(kToken), std::string::npos) << r.err;
}

TEST_F(SessionctlTest, CreatePrintsTheNewToken) {
  Result r = RunFake({"create", "--user", "bob", "--data", "hello", "--meta",
                      "ip=192.0.2.1", "--meta", "ua=curl/8"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("token: " + std::string(kFakeNewToken) + "\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("id: id-saved\n"), std::string::npos) << r.out;
  auto request = fake().last<v1::SaveRequest>(Rpc::kSave);
  EXPECT_EQ(request.token(), "");
  EXPECT_EQ(request.user_id(), "bob");
  EXPECT_EQ(request.data(), "hello");
  EXPECT_EQ(request.metadata().at("ip"), "192.0.2.1");
  EXPECT_EQ(request.metadata().at("ua"), "curl/8");
}

TEST_F(SessionctlTest, LoadShowsTheSessionButNoTokenAndNoData) {
  Result r = RunFake({"load", kToken, "--touch"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out.find(kToken), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(kFakeData), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("token"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("id: id-loaded\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("user_id: alice\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("version: 3\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("created_at: 2023-11-14T22:13:20Z\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("idle_timeout: 30m\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("data: 11 bytes\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("metadata.device: laptop\nmetadata.ip: 192.0.2.7\n"),
            std::string::npos)
      << r.out;
  auto request = fake().last<v1::LoadRequest>(Rpc::kLoad);
  EXPECT_EQ(request.token(), kToken);
  EXPECT_TRUE(request.touch());
}

TEST_F(SessionctlTest, TokenFromStdin) {
  Result r = RunFake({"load", "-"}, std::string(kToken) + "\n");
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake().last<v1::LoadRequest>(Rpc::kLoad).token(), kToken);
  EXPECT_FALSE(fake().last<v1::LoadRequest>(Rpc::kLoad).touch());

  r = RunFake({"delete", "--token", "-"}, std::string(kToken) + "\n");
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake().last<v1::DeleteRequest>(Rpc::kDelete).token(), kToken);
}

TEST_F(SessionctlTest, ErrorsAreCodeAndMessageWithTheTokenMasked) {
  fake().FailNext(1, grpc::Status(grpc::StatusCode::NOT_FOUND, "no session"));
  Result r = RunFake({"load", kToken});
  EXPECT_EQ(r.code, kExitRpcError);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: NOT_FOUND: no session\n");

  fake().FailNext(1, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "bad token " + std::string(kToken)));
  r = RunFake({"delete", "--token", kToken});
  EXPECT_EQ(r.code, kExitRpcError);
  EXPECT_EQ(r.err, "error: INVALID_ARGUMENT: bad token <redacted>\n");
}

TEST_F(SessionctlTest, List) {
  Result r = RunFake({"list", "erin", "--page-size", "2", "--page-token=P1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("2 session(s)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("id: id-listed-1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("id: id-listed-2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("next_page_token: PAGE-2\n"), std::string::npos);
  EXPECT_EQ(r.out.find(kFakeData), std::string::npos) << r.out;
  auto request = fake().last<v1::ListForUserRequest>(Rpc::kListForUser);
  EXPECT_EQ(request.user_id(), "erin");
  EXPECT_EQ(request.page_size(), 2);
  EXPECT_EQ(request.page_token(), "P1");
}

TEST_F(SessionctlTest, DeleteTargets) {
  Result r = RunFake({"delete", "--id", "id-9"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "deleted: 2\n");
  EXPECT_EQ(fake().last<v1::DeleteRequest>(Rpc::kDelete).id(), "id-9");

  r = RunFake({"delete", "--user", "dave", "--except-id", "id-keep"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  auto request = fake().last<v1::DeleteRequest>(Rpc::kDelete);
  EXPECT_EQ(request.user_id(), "dave");
  EXPECT_EQ(request.except_id(), "id-keep");

  r = RunFake({"delete", "--token", kToken});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "deleted: 2\n");
  EXPECT_EQ(fake().last<v1::DeleteRequest>(Rpc::kDelete).token(), kToken);
}

TEST_F(SessionctlTest, PruneAndHealth) {
  Result r = RunFake({"prune"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "pruned: 5\n");

  r = RunFake({"health"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "serving: yes\nbackend: fake\nlatency: 1ms\n");

  fake().set_serving(false);
  r = RunFake({"health"});
  EXPECT_EQ(r.code, kExitRpcError);
  EXPECT_NE(r.out.find("serving: no\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("message: backend down\n"), std::string::npos);
}

TEST_F(SessionctlTest, AddressFromFlagThenEnvThenDefault) {
  // $SESSIOND_ADDR is used when there is no --addr.
  Result r = RunCli({"prune"}, server_.address());
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake().calls(Rpc::kPrune), 1);

  // --addr wins over $SESSIOND_ADDR, wherever it appears.
  r = RunCli({"prune", "--addr", "127.0.0.1:1"}, server_.address());
  EXPECT_EQ(r.code, kExitRpcError);
  EXPECT_EQ(r.err.rfind("error: UNAVAILABLE: ", 0), 0u) << r.err;
  EXPECT_EQ(fake().calls(Rpc::kPrune), 1);

  r = RunCli({"--addr", server_.address(), "prune"}, "127.0.0.1:1");
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake().calls(Rpc::kPrune), 2);
}

TEST_F(SessionctlTest, DeadlineFlagBoundsTheCommand) {
  fake().set_delay(absl::Seconds(10));
  const absl::Time start = absl::Now();
  Result r = RunFake({"health", "--deadline", "200ms"});
  EXPECT_EQ(r.code, kExitRpcError);
  EXPECT_EQ(r.err.rfind("error: DEADLINE_EXCEEDED: ", 0), 0u) << r.err;
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(SessionctlTest, NoTokenInAnyOutputButCreate) {
  const std::vector<std::vector<std::string>> commands = {
      {"load", kToken},
      {"load", kToken, "--touch"},
      {"delete", "--token", kToken},
      {"list", "alice"},
      {"prune"},
      {"health"},
  };
  for (const auto& args : commands) {
    Result r = RunFake(args);
    EXPECT_EQ(r.code, kExitOk) << r.err;
    for (const std::string& text : {r.out, r.err}) {
      EXPECT_EQ(text.find(kToken), std::string::npos) << text;
      EXPECT_EQ(text.find(kFakeNewToken), std::string::npos) << text;
      EXPECT_EQ(text.find(kFakeCycledToken), std::string::npos) << text;
    }
  }
}

}  // namespace
}  // namespace sessiond
