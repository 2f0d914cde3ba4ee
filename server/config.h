// ServerConfig: everything the sessiond binary is configured with.
//
// Each setting is a command-line flag (--name=value; dashes and underscores
// are interchangeable in names) and an environment variable SESSIOND_NAME
// (upper case, underscores). A flag given on the command line wins over the
// environment; the environment wins over the default.
//
// The flags of every backend in the storage registry (storage/registry.h)
// are flags here too; --backend chooses among the registered backends, and
// the values given for the chosen backend's flags are kept, as text, for it
// to open with. The registered backends are those linked into the program
// (the sessiond binary links //storage:all_backends).
#ifndef SESSIOND_SERVER_CONFIG_H_
#define SESSIOND_SERVER_CONFIG_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/grpc_server.h"
#include "server/session_handler.h"
#include "storage/registry.h"
#include "storage/session_store.h"

namespace sessiond {

struct ServerConfig {
  GrpcServerOptions grpc;
  HandlerOptions handler;
  storage::StoreOptions store;

  // A name in the storage registry, and the values given for its flags
  // (flags not given are absent and keep the backend's defaults).
  std::string backend = storage::kDefaultBackend;
  storage::BackendSettings backend_settings;

  // Key files, current key first; older keys still open existing sessions.
  std::vector<std::string> key_files;
  // Create the (single) key file if it does not exist yet.
  bool create_key_if_missing = false;
  // Store payloads unencrypted. Must be asked for explicitly.
  bool insecure_plaintext = false;

  // The policy file (callers, their tenants and grants). Empty: every
  // caller is trusted in the default tenant, which needs
  // allow_unauthenticated unless the server listens on loopback only.
  std::string policy_file;
  bool allow_unauthenticated = false;

  // PEM files for serving TLS (certificate chain and private key) and for
  // requiring client certificates (the CA that signs them). Empty: no TLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;

  // How often expired sessions are pruned in the background; zero disables.
  absl::Duration prune_interval = absl::Minutes(5);
  // After SIGTERM or SIGINT: how long to keep serving while reporting
  // NOT_SERVING (so that load balancers stop sending calls first), and then
  // how long in-flight calls may run.
  absl::Duration shutdown_drain_delay = absl::ZeroDuration();
  absl::Duration shutdown_grace = absl::Seconds(10);
};

// Returns the value of an environment variable, or nullopt if unset.
using EnvironmentLookup =
    std::function<std::optional<std::string>(const std::string& name)>;

// The real process environment.
EnvironmentLookup ProcessEnvironment();

// Parses flags from argv and the environment, and checks the result.
// INVALID_ARGUMENT names the flag (and the variable) that is wrong.
absl::StatusOr<ServerConfig> ParseConfig(int argc, char** argv,
                                         const EnvironmentLookup& env);

// Whether `address` (host:port, or unix:PATH) can be reached only from this
// machine: a unix socket, localhost, or a loopback IP (127.0.0.0/8, ::1).
bool IsLoopbackAddress(absl::string_view address);

// A usage text listing every flag, its variable and its default.
std::string ConfigUsage();

}  // namespace sessiond

#endif  // SESSIOND_SERVER_CONFIG_H_
