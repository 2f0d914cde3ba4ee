// PeerIdentityOf: what the peer of a gRPC call presented, for Authenticate.
#ifndef SESSIOND_AUTH_GRPC_IDENTITY_H_
#define SESSIOND_AUTH_GRPC_IDENTITY_H_

#include <grpcpp/server_context.h>

#include "auth/authenticator.h"

namespace sessiond::auth {

// From the call's AuthContext: the client certificate's URI SANs
// ("peer_uri"), DNS SANs ("peer_dns") and CN ("x509_common_name"), as gRPC
// fills them in after the TLS handshake; none for a plaintext call. gRPC
// reports the certificate of a TLS peer even when it did not verify it, so
// serve with GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
// whenever certificates identify callers.
//
// From the call's metadata: bearer_token is KEY if the call has exactly one
// "authorization" header and it is "Bearer KEY" (the scheme in any case,
// then one or more spaces, then KEY, which has no spaces); otherwise unset.
PeerIdentity PeerIdentityOf(const grpc::ServerContextBase& context);

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_GRPC_IDENTITY_H_
