// sessiond::Client: a small synchronous client for sessiond.v1.SessionService.
//
// Contract:
//  * Every call has a deadline: ClientOptions::deadline bounds the whole call,
//    all attempts and backoff sleeps included. A call never blocks longer
//    than that (plus scheduling noise), even if nothing listens at `target`
//    or the server never answers.
//  * Errors come back as absl::Status with the gRPC code and message
//    unchanged (see the error codes in proto/sessiond/v1/session.proto).
//  * Retries: a call is sent again only when it is idempotent AND failed with
//    UNAVAILABLE, at most max_attempts times in all, waiting initial_backoff,
//    2*initial_backoff, ... in between, and never past the deadline (if the
//    next wait would end after it, the last UNAVAILABLE is returned at once).
//      retried:     Load (with or without touch: a touch only moves
//                   last_active_at forward and is not a write), ListForUser,
//                   DeleteByToken/DeleteById/DeleteForUser, Prune, Health.
//      NOT retried: Save/Create (a create would create twice; an update may
//                   apply twice) and Cycle (the first attempt may already
//                   have replaced the token, so the caller must decide).
//    A retried Delete or Prune reports the count of the attempt that
//    succeeded, which may be lower than what the call removed in total.
//    The policy itself lives in client/retry.h.
//  * A Client is immutable after construction and safe to share between
//    threads. It never logs or prints tokens.
//
// Example:
//   auto client = sessiond::Client::Connect("127.0.0.1:50051");
//   if (!client.ok()) return client.status();
//   absl::StatusOr<sessiond::v1::SaveResponse> created = (*client)->Create();
//   // created->token() is the secret the caller keeps.
//
// In tests, over an in-process server's channel:
//   sessiond::Client client(server->InProcessChannel({}));
#ifndef SESSIOND_CLIENT_CLIENT_H_
#define SESSIOND_CLIENT_CLIENT_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/retry.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "sessiond/v1/session.grpc.pb.h"

namespace sessiond {

struct ClientOptions {
  // Bound on each call, all attempts and backoff included. Positive, finite.
  absl::Duration deadline = absl::Seconds(2);
  // Attempts per call, the first included; 1 disables retries. At least 1.
  int max_attempts = 3;
  // Wait after the first failed attempt; doubles after each further one.
  // Non-negative, finite.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  // If set, sent with every call as "authorization: Bearer <api_key>", the
  // identity of a caller the server's policy names by API key. Printable
  // ASCII without spaces. Send it only over TLS, or inside a mesh that
  // encrypts the hop.
  std::string api_key;
};

// OK, or INVALID_ARGUMENT naming the first bad field.
absl::Status ValidateOptions(const ClientOptions& options);

// TLS for Connect. With root_ca_pem, the channel uses TLS and trusts only
// servers whose certificate that CA signed; with cert_chain_pem and
// private_key_pem too, it presents a client certificate (mutual TLS).
struct ClientTls {
  std::string root_ca_pem;
  std::string cert_chain_pem;
  std::string private_key_pem;
};

// The same code and message; OK drops the message.
absl::Status FromGrpcStatus(const grpc::Status& status);

class Client {
 public:
  using Metadata = std::map<std::string, std::string>;

  // A client over an insecure channel to `target` ("host:port", or any gRPC
  // target URI). Does not contact the server: the first call does; call
  // Health() to check that it answers. INVALID_ARGUMENT for an empty target
  // or invalid options.
  // With `tls`, the channel uses TLS instead (see ClientTls).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const std::string& target, ClientOptions options = {},
      const std::optional<ClientTls>& tls = std::nullopt);

  // A client over an existing channel (e.g. a test server's
  // InProcessChannel). If `channel` is null or `options` are invalid, every
  // call fails with INVALID_ARGUMENT.
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  ClientOptions options = {});

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Retried on UNAVAILABLE.
  absl::StatusOr<v1::LoadResponse> Load(const std::string& token,
                                        bool touch = false) const;

  // Creates a session (Save with no token). Never retried.
  absl::StatusOr<v1::SaveResponse> Create(const std::string& user_id = "",
                                          const std::string& data = "",
                                          const Metadata& metadata = {}) const;
  // Creates or updates, as the request says. Never retried.
  absl::StatusOr<v1::SaveResponse> Save(const v1::SaveRequest& request) const;

  // Replaces the token; sets user_id too if given. Never retried.
  absl::StatusOr<v1::CycleResponse> Cycle(
      const std::string& token,
      const std::optional<std::string>& user_id = std::nullopt) const;

  // Retried on UNAVAILABLE. Deleting nothing is not an error (deleted = 0).
  absl::StatusOr<v1::DeleteResponse> DeleteByToken(
      const std::string& token) const;
  absl::StatusOr<v1::DeleteResponse> DeleteById(const std::string& id) const;
  // Every session of `user_id` except `except_id` (if not empty).
  absl::StatusOr<v1::DeleteResponse> DeleteForUser(
      const std::string& user_id, const std::string& except_id = "") const;
  // Any DeleteRequest, as built by the caller (e.g. to test validation).
  absl::StatusOr<v1::DeleteResponse> Delete(
      const v1::DeleteRequest& request) const;

  // Retried on UNAVAILABLE. page_size 0 means the server default.
  absl::StatusOr<v1::ListForUserResponse> ListForUser(
      const std::string& user_id, int page_size = 0,
      const std::string& page_token = "") const;

  // Retried on UNAVAILABLE.
  absl::StatusOr<v1::PruneResponse> Prune() const;
  absl::StatusOr<v1::HealthResponse> Health() const;

  const ClientOptions& options() const { return options_; }

 private:
  // Sends attempt(context, response) under the retry policy for `rpc`.
  template <typename Response, typename Attempt>
  absl::StatusOr<Response> Call(Rpc rpc, Attempt attempt) const;

  absl::Status init_status_;  // Returned by every call when not OK.
  ClientOptions options_;
  std::unique_ptr<v1::SessionService::Stub> stub_;
};

}  // namespace sessiond

#endif  // SESSIOND_CLIENT_CLIENT_H_
