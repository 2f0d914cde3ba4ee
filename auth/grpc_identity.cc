#include "auth/grpc_identity.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace sessiond::auth {
namespace {

std::vector<std::string> Values(const grpc::AuthContext& auth,
                                const char* property) {
  std::vector<std::string> values;
  for (const grpc::string_ref& value : auth.FindPropertyValues(property)) {
    values.emplace_back(value.data(), value.size());
  }
  return values;
}

// KEY of "Bearer KEY", or nullopt.
std::optional<std::string> BearerToken(absl::string_view header) {
  constexpr absl::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme) ||
      header[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  absl::string_view key = header.substr(kScheme.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  if (key.empty() || std::any_of(key.begin(), key.end(), [](char c) {
        return absl::ascii_isspace(c) || absl::ascii_iscntrl(c);
      })) {
    return std::nullopt;
  }
  return std::string(key);
}

}  // namespace

PeerIdentity PeerIdentityOf(const grpc::ServerContextBase& context) {
  PeerIdentity peer;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr) {
    peer.uri_sans = Values(*auth, GRPC_PEER_URI_PROPERTY_NAME);
    peer.dns_sans = Values(*auth, GRPC_PEER_DNS_PROPERTY_NAME);
    std::vector<std::string> cn = Values(*auth, GRPC_X509_CN_PROPERTY_NAME);
    if (!cn.empty()) peer.common_name = std::move(cn.front());
  }
  const auto range = context.client_metadata().equal_range("authorization");
  if (range.first != range.second && std::next(range.first) == range.second) {
    const grpc::string_ref& value = range.first->second;
    peer.bearer_token =
        BearerToken(absl::string_view(value.data(), value.size()));
  }
  return peer;
}

}  // namespace sessiond::auth
