// PeerIdentityOf: what the peer of a gRPC call presented, for Authenticate.
#ifndef SESSIOND_AUTH_GRPC_IDENTITY_H_
#define SESSIOND_AUTH_GRPC_IDENTITY_H_

#include <grpcpp/server_context.h>

#include "auth/authenticator.h"

namespace sessiond::auth {

// From the call's AuthContext: the client certificate's URI SANs
// ("peer_uri"), DNS SANs ("peer_dns"), in the certificate's order, and CN
// ("x509_common_name"), as gRPC fills them in after the TLS handshake; none
// for a plaintext call or a TLS call without a client certificate. They are
// names the peer could claim unless the server verifies client certificates
// (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, what sessiond
// serves with --tls_client_ca_file).
//
// From the call's metadata: bearer_token is KEY if the call has exactly one
// "authorization" header and it is "Bearer KEY" (the scheme in any case,
// then one or more spaces, then KEY, which has no spaces); otherwise unset.
PeerIdentity PeerIdentityOf(const grpc::ServerContextBase& context);

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_GRPC_IDENTITY_H_
