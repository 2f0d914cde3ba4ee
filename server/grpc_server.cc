#include "server/grpc_server.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "crypto/wipe.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "server/log.h"
#include "server/request_parser.h"
#include "storage/call_deadline.h"

namespace sessiond {
namespace {

using v1::SessionService;

// Calls are waiting for each RPC method on each queue at any time, so that a
// burst of arrivals does not wait for a slot to be re-armed.
constexpr int kSlotsPerMethod = 8;
constexpr char kServiceName[] = "sessiond.v1.SessionService";
// Calls waiting for a worker beyond these are refused at once
// (UNAVAILABLE): so many calls, or requests of so many bytes in all.
constexpr int kMaxQueuedCalls = 10000;
constexpr int64_t kMaxQueuedBytes = int64_t{256} << 20;
// How long Shutdown waits for the workers after the grace period.
constexpr absl::Duration kWorkerStopMargin = absl::Seconds(1);

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

// One unary call slot: waits for a request of one method, runs the handler
// (inline, or on a worker of the executor), sends the response, and deletes
// itself. Before running the handler it arms a fresh slot for the next
// request.
template <typename Request, typename Response>
class UnaryCall final : public Tag, public CallExecutor::Call {
 public:
  using RequestMethod = void (RawSessionService::*)(
      grpc::ServerContext*, grpc::ByteBuffer*,
      grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>*,
      grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*);
  using HandleMethod = absl::StatusOr<Response> (SessionHandler::*)(
      const TenantScope&, const Request&);

  struct Method {
    GrpcServer* server;
    RawSessionService* service;
    grpc::ServerCompletionQueue* cq;
    SessionHandler* handler;
    const Access* access;
    CallExecutor* executor;  // null: run inline
    absl::Duration call_timeout;
    RequestMethod request;
    HandleMethod handle;
  };

  static void Arm(const Method& method) {
    method.server->ArmUnlessShuttingDown([&method] {
      auto* call = new UnaryCall(method);
      (method.service->*method.request)(&call->context_, &call->raw_request_,
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
    // The call must be done by its caller's deadline, and by call_timeout
    // after it arrived, whichever is earlier.
    const absl::Time caller_deadline = absl::FromChrono(context_.deadline());
    deadline_ = std::min(caller_deadline, absl::Now() + method_.call_timeout);
    caller_deadline_first_ = caller_deadline <= deadline_;
    if (method_.executor != nullptr) {
      method_.executor->Submit(this, deadline_, raw_request_.Length());
    } else {
      Run();
    }
  }

  void Run() override { Respond(Handle()); }

  void Expire(CallExecutor::Expiry why) override {
    switch (why) {
      case CallExecutor::Expiry::kDeadline:
        Respond(NotStarted());
        return;
      case CallExecutor::Expiry::kQueueFull:
        Respond(absl::UnavailableError(
            "the server is overloaded: too many calls are waiting already; "
            "nothing was done, and it is safe to retry"));
        return;
      case CallExecutor::Expiry::kStopping:
        Respond(absl::UnavailableError(
            "the server is shutting down; nothing was done, and it is safe to "
            "retry on another replica"));
        return;
    }
  }

 private:
  explicit UnaryCall(const Method& method)
      : method_(method), responder_(&context_) {}

  // A call that waited past its deadline is not started: its caller has
  // given up (and must not find it done later), or it could not be done
  // within call_timeout.
  absl::Status NotStarted() const {
    if (caller_deadline_first_) {
      return absl::DeadlineExceededError(
          "the call's deadline passed before it started; nothing was done");
    }
    return absl::UnavailableError(absl::StrCat(
        "the server was too busy to start the call within its call timeout (",
        absl::FormatDuration(method_.call_timeout),
        "); nothing was done, and it is safe to retry"));
  }

  absl::StatusOr<Response> Handle() {
    if (absl::Now() >= deadline_) return NotStarted();
    if (absl::Status s = Parse(); !s.ok()) return s;
    const storage::ScopedCallDeadline bound(deadline_);
    absl::StatusOr<Access::Admission> admitted =
        method_.access->Admit(context_, PermissionFor(request_));
    if (!admitted.ok()) return admitted.status();
    return (method_.handler->*method_.handle)(admitted->scope(), request_);
  }

  absl::Status Parse() {
    std::vector<grpc::Slice> slices;
    if (!raw_request_.Dump(&slices).ok()) {
      return absl::InternalError("could not read the request");
    }
    if (slices.size() == 1) {
      return ParseRequest(
          absl::string_view(reinterpret_cast<const char*>(slices[0].begin()),
                            slices[0].size()),
          &request_);
    }
    std::string bytes;
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    absl::Status parsed = ParseRequest(bytes, &request_);
    crypto::Wipe(&bytes);  // it holds the token
    return parsed;
  }

  void Respond(const absl::StatusOr<Response>& response) {
    finishing_ = true;
    if (!response.ok()) {
      responder_.FinishWithError(ToGrpcStatus(response.status()), this);
      return;
    }
    grpc::ByteBuffer bytes;
    bool own_buffer = false;
    const grpc::Status serialized =
        grpc::SerializationTraits<Response>::Serialize(*response, &bytes,
                                                       &own_buffer);
    if (serialized.ok()) {
      responder_.Finish(bytes, grpc::Status::OK, this);
    } else {
      responder_.FinishWithError(serialized, this);
    }
  }

  const Method method_;
  grpc::ServerContext context_;
  grpc::ByteBuffer raw_request_;
  Request request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_;
  absl::Time deadline_;
  bool caller_deadline_first_ = false;
  bool finishing_ = false;
};

// What every call slot of a queue shares.
struct SlotContext {
  GrpcServer* server;
  RawSessionService* service;
  grpc::ServerCompletionQueue* cq;
  SessionHandler* handler;
  const Access* access;
  CallExecutor* executor;
  absl::Duration call_timeout;
};

template <typename Request, typename Response>
void ArmMethod(const SlotContext& slot,
               typename UnaryCall<Request, Response>::RequestMethod request,
               typename UnaryCall<Request, Response>::HandleMethod handle) {
  const typename UnaryCall<Request, Response>::Method method{
      slot.server,   slot.service,      slot.cq, slot.handler, slot.access,
      slot.executor, slot.call_timeout, request, handle};
  for (int i = 0; i < kSlotsPerMethod; ++i) {
    UnaryCall<Request, Response>::Arm(method);
  }
}

}  // namespace

void GrpcServer::ArmAll(grpc::ServerCompletionQueue* cq) {
  using AS = RawSessionService;
  const SlotContext slot{this,    &service_,       cq,           handler_,
                         access_, executor_.get(), call_timeout_};
  ArmMethod<v1::LoadRequest, v1::LoadResponse>(slot, &AS::RequestLoad,
                                               &SessionHandler::Load);
  ArmMethod<v1::SaveRequest, v1::SaveResponse>(slot, &AS::RequestSave,
                                               &SessionHandler::Save);
  ArmMethod<v1::CycleRequest, v1::CycleResponse>(slot, &AS::RequestCycle,
                                                 &SessionHandler::Cycle);
  ArmMethod<v1::DeleteRequest, v1::DeleteResponse>(slot, &AS::RequestDelete,
                                                   &SessionHandler::Delete);
  ArmMethod<v1::ListForUserRequest, v1::ListForUserResponse>(
      slot, &AS::RequestListForUser, &SessionHandler::ListForUser);
  ArmMethod<v1::PruneRequest, v1::PruneResponse>(slot, &AS::RequestPrune,
                                                 &SessionHandler::Prune);
  ArmMethod<v1::HealthRequest, v1::HealthResponse>(slot, &AS::RequestHealth,
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
  if (options.workers < 0) {
    return absl::InvalidArgumentError("workers: must not be negative");
  }
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("call_timeout: must be positive");
  }
  if (options.max_concurrent_streams <= 0) {
    return absl::InvalidArgumentError(
        "max_concurrent_streams: must be positive");
  }
  if (options.transport_memory_bytes <= 0) {
    return absl::InvalidArgumentError(
        "transport_memory_bytes: must be positive");
  }
  const int cores =
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads = options.threads > 0 ? options.threads : 2 * cores;
  const int queues = std::min(threads, cores);
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->handler_ = handler;
  server->access_ = access;
  server->call_timeout_ = options.call_timeout;
  if (options.workers > 0) {
    server->executor_ = std::make_unique<CallExecutor>(
        options.workers, kMaxQueuedCalls, kMaxQueuedBytes);
  }

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
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_concurrent_streams);
  grpc::ResourceQuota quota("sessiond");
  quota.Resize(static_cast<size_t>(options.transport_memory_bytes));
  builder.SetResourceQuota(quota);
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options.max_connection_age)));
    // An aged connection's calls all end within call_timeout.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   options.call_timeout + kWorkerStopMargin)));
  }
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

bool GrpcServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return !stuck_;
  shut_down_ = true;
  SetServing(false);
  {
    absl::WriterMutexLock lock(&shutdown_mu_);
    shutting_down_ = true;
  }
  const absl::Time start = absl::Now();
  // Returns once every call has finished or was cancelled at the deadline.
  const absl::Time deadline = start + grace;
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
  // Calls still on a worker answer on the queues, which must outlive them.
  // Each ends by call_timeout after it arrived, before shutdown began,
  // unless a backend ignores its deadline.
  const absl::Time calls_done =
      std::max(deadline, start + call_timeout_) + kWorkerStopMargin;
  if (executor_ != nullptr && !executor_->Stop(calls_done)) {
    LogError("calls were still running %s after their call timeout",
             absl::FormatDuration(kWorkerStopMargin));
    stuck_ = true;
    return false;
  }
  for (auto& cq : queues_) cq->Shutdown();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  return true;
}

GrpcServer::~GrpcServer() {
  if (server_ != nullptr && !Shutdown(absl::ZeroDuration())) {
    // Stuck calls still use the server, its queues and the executor: leave
    // them all to the process's end rather than free them under the calls.
    (void)executor_.release();
    (void)server_.release();
    for (auto& cq : queues_) (void)cq.release();
    for (std::thread& thread : threads_) thread.detach();
  }
}

}  // namespace sessiond
