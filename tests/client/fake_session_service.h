// A scriptable sessiond.v1.SessionService for client tests, and a server that
// runs it on 127.0.0.1. It counts calls per RPC, records the last request of
// each, can fail the next N calls with a given status, and can be slow.
// Its answers are canned (see kFake* below); it stores nothing.
#ifndef SESSIOND_TESTS_CLIENT_FAKE_SESSION_SERVICE_H_
#define SESSIOND_TESTS_CLIENT_FAKE_SESSION_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/retry.h"
#include "grpcpp/grpcpp.h"
#include "sessiond/v1/session.grpc.pb.h"

namespace sessiond {

inline constexpr char kFakeNewToken[] = "NEWTOKEN-created-by-fake-server";
inline constexpr char kFakeCycledToken[] = "CYCLEDTOKEN-by-fake-server";
inline constexpr char kFakeData[] = "SECRET-DATA";

class FakeSessionService final : public v1::SessionService::Service {
 public:
  // The next `n` calls, of any RPC, fail with `status`.
  void FailNext(int n, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    failures_left_ = n;
    failure_ = std::move(status);
  }
  void FailAlways(grpc::Status status) { FailNext(1 << 30, std::move(status)); }
  // Every call first waits this long, or until the client gives up.
  void set_delay(absl::Duration delay) {
    absl::MutexLock lock(&mu_);
    delay_ = delay;
  }
  void set_serving(bool serving) {
    absl::MutexLock lock(&mu_);
    serving_ = serving;
  }

  int calls(Rpc rpc) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(rpc);
    return it == calls_.end() ? 0 : it->second;
  }
  int total_calls() const {
    absl::MutexLock lock(&mu_);
    int total = 0;
    for (const auto& [rpc, n] : calls_) total += n;
    return total;
  }
  // The last request of `rpc`, or an empty one.
  template <typename Request>
  Request last(Rpc rpc) const {
    absl::MutexLock lock(&mu_);
    Request request;
    auto it = last_.find(rpc);
    if (it != last_.end()) request.ParseFromString(it->second);
    return request;
  }

  static v1::Session FakeSession(const std::string& id) {
    v1::Session s;
    s.set_id(id);
    s.set_user_id("alice");
    s.set_data(kFakeData);
    (*s.mutable_metadata())["ip"] = "192.0.2.7";
    (*s.mutable_metadata())["device"] = "laptop";
    s.mutable_created_at()->set_seconds(1700000000);
    s.mutable_last_active_at()->set_seconds(1700000600);
    s.mutable_expires_at()->set_seconds(1700002400);
    s.set_version(3);
    s.mutable_idle_timeout()->set_seconds(1800);
    s.mutable_absolute_lifetime()->set_seconds(86400);
    return s;
  }

  grpc::Status Load(grpc::ServerContext* context,
                    const v1::LoadRequest* request,
                    v1::LoadResponse* response) override {
    *response->mutable_session() = FakeSession("id-loaded");
    return Handle(Rpc::kLoad, context, *request);
  }
  grpc::Status Save(grpc::ServerContext* context,
                    const v1::SaveRequest* request,
                    v1::SaveResponse* response) override {
    *response->mutable_session() = FakeSession("id-saved");
    if (request->token().empty()) {
      response->set_token(kFakeNewToken);
      response->set_created(true);
    }
    return Handle(Rpc::kSave, context, *request);
  }
  grpc::Status Cycle(grpc::ServerContext* context,
                     const v1::CycleRequest* request,
                     v1::CycleResponse* response) override {
    *response->mutable_session() = FakeSession("id-cycled");
    response->set_token(kFakeCycledToken);
    return Handle(Rpc::kCycle, context, *request);
  }
  grpc::Status Delete(grpc::ServerContext* context,
                      const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override {
    response->set_deleted(2);
    return Handle(Rpc::kDelete, context, *request);
  }
  grpc::Status ListForUser(grpc::ServerContext* context,
                           const v1::ListForUserRequest* request,
                           v1::ListForUserResponse* response) override {
    *response->add_sessions() = FakeSession("id-listed-1");
    *response->add_sessions() = FakeSession("id-listed-2");
    response->set_next_page_token("PAGE-2");
    return Handle(Rpc::kListForUser, context, *request);
  }
  grpc::Status Prune(grpc::ServerContext* context,
                     const v1::PruneRequest* request,
                     v1::PruneResponse* response) override {
    response->set_pruned(5);
    return Handle(Rpc::kPrune, context, *request);
  }
  grpc::Status Health(grpc::ServerContext* context,
                      const v1::HealthRequest* request,
                      v1::HealthResponse* response) override {
    bool serving;
    {
      absl::MutexLock lock(&mu_);
      serving = serving_;
    }
    response->set_serving(serving);
    response->set_backend("fake");
    response->mutable_latency()->set_nanos(1000000);
    if (!serving) response->set_message("backend down");
    return Handle(Rpc::kHealth, context, *request);
  }

 private:
  template <typename Request>
  grpc::Status Handle(Rpc rpc, grpc::ServerContext* context,
                      const Request& request) {
    grpc::Status status = grpc::Status::OK;
    absl::Duration delay;
    {
      absl::MutexLock lock(&mu_);
      ++calls_[rpc];
      last_[rpc] = request.SerializeAsString();
      if (failures_left_ > 0) {
        --failures_left_;
        status = failure_;
      }
      delay = delay_;
    }
    const absl::Time until = absl::Now() + delay;
    while (absl::Now() < until && !context->IsCancelled()) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return status;
  }

  mutable absl::Mutex mu_;
  std::map<Rpc, int> calls_;
  std::map<Rpc, std::string> last_;
  int failures_left_ = 0;
  grpc::Status failure_;
  absl::Duration delay_;
  bool serving_ = true;
};

class FakeServer {
 public:
  FakeServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

  bool started() const { return server_ != nullptr && port_ > 0; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::shared_ptr<grpc::Channel> InProcessChannel() {
    return server_->InProcessChannel(grpc::ChannelArguments());
  }
  FakeSessionService& service() { return service_; }

 private:
  FakeSessionService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace sessiond

#endif  // SESSIOND_TESTS_CLIENT_FAKE_SESSION_SERVICE_H_
