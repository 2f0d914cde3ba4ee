// sessiond::Client without the real server: status mapping, options, the
// requests it builds, its retry behaviour against a scriptable fake service,
// and its deadlines against addresses that refuse or never answer.
#include "client/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_session_service.h"

namespace sessiond {
namespace {

// --- Status mapping and options --------------------------------------------

TEST(FromGrpcStatusTest, KeepsCodeAndMessage) {
  for (int c = 1; c <= 16; ++c) {
    const grpc::Status in(static_cast<grpc::StatusCode>(c),
                          "msg " + std::to_string(c));
    const absl::Status out = FromGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(out.code()), c);
    EXPECT_EQ(out.message(), "msg " + std::to_string(c));
  }
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "gone")),
            absl::NotFoundError("gone"));
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")),
            absl::UnavailableError("down"));
}

TEST(FromGrpcStatusTest, OkAndOutOfRangeCodes) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  // A code gRPC does not define, but one the enum can hold (a value past
  // 31 would be undefined behaviour to form at all).
  const absl::Status odd =
      FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "odd"));
  EXPECT_EQ(odd, absl::UnknownError("odd"));
}

TEST(ValidateOptionsTest, DefaultsAreValidAndAsDocumented) {
  ClientOptions options;
  EXPECT_TRUE(ValidateOptions(options).ok());
  EXPECT_EQ(options.deadline, absl::Seconds(2));
  EXPECT_EQ(options.max_attempts, 3);
  EXPECT_EQ(options.initial_backoff, absl::Milliseconds(50));
}

TEST(ValidateOptionsTest, RejectsBadFields) {
  std::vector<ClientOptions> bad(6);
  bad[0].deadline = absl::ZeroDuration();
  bad[1].deadline = absl::Seconds(-1);
  bad[2].deadline = absl::InfiniteDuration();
  bad[3].max_attempts = 0;
  bad[4].initial_backoff = absl::Milliseconds(-1);
  bad[5].initial_backoff = absl::InfiniteDuration();
  for (const ClientOptions& options : bad) {
    EXPECT_EQ(ValidateOptions(options).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ValidateOptionsTest, ApiKeyIsPrintableWithoutSpacesAndNeverEchoed) {
  ClientOptions options;
  options.api_key = "k3y_0f-printable.ASCII~";
  EXPECT_TRUE(ValidateOptions(options).ok());
  for (const char* bad : {"two words", "tab\there", "new\nline", "\x7f"}) {
    options.api_key = bad;
    absl::Status status = ValidateOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(std::string(status.message()).find(bad), std::string::npos);
  }
}

TEST(ConnectTest, RejectsEmptyTargetAndBadOptions) {
  EXPECT_EQ(Client::Connect("").status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions options;
  options.max_attempts = 0;
  EXPECT_EQ(Client::Connect("127.0.0.1:1", options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Client::Connect("127.0.0.1:1").ok());
}

TEST(ClientTest, NullChannelOrBadOptionsFailEveryCall) {
  Client null_channel(nullptr);
  EXPECT_EQ(null_channel.Health().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(null_channel.Create().status().code(),
            absl::StatusCode::kInvalidArgument);

  FakeServer server;
  ClientOptions options;
  options.deadline = absl::ZeroDuration();
  Client bad_options(server.InProcessChannel(), options);
  EXPECT_EQ(bad_options.Load("t").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server.service().total_calls(), 0);
}

// --- Requests and responses against the fake ---------------------------------

class ClientFakeTest : public ::testing::Test {
 protected:
  ClientFakeTest() : client_(server_.InProcessChannel(), FastOptions()) {}

  static ClientOptions FastOptions() {
    ClientOptions options;
    options.deadline = absl::Seconds(5);
    options.initial_backoff = absl::Milliseconds(1);
    return options;
  }
  FakeSessionService& fake() { return server_.service(); }

  FakeServer server_;
  Client client_;
};

TEST_F(ClientFakeTest, LoadSendsTokenAndTouch) {
  absl::StatusOr<v1::LoadResponse> r = client_.Load("tok-1", /*touch=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->session().id(), "id-loaded");
  auto request = fake().last<v1::LoadRequest>(Rpc::kLoad);
  EXPECT_EQ(request.token(), "tok-1");
  EXPECT_TRUE(request.touch());

  ASSERT_TRUE(client_.Load("tok-2").ok());
  EXPECT_FALSE(fake().last<v1::LoadRequest>(Rpc::kLoad).touch());
}

TEST_F(ClientFakeTest, CreateSendsNoToken) {
  absl::StatusOr<v1::SaveResponse> r =
      client_.Create("bob", "payload", {{"ip", "192.0.2.1"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->created());
  EXPECT_EQ(r->token(), kFakeNewToken);
  auto request = fake().last<v1::SaveRequest>(Rpc::kSave);
  EXPECT_EQ(request.token(), "");
  EXPECT_EQ(request.user_id(), "bob");
  EXPECT_EQ(request.data(), "payload");
  EXPECT_EQ(request.metadata().at("ip"), "192.0.2.1");
  EXPECT_FALSE(request.has_expected_version());
}

TEST_F(ClientFakeTest, SavePassesTheRequestThrough) {
  v1::SaveRequest in;
  in.set_token("tok");
  in.set_expected_version(7);
  ASSERT_TRUE(client_.Save(in).ok());
  auto request = fake().last<v1::SaveRequest>(Rpc::kSave);
  EXPECT_EQ(request.token(), "tok");
  EXPECT_EQ(request.expected_version(), 7);
}

TEST_F(ClientFakeTest, CycleSetsUserIdOnlyWhenGiven) {
  absl::StatusOr<v1::CycleResponse> r = client_.Cycle("tok");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token(), kFakeCycledToken);
  EXPECT_FALSE(fake().last<v1::CycleRequest>(Rpc::kCycle).has_user_id());

  ASSERT_TRUE(client_.Cycle("tok", "carol").ok());
  auto request = fake().last<v1::CycleRequest>(Rpc::kCycle);
  EXPECT_EQ(request.token(), "tok");
  ASSERT_TRUE(request.has_user_id());
  EXPECT_EQ(request.user_id(), "carol");

  // An empty user id is still "given": it clears the user.
  ASSERT_TRUE(client_.Cycle("tok", "").ok());
  EXPECT_TRUE(fake().last<v1::CycleRequest>(Rpc::kCycle).has_user_id());
}

TEST_F(ClientFakeTest, DeleteTargets) {
  absl::StatusOr<v1::DeleteResponse> r = client_.DeleteByToken("tok");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deleted(), 2);
  auto request = fake().last<v1::DeleteRequest>(Rpc::kDelete);
  EXPECT_EQ(request.target_case(), v1::DeleteRequest::kToken);
  EXPECT_EQ(request.token(), "tok");

  ASSERT_TRUE(client_.DeleteById("id-9").ok());
  request = fake().last<v1::DeleteRequest>(Rpc::kDelete);
  EXPECT_EQ(request.target_case(), v1::DeleteRequest::kId);
  EXPECT_EQ(request.id(), "id-9");

  ASSERT_TRUE(client_.DeleteForUser("dave", "id-keep").ok());
  request = fake().last<v1::DeleteRequest>(Rpc::kDelete);
  EXPECT_EQ(request.target_case(), v1::DeleteRequest::kUserId);
  EXPECT_EQ(request.user_id(), "dave");
  EXPECT_EQ(request.except_id(), "id-keep");
}

TEST_F(ClientFakeTest, ListPruneHealth) {
  absl::StatusOr<v1::ListForUserResponse> list =
      client_.ListForUser("erin", 10, "PAGE-1");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->sessions_size(), 2);
  EXPECT_EQ(list->next_page_token(), "PAGE-2");
  auto request = fake().last<v1::ListForUserRequest>(Rpc::kListForUser);
  EXPECT_EQ(request.user_id(), "erin");
  EXPECT_EQ(request.page_size(), 10);
  EXPECT_EQ(request.page_token(), "PAGE-1");

  absl::StatusOr<v1::PruneResponse> prune = client_.Prune();
  ASSERT_TRUE(prune.ok()) << prune.status();
  EXPECT_EQ(prune->pruned(), 5);

  absl::StatusOr<v1::HealthResponse> health = client_.Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->serving());
  EXPECT_EQ(health->backend(), "fake");
}

TEST_F(ClientFakeTest, ServerErrorsKeepCodeAndMessage) {
  fake().FailNext(1, grpc::Status(grpc::StatusCode::NOT_FOUND, "no session"));
  EXPECT_EQ(client_.Load("tok").status(), absl::NotFoundError("no session"));
  fake().FailNext(1, grpc::Status(grpc::StatusCode::ABORTED, "version"));
  EXPECT_EQ(client_.Save(v1::SaveRequest()).status(),
            absl::AbortedError("version"));
}

// --- Retries
// ------------------------------------------------------------------

struct RetryCase {
  const char* name;
  Rpc rpc;
  std::function<absl::Status(const Client&)> call;
  int attempts;  // With max_attempts = 3 and every attempt UNAVAILABLE.
};

std::vector<RetryCase> RetryCases() {
  return {
      {"Load", Rpc::kLoad, [](const Client& c) { return c.Load("t").status(); },
       3},
      {"LoadTouch", Rpc::kLoad,
       [](const Client& c) { return c.Load("t", true).status(); }, 3},
      {"ListForUser", Rpc::kListForUser,
       [](const Client& c) { return c.ListForUser("u").status(); }, 3},
      {"DeleteByToken", Rpc::kDelete,
       [](const Client& c) { return c.DeleteByToken("t").status(); }, 3},
      {"DeleteById", Rpc::kDelete,
       [](const Client& c) { return c.DeleteById("i").status(); }, 3},
      {"DeleteForUser", Rpc::kDelete,
       [](const Client& c) { return c.DeleteForUser("u", "i").status(); }, 3},
      {"Prune", Rpc::kPrune, [](const Client& c) { return c.Prune().status(); },
       3},
      {"Health", Rpc::kHealth,
       [](const Client& c) { return c.Health().status(); }, 3},
      {"Create", Rpc::kSave,
       [](const Client& c) { return c.Create().status(); }, 1},
      {"SaveUpdate", Rpc::kSave,
       [](const Client& c) {
         v1::SaveRequest r;
         r.set_token("t");
         return c.Save(r).status();
       },
       1},
      {"Cycle", Rpc::kCycle,
       [](const Client& c) { return c.Cycle("t", "u").status(); }, 1},
  };
}

TEST_F(ClientFakeTest, RetriesOnUnavailableOnlyWhereIdempotent) {
  for (const RetryCase& c : RetryCases()) {
    FakeServer server;
    server.service().FailAlways(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "backend down"));
    Client client(server.InProcessChannel(), FastOptions());
    EXPECT_EQ(c.call(client), absl::UnavailableError("backend down")) << c.name;
    EXPECT_EQ(server.service().calls(c.rpc), c.attempts) << c.name;
  }
}

TEST_F(ClientFakeTest, OtherErrorsAreNotRetried) {
  for (grpc::StatusCode code :
       {grpc::StatusCode::INTERNAL, grpc::StatusCode::UNKNOWN,
        grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::ABORTED,
        grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::NOT_FOUND,
        grpc::StatusCode::INVALID_ARGUMENT}) {
    const int before = fake().calls(Rpc::kLoad);
    fake().FailAlways(grpc::Status(code, "nope"));
    EXPECT_EQ(static_cast<int>(client_.Load("t").status().code()),
              static_cast<int>(code));
    EXPECT_EQ(fake().calls(Rpc::kLoad) - before, 1) << code;
  }
}

TEST_F(ClientFakeTest, RecoversFromTransientUnavailable) {
  fake().FailNext(2, grpc::Status(grpc::StatusCode::UNAVAILABLE, "blip"));
  absl::StatusOr<v1::LoadResponse> r = client_.Load("t");
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fake().calls(Rpc::kLoad), 3);
}

TEST(ClientRetryTest, MaxAttemptsOneDisablesRetries) {
  FakeServer server;
  server.service().FailAlways(grpc::Status(grpc::StatusCode::UNAVAILABLE, ""));
  ClientOptions options;
  options.max_attempts = 1;
  Client client(server.InProcessChannel(), options);
  EXPECT_EQ(client.Health().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.service().calls(Rpc::kHealth), 1);
}

TEST(ClientRetryTest, BacksOffExponentially) {
  FakeServer server;
  server.service().FailAlways(grpc::Status(grpc::StatusCode::UNAVAILABLE, ""));
  ClientOptions options;
  options.deadline = absl::Seconds(10);
  options.initial_backoff = absl::Milliseconds(100);
  Client client(server.InProcessChannel(), options);
  const absl::Time start = absl::Now();
  EXPECT_EQ(client.Prune().status().code(), absl::StatusCode::kUnavailable);
  // 100ms after the first attempt, 200ms after the second.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(server.service().calls(Rpc::kPrune), 3);
}

TEST(ClientRetryTest, OneDeadlineBoundsAllAttempts) {
  FakeServer server;
  server.service().FailAlways(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  ClientOptions options;
  options.deadline = absl::Seconds(1);
  options.max_attempts = 100;
  options.initial_backoff = absl::Milliseconds(200);
  Client client(server.InProcessChannel(), options);
  const absl::Time start = absl::Now();
  // Attempts at ~0, 200 and 600ms; the next wait (800ms) would pass the
  // deadline, so the last UNAVAILABLE comes back at once.
  EXPECT_EQ(client.Load("t").status(), absl::UnavailableError("down"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(server.service().calls(Rpc::kLoad), 3);
}

// --- Deadlines against unhelpful peers ---------------------------------------

// A loopback port; with `listen`, connections queue but are never served.
class LoopbackPort {
 public:
  explicit LoopbackPort(bool listen) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        (listen && ::listen(fd_, 16) != 0)) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    if (!listen) Close();  // Nothing listens there now.
  }
  ~LoopbackPort() { Close(); }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  int port_ = 0;
};

TEST(ClientDeadlineTest, NothingListeningIsUnavailableWithinTheDeadline) {
  LoopbackPort closed(/*listen=*/false);
  ASSERT_GT(closed.port(), 0);
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(closed.address());  // Default options: 2s, 3 attempts.
  ASSERT_TRUE(client.ok()) << client.status();

  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Health().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->Load("t", true).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->Create().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, 3 * absl::Seconds(2) + absl::Seconds(1));
}

TEST(ClientDeadlineTest, PortOneIsUnavailable) {
  ClientOptions options;
  options.deadline = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect("127.0.0.1:1", options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Prune().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500) + absl::Seconds(1));
}

TEST(ClientDeadlineTest, PeerThatNeverAnswersHitsTheDeadline) {
  // The TCP handshake completes but no HTTP/2 ever comes back: without a
  // deadline the call would wait for gRPC's 20s connect timeout or longer.
  LoopbackPort blackhole(/*listen=*/true);
  ASSERT_GT(blackhole.port(), 0);
  ClientOptions options;
  options.deadline = absl::Milliseconds(300);
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(blackhole.address(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Health().status().code(),
            absl::StatusCode::kDeadlineExceeded);
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(elapsed, absl::Milliseconds(250));
  EXPECT_LT(elapsed, absl::Milliseconds(300) + absl::Seconds(1));
}

TEST(ClientDeadlineTest, SlowServerHitsTheDeadlineAndIsNotRetried) {
  FakeServer server;
  server.service().set_delay(absl::Seconds(10));
  ClientOptions options;
  options.deadline = absl::Milliseconds(200);
  Client client(server.InProcessChannel(), options);
  const absl::Time start = absl::Now();
  EXPECT_EQ(client.Load("t").status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(200) + absl::Seconds(1));
  EXPECT_EQ(server.service().calls(Rpc::kLoad), 1);
}

}  // namespace
}  // namespace sessiond
