// baseline_server: a bare gRPC C++ server for sessiond.v1.SessionService that
// does no work. Every call gets a canned response of the same shape as
// sessiond's (a session with a 1 KiB payload and a few metadata entries), so
// ghz against it measures the ceiling of gRPC itself on this machine.
//
// It uses the completion-queue API with one queue per thread, like sessiond.
// Usage: baseline_server --listen=127.0.0.1:50061 [--threads=N]
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "sessiond/v1/session.grpc.pb.h"

namespace sessiond::bench {
namespace {

using v1::SessionService;

class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Proceed(bool ok) = 0;
};

v1::Session CannedSession() {
  v1::Session session;
  session.set_id("AAAAAAAAAAAAAAAAAAAAAA");
  session.set_user_id("user-000001");
  session.set_data(std::string(1024, 'x'));
  (*session.mutable_metadata())["ip"] = "203.0.113.7";
  (*session.mutable_metadata())["user_agent"] =
      "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
  (*session.mutable_metadata())["device"] = "laptop";
  session.mutable_created_at()->set_seconds(1700000000);
  session.mutable_last_active_at()->set_seconds(1700000000);
  session.mutable_expires_at()->set_seconds(1700001800);
  session.set_version(1);
  session.mutable_idle_timeout()->set_seconds(1800);
  session.mutable_absolute_lifetime()->set_seconds(43200);
  return session;
}

struct Canned {
  v1::LoadResponse load;
  v1::SaveResponse save;
  v1::CycleResponse cycle;
  v1::DeleteResponse del;
  v1::ListForUserResponse list;
  v1::PruneResponse prune;
  v1::HealthResponse health;

  Canned() {
    *load.mutable_session() = CannedSession();
    *save.mutable_session() = CannedSession();
    *cycle.mutable_session() = CannedSession();
    cycle.set_token(std::string(43, 'T'));
    del.set_deleted(1);
    for (int i = 0; i < 5; ++i) *list.add_sessions() = CannedSession();
    health.set_serving(true);
    health.set_backend("none");
  }
};

template <typename Request, typename Response>
class Call final : public Tag {
 public:
  using RequestMethod = void (SessionService::AsyncService::*)(
      grpc::ServerContext*, Request*,
      grpc::ServerAsyncResponseWriter<Response>*, grpc::CompletionQueue*,
      grpc::ServerCompletionQueue*, void*);

  static void Arm(SessionService::AsyncService* service,
                  grpc::ServerCompletionQueue* cq, RequestMethod method,
                  const Response* response) {
    auto* call = new Call(service, cq, method, response);
    (service->*method)(&call->context_, &call->request_, &call->responder_, cq,
                       cq, call);
  }

  void Proceed(bool ok) override {
    if (done_ || !ok) {
      delete this;
      return;
    }
    Arm(service_, cq_, method_, response_);
    done_ = true;
    responder_.Finish(*response_, grpc::Status::OK, this);
  }

 private:
  Call(SessionService::AsyncService* service, grpc::ServerCompletionQueue* cq,
       RequestMethod method, const Response* response)
      : service_(service),
        cq_(cq),
        method_(method),
        response_(response),
        responder_(&context_) {}

  SessionService::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  RequestMethod method_;
  const Response* response_;
  grpc::ServerContext context_;
  Request request_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool done_ = false;
};

template <typename Request, typename Response>
void ArmSlots(SessionService::AsyncService* service,
              grpc::ServerCompletionQueue* cq,
              typename Call<Request, Response>::RequestMethod method,
              const Response* response) {
  for (int i = 0; i < 8; ++i) {
    Call<Request, Response>::Arm(service, cq, method, response);
  }
}

int Run(int argc, char** argv) {
  // As sessiond does (server/main.cc): no absl::Mutex deadlock detection.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string listen = "127.0.0.1:50061";
  int threads = 2 * static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--listen=")) {
      listen = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--threads=")) {
      if (!absl::SimpleAtoi(arg, &threads) || threads < 1) {
        std::cerr << "--threads: must be a positive integer\n";
        return 2;
      }
    } else {
      std::cerr << "usage: baseline_server [--listen=host:port] "
                   "[--threads=N]\n";
      return 2;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const Canned canned;
  SessionService::AsyncService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  for (int i = 0; i < threads; ++i) {
    queues.push_back(builder.AddCompletionQueue());
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "could not listen on " << listen << "\n";
    return 1;
  }
  using AS = SessionService::AsyncService;
  std::vector<std::thread> pollers;
  for (auto& cq : queues) {
    ArmSlots<v1::LoadRequest>(&service, cq.get(), &AS::RequestLoad,
                              &canned.load);
    ArmSlots<v1::SaveRequest>(&service, cq.get(), &AS::RequestSave,
                              &canned.save);
    ArmSlots<v1::CycleRequest>(&service, cq.get(), &AS::RequestCycle,
                               &canned.cycle);
    ArmSlots<v1::DeleteRequest>(&service, cq.get(), &AS::RequestDelete,
                                &canned.del);
    ArmSlots<v1::ListForUserRequest>(&service, cq.get(),
                                     &AS::RequestListForUser, &canned.list);
    ArmSlots<v1::PruneRequest>(&service, cq.get(), &AS::RequestPrune,
                               &canned.prune);
    ArmSlots<v1::HealthRequest>(&service, cq.get(), &AS::RequestHealth,
                                &canned.health);
    pollers.emplace_back([q = cq.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
    });
  }
  std::cerr << "baseline_server serving on " << listen << " (port " << port
            << "), " << threads << " threads" << std::endl;
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  // Stop accepting first; the pollers then drain every tag (re-arming after
  // shutdown fails with ok=false, which deletes the call).
  server->Shutdown(std::chrono::system_clock::now());
  for (auto& cq : queues) cq->Shutdown();
  for (std::thread& poller : pollers) poller.join();
  return 0;
}

}  // namespace
}  // namespace sessiond::bench

int main(int argc, char** argv) { return sessiond::bench::Run(argc, argv); }
