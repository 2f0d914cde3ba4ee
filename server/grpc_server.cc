#include "server/grpc_server.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/log.h"

namespace sessiond {
namespace {

using v1::SessionService;

// Calls are waiting for each RPC method on each queue at any time, so that a
// burst of arrivals does not wait for a slot to be re-armed.
constexpr int kSlotsPerMethod = 8;
constexpr char kServiceName[] = "sessiond.v1.SessionService";

std::shared_ptr<grpc::ServerCredentials> Credentials(
    const GrpcServerOptions& options) {
  if (options.tls_cert_chain_pem.empty()) {
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl(
      options.tls_client_ca_pem.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = options.tls_client_ca_pem;
  ssl.pem_key_cert_pairs.push_back(
      {options.tls_private_key_pem, options.tls_cert_chain_pem});
  return grpc::SslServerCredentials(ssl);
}

// Turns server reflection on or off for the one ServerBuilder it is set on.
// (Linking gRPC's reflection library also registers it for every builder in
// the process, through a static initializer; this option overrides that.)
class ReflectionOption : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    const std::string name =
        grpc::reflection::ProtoServerReflectionPlugin().name();
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [&name](const auto& p) { return p->name() == name; }),
        plugins->end());
    if (enabled_) {
      plugins->push_back(
          std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
    }
  }

 private:
  const bool enabled_;
};

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// What a completion-queue tag points at.
class Tag {
 public:
  virtual ~Tag() = default;
  virtual void Proceed(bool ok) = 0;
};

// One unary call slot: waits for a request of one method, runs the handler,
// sends the response, and deletes itself. Before running the handler it arms
// a fresh slot for the next request.
template <typename Request, typename Response>
class UnaryCall final : public Tag {
 public:
  using RequestMethod = void (SessionService::AsyncService::*)(
      grpc::ServerContext*, Request*,
      grpc::ServerAsyncResponseWriter<Response>*, grpc::CompletionQueue*,
      grpc::ServerCompletionQueue*, void*);
  using HandleMethod = absl::StatusOr<Response> (SessionHandler::*)(
      const TenantScope&, const Request&);

  struct Method {
    GrpcServer* server;
    SessionService::AsyncService* service;
    grpc::ServerCompletionQueue* cq;
    SessionHandler* handler;
    const Access* access;
    RequestMethod request;
    HandleMethod handle;
  };

  static void Arm(const Method& method) {
    method.server->ArmUnlessShuttingDown([&method] {
      auto* call = new UnaryCall(method);
      (method.service->*method.request)(&call->context_, &call->request_,
                                        &call->responder_, method.cq, method.cq,
                                        call);
    });
  }

  void Proceed(bool ok) override {
    if (finishing_ || !ok) {
      // The response went out (or the call died), or the server is shutting
      // down and this slot will never receive a request.
      delete this;
      return;
    }
    Arm(method_);
    absl::StatusOr<Response> response = Handle();
    finishing_ = true;
    if (response.ok()) {
      responder_.Finish(*response, grpc::Status::OK, this);
    } else {
      responder_.FinishWithError(ToGrpcStatus(response.status()), this);
    }
  }

 private:
  explicit UnaryCall(const Method& method)
      : method_(method), responder_(&context_) {}

  absl::StatusOr<Response> Handle() {
    // A call that waited for a thread past its caller's deadline is not
    // started: the caller has given up, and must not find it done later.
    if (context_.deadline() <= std::chrono::system_clock::now()) {
      return absl::DeadlineExceededError(
          "the call's deadline passed before it started; nothing was done");
    }
    absl::StatusOr<Access::Admission> admitted =
        method_.access->Admit(context_, PermissionFor(request_));
    if (!admitted.ok()) return admitted.status();
    return (method_.handler->*method_.handle)(admitted->scope(), request_);
  }

  const Method method_;
  grpc::ServerContext context_;
  Request request_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool finishing_ = false;
};

template <typename Request, typename Response>
void ArmMethod(GrpcServer* server, SessionService::AsyncService* service,
               grpc::ServerCompletionQueue* cq, SessionHandler* handler,
               const Access* access,
               typename UnaryCall<Request, Response>::RequestMethod request,
               typename UnaryCall<Request, Response>::HandleMethod handle) {
  const typename UnaryCall<Request, Response>::Method method{
      server, service, cq, handler, access, request, handle};
  for (int i = 0; i < kSlotsPerMethod; ++i) {
    UnaryCall<Request, Response>::Arm(method);
  }
}

}  // namespace

void GrpcServer::ArmAll(grpc::ServerCompletionQueue* cq) {
  using AS = SessionService::AsyncService;
  ArmMethod<v1::LoadRequest, v1::LoadResponse>(this, &service_, cq, handler_,
                                               access_, &AS::RequestLoad,
                                               &SessionHandler::Load);
  ArmMethod<v1::SaveRequest, v1::SaveResponse>(this, &service_, cq, handler_,
                                               access_, &AS::RequestSave,
                                               &SessionHandler::Save);
  ArmMethod<v1::CycleRequest, v1::CycleResponse>(this, &service_, cq, handler_,
                                                 access_, &AS::RequestCycle,
                                                 &SessionHandler::Cycle);
  ArmMethod<v1::DeleteRequest, v1::DeleteResponse>(
      this, &service_, cq, handler_, access_, &AS::RequestDelete,
      &SessionHandler::Delete);
  ArmMethod<v1::ListForUserRequest, v1::ListForUserResponse>(
      this, &service_, cq, handler_, access_, &AS::RequestListForUser,
      &SessionHandler::ListForUser);
  ArmMethod<v1::PruneRequest, v1::PruneResponse>(this, &service_, cq, handler_,
                                                 access_, &AS::RequestPrune,
                                                 &SessionHandler::Prune);
  ArmMethod<v1::HealthRequest, v1::HealthResponse>(
      this, &service_, cq, handler_, access_, &AS::RequestHealth,
      &SessionHandler::Health);
}

void GrpcServer::Poll(grpc::ServerCompletionQueue* cq) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    static_cast<Tag*>(tag)->Proceed(ok);
  }
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    SessionHandler* handler, const Access* access,
    const GrpcServerOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError("threads: must not be negative");
  }
  const int cores =
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads = options.threads > 0 ? options.threads : 2 * cores;
  const int queues = std::min(threads, cores);
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->handler_ = handler;
  server->access_ = access;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // Reflection here, if wanted, and never on the plaintext health listener.
  builder.SetOption(std::make_unique<ReflectionOption>(options.reflection));
  if (options.tls_cert_chain_pem.empty() !=
      options.tls_private_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate chain and its private key");
  }
  if (!options.tls_client_ca_pem.empty() &&
      options.tls_cert_chain_pem.empty()) {
    return absl::InvalidArgumentError(
        "a client CA (mutual TLS) needs a server certificate and key too");
  }
  builder.AddListeningPort(options.listen_address, Credentials(options),
                           &server->port_);
  builder.RegisterService(&server->service_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  for (int i = 0; i < queues; ++i) {
    server->queues_.push_back(builder.AddCompletionQueue());
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    // BuildAndStart can fail after queues exist; drain them before leaving.
    if (server->server_ != nullptr) server->server_->Shutdown();
    for (auto& cq : server->queues_) {
      cq->Shutdown();
      Poll(cq.get());
    }
    server->server_.reset();
    server->queues_.clear();
    return absl::UnavailableError(
        absl::StrCat("could not listen on ", options.listen_address,
                     " (address in use, or malformed?)"));
  }
  for (auto& cq : server->queues_) server->ArmAll(cq.get());
  for (int i = 0; i < threads; ++i) {
    server->threads_.emplace_back(&GrpcServer::Poll,
                                  server->queues_[i % queues].get());
  }
  if (!options.health_listen_address.empty()) {
    // Only the default health service: this server registers nothing else.
    grpc::ServerBuilder health_builder;
    health_builder.SetOption(std::make_unique<ReflectionOption>(false));
    health_builder.AddListeningPort(options.health_listen_address,
                                    grpc::InsecureServerCredentials(),
                                    &server->health_port_);
    server->health_queue_ = health_builder.AddCompletionQueue();
    server->health_server_ = health_builder.BuildAndStart();
    server->health_thread_ =
        std::thread(&GrpcServer::Poll, server->health_queue_.get());
    if (server->health_server_ == nullptr || server->health_port_ == 0) {
      server->Shutdown(absl::ZeroDuration());
      return absl::UnavailableError(absl::StrCat(
          "could not listen on ", options.health_listen_address, " (health)"));
    }
  }
  server->SetServing(true);
  return server;
}

void GrpcServer::SetServing(bool serving) {
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = s->GetHealthCheckService();
    if (health == nullptr) continue;
    health->SetServingStatus(serving);
    health->SetServingStatus(kServiceName, serving);
  }
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  {
    absl::WriterMutexLock lock(&shutdown_mu_);
    shutting_down_ = true;
  }
  // Returns once every call has finished or was cancelled at the deadline.
  const absl::Time deadline = absl::Now() + grace;
  server_->Shutdown(absl::ToChronoTime(deadline));
  // Health Watch streams never end by themselves: cancel them at the same
  // deadline.
  if (health_server_ != nullptr) {
    health_server_->Shutdown(absl::ToChronoTime(deadline));
  }
  if (health_queue_ != nullptr) {
    health_queue_->Shutdown();
    health_thread_.join();
  }
  for (auto& cq : queues_) cq->Shutdown();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

GrpcServer::~GrpcServer() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

}  // namespace sessiond
