// Authenticate: which caller of a Policy a peer is. Authorize: whether that
// caller may make an RPC. Plain data in, statuses out, no gRPC (PeerIdentity
// comes from grpc_identity.h in the server, or from a test).
#ifndef SESSIOND_AUTH_AUTHENTICATOR_H_
#define SESSIOND_AUTH_AUTHENTICATOR_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "auth/policy.h"

namespace sessiond::auth {

// What a peer presented: its verified client certificate's names, and the
// key of an "authorization: Bearer KEY" header.
struct PeerIdentity {
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::optional<std::string> common_name;
  std::optional<std::string> bearer_token;
};

// The caller of `policy` that `peer` is, by the first rule that names one:
//   1. a URI SAN of a caller's uri_san;
//   2. a DNS SAN of a caller's dns_san (case-insensitive);
//   3. the CN of a caller's common_name (looked at only if some caller has
//      a common_name);
//   4. the bearer token, whose SHA-256 is a caller's api_key_sha256.
// UNAUTHENTICATED if two SANs of one kind name different callers
// ("ambiguous"), or if nothing names a caller. Messages may quote the SANs
// and CN presented, never the bearer token. Under Policy::AllowAll() every
// peer is its one caller. The Caller lives as long as `policy`.
absl::StatusOr<const Caller*> Authenticate(const Policy& policy,
                                           const PeerIdentity& peer);

// OK if `caller` may make calls needing `permission`; otherwise
// PERMISSION_DENIED: `caller "shop-web" may not call ListForUser`.
absl::Status Authorize(const Caller& caller, Permission permission);

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_AUTHENTICATOR_H_
