#include "client/client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace sessiond {

absl::Status ValidateOptions(const ClientOptions& options) {
  if (options.deadline <= absl::ZeroDuration() ||
      options.deadline == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "ClientOptions.deadline must be positive and finite");
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        "ClientOptions.max_attempts must be at least 1");
  }
  if (options.initial_backoff < absl::ZeroDuration() ||
      options.initial_backoff == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "ClientOptions.initial_backoff must be non-negative and finite");
  }
  for (char c : options.api_key) {
    if (c <= ' ' || c > '~') {
      // Never echo the key: it is a secret.
      return absl::InvalidArgumentError(
          "ClientOptions.api_key must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // gRPC and absl share the canonical codes 1..16.
  const int code = static_cast<int>(status.error_code());
  if (code < 1 || code > 16) return absl::UnknownError(status.error_message());
  return absl::Status(static_cast<absl::StatusCode>(code),
                      status.error_message());
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const std::string& target, ClientOptions options,
    const std::optional<ClientTls>& tls) {
  if (target.empty()) return absl::InvalidArgumentError("empty target");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  if (tls.has_value()) {
    if (tls->root_ca_pem.empty()) {
      return absl::InvalidArgumentError("ClientTls.root_ca_pem is empty");
    }
    if (tls->cert_chain_pem.empty() != tls->private_key_pem.empty()) {
      return absl::InvalidArgumentError(
          "ClientTls needs both cert_chain_pem and private_key_pem, or "
          "neither");
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls->root_ca_pem;
    ssl.pem_cert_chain = tls->cert_chain_pem;
    ssl.pem_private_key = tls->private_key_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  return std::make_unique<Client>(grpc::CreateChannel(target, credentials),
                                  options);
}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : init_status_(ValidateOptions(options)), options_(options) {
  if (channel == nullptr) {
    init_status_ = absl::InvalidArgumentError("null channel");
  } else {
    stub_ = v1::SessionService::NewStub(std::move(channel));
  }
}

// All attempts share one deadline: options_.deadline from now.
template <typename Response, typename Attempt>
absl::StatusOr<Response> Client::Call(Rpc rpc, Attempt attempt) const {
  if (!init_status_.ok()) return init_status_;
  const absl::Time deadline = absl::Now() + options_.deadline;
  for (int n = 1;; ++n) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    if (!options_.api_key.empty()) {
      context.AddMetadata("authorization",
                          absl::StrCat("Bearer ", options_.api_key));
    }
    Response response;
    absl::Status status = FromGrpcStatus(attempt(&context, &response));
    if (status.ok()) return response;
    if (!ShouldRetry(rpc, status.code(), n, options_.max_attempts)) {
      return status;
    }
    const absl::Duration backoff = BackoffAfter(n, options_.initial_backoff);
    // No time left for another attempt: report the real failure now rather
    // than sleeping into a DEADLINE_EXCEEDED.
    if (absl::Now() + backoff >= deadline) return status;
    absl::SleepFor(backoff);
  }
}

absl::StatusOr<v1::LoadResponse> Client::Load(const std::string& token,
                                              bool touch) const {
  v1::LoadRequest request;
  request.set_token(token);
  request.set_touch(touch);
  return Call<v1::LoadResponse>(
      Rpc::kLoad, [&](grpc::ClientContext* c, v1::LoadResponse* r) {
        return stub_->Load(c, request, r);
      });
}

absl::StatusOr<v1::SaveResponse> Client::Create(
    const std::string& user_id, const std::string& data,
    const Metadata& metadata) const {
  v1::SaveRequest request;
  request.set_user_id(user_id);
  request.set_data(data);
  request.mutable_metadata()->insert(metadata.begin(), metadata.end());
  return Save(request);
}

absl::StatusOr<v1::SaveResponse> Client::Save(
    const v1::SaveRequest& request) const {
  return Call<v1::SaveResponse>(
      Rpc::kSave, [&](grpc::ClientContext* c, v1::SaveResponse* r) {
        return stub_->Save(c, request, r);
      });
}

absl::StatusOr<v1::CycleResponse> Client::Cycle(
    const std::string& token, const std::optional<std::string>& user_id) const {
  v1::CycleRequest request;
  request.set_token(token);
  if (user_id.has_value()) request.set_user_id(*user_id);
  return Call<v1::CycleResponse>(
      Rpc::kCycle, [&](grpc::ClientContext* c, v1::CycleResponse* r) {
        return stub_->Cycle(c, request, r);
      });
}

absl::StatusOr<v1::DeleteResponse> Client::DeleteByToken(
    const std::string& token) const {
  v1::DeleteRequest request;
  request.set_token(token);
  return Delete(request);
}

absl::StatusOr<v1::DeleteResponse> Client::DeleteById(
    const std::string& id) const {
  v1::DeleteRequest request;
  request.set_id(id);
  return Delete(request);
}

absl::StatusOr<v1::DeleteResponse> Client::DeleteForUser(
    const std::string& user_id, const std::string& except_id) const {
  v1::DeleteRequest request;
  request.set_user_id(user_id);
  request.set_except_id(except_id);
  return Delete(request);
}

absl::StatusOr<v1::DeleteResponse> Client::Delete(
    const v1::DeleteRequest& request) const {
  return Call<v1::DeleteResponse>(
      Rpc::kDelete, [&](grpc::ClientContext* c, v1::DeleteResponse* r) {
        return stub_->Delete(c, request, r);
      });
}

absl::StatusOr<v1::ListForUserResponse> Client::ListForUser(
    const std::string& user_id, int page_size,
    const std::string& page_token) const {
  v1::ListForUserRequest request;
  request.set_user_id(user_id);
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  return Call<v1::ListForUserResponse>(
      Rpc::kListForUser,
      [&](grpc::ClientContext* c, v1::ListForUserResponse* r) {
        return stub_->ListForUser(c, request, r);
      });
}

absl::StatusOr<v1::PruneResponse> Client::Prune() const {
  return Call<v1::PruneResponse>(
      Rpc::kPrune, [&](grpc::ClientContext* c, v1::PruneResponse* r) {
        return stub_->Prune(c, v1::PruneRequest(), r);
      });
}

absl::StatusOr<v1::HealthResponse> Client::Health() const {
  return Call<v1::HealthResponse>(
      Rpc::kHealth, [&](grpc::ClientContext* c, v1::HealthResponse* r) {
        return stub_->Health(c, v1::HealthRequest(), r);
      });
}

}  // namespace sessiond
