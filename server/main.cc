// sessiond: the session-storage server. See README.md for flags.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "crypto/secret_file.h"
#include "crypto/wipe.h"
#include "server/access.h"
#include "server/config.h"
#include "server/grpc_server.h"
#include "server/log.h"
#include "server/pruner.h"
#include "server/request_parser.h"
#include "server/session_handler.h"
#include "storage/clock.h"
#include "storage/registry.h"

namespace sessiond {
namespace {

absl::StatusOr<std::unique_ptr<crypto::Sealer>> OpenSealer(
    const ServerConfig& config) {
  if (config.insecure_plaintext) {
    LogWarning(
        "!!! --insecure_plaintext: session data and metadata are stored "
        "UNENCRYPTED. Never use this in production. !!!");
    return crypto::NewPlaintextSealer();
  }
  if (config.create_key_if_missing) {
    absl::Status created = crypto::KeyRing::CreateKeyFile(config.key_files[0]);
    if (created.ok()) {
      LogWarning(
          "!!! Created a new encryption key at %s (mode 0600). Back it up "
          "and keep it secret: without it, every stored session is lost. "
          "!!!",
          config.key_files[0]);
    } else if (!absl::IsAlreadyExists(created)) {
      return created;
    }
  }
  absl::StatusOr<crypto::KeyRing> ring =
      crypto::KeyRing::FromFiles(config.key_files);
  if (!ring.ok()) return ring.status();
  LogInfo("encryption: AES-256-GCM with %d key(s); sealing with %s",
          static_cast<int>(config.key_files.size()), config.key_files[0]);
  return crypto::NewAesGcmSealer(std::move(*ring));
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream content;
  content << in.rdbuf();
  if (content.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not PEM"));
  }
  return content.str();
}

// Reads the TLS files named in `config` into `grpc`. The private key is a
// secret file (crypto::ReadSecretFile: private to its owner).
absl::Status LoadTls(const ServerConfig& config, GrpcServerOptions* grpc) {
  const std::pair<const std::string*, std::string*> public_files[] = {
      {&config.tls_cert_file, &grpc->tls_cert_chain_pem},
      {&config.tls_client_ca_file, &grpc->tls_client_ca_pem}};
  for (const auto& [path, pem] : public_files) {
    if (path->empty()) continue;
    absl::StatusOr<std::string> content = ReadPemFile(*path);
    if (!content.ok()) return content.status();
    *pem = std::move(*content);
  }
  if (!config.tls_key_file.empty()) {
    absl::StatusOr<crypto::Secret> key = crypto::ReadSecretFile(
        config.tls_key_file, "TLS key file", /*max_size=*/64 * 1024);
    if (!key.ok()) return key.status();
    if (key->view().find("-----BEGIN ") == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.tls_key_file, " is not PEM"));
    }
    grpc->tls_private_key_pem = std::string(key->view());
  }
  return absl::OkStatus();
}

// Who may call: the policy file's callers, or everyone in the default
// tenant. Refuses a policy whose certificate callers could never present a
// verified certificate.
// How often the policy file is looked at for a change.
constexpr absl::Duration kPolicyPollInterval = absl::Seconds(2);

// What tells that a file was replaced or rewritten, without reading it: a
// ConfigMap update swaps a symlink (a new inode), an editor renames a new
// file over the old one, a rewrite changes the size or the time.
struct FileStamp {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp& other) const {
    return device == other.device && inode == other.inode &&
           size == other.size && mtime_ns == other.mtime_ns;
  }
};

// The stamp of `path` (following symlinks); nullopt if it cannot be read.
std::optional<FileStamp> StampOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{st.st_dev, st.st_ino, st.st_size,
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                       st.st_mtim.tv_nsec};
}

// Reloads the policy, saying why (`reason`) in the log.
void ReloadPolicy(Access& access, const std::string& path, const char* reason) {
  // Calls already admitted finish under the policy that admitted them.
  if (absl::Status reloaded = access.Reload(); reloaded.ok()) {
    LogInfo("%s: policy %s reloaded (%d reloads)", reason, path,
            access.reloads());
  } else {
    LogError(
        "%s: policy not reloaded, the previous one stays in force (%d failed "
        "reloads): %s",
        reason, access.reload_failures(), reloaded.message());
  }
}

absl::StatusOr<std::unique_ptr<Access>> OpenAccess(const ServerConfig& config) {
  if (config.policy_file.empty()) {
    if (config.allow_unauthenticated) {
      LogWarning(
          "!!! --allow_unauthenticated: every caller that reaches %s may "
          "read, write and delete every session. !!!",
          config.grpc.listen_address);
    }
    return Access::TrustEveryone(config.handler);
  }
  absl::StatusOr<std::unique_ptr<Access>> access =
      Access::FromPolicyFile(config.policy_file, config.handler);
  if (!access.ok()) return access.status();
  if ((*access)->HasCertificateCallers() && config.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.policy_file,
        ": callers identified by client certificate need "
        "--tls_client_ca_file (without it no client presents a verified "
        "certificate)"));
  }
  if ((*access)->HasApiKeyCallers() && config.tls_cert_file.empty() &&
      !IsLoopbackAddress(config.grpc.listen_address)) {
    LogWarning(
        "callers identified by API key, without TLS on %s: the keys cross "
        "the network in the clear unless a mesh encrypts the hop",
        config.grpc.listen_address);
  }
  LogInfo("policy: %s", config.policy_file);
  return access;
}

int Run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      std::fputs(ConfigUsage().c_str(), stdout);
      return 0;
    }
  }
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's
  // lock-order (deadlock) detection on: every lock, gRPC's included, then
  // updates one process-wide graph under a global lock (its cost is in
  // docs/BENCHMARKS.md). Tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  RouteProtobufLogs();
  absl::StatusOr<ServerConfig> config =
      ParseConfig(argc, argv, ProcessEnvironment());
  if (!config.ok()) {
    LogError("bad configuration: %s", config.status().message());
    return 2;
  }

  // Files sessiond creates (database, key) are private to its user.
  umask(077);

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<crypto::Sealer>> sealer = OpenSealer(*config);
  if (!sealer.ok()) {
    LogError("encryption keys: %s", sealer.status().message());
    return 1;
  }
  // ParseConfig checked that the backend is registered.
  const storage::Backend* backend = *storage::FindBackend(config->backend);
  absl::StatusOr<std::unique_ptr<storage::SessionStore>> store =
      backend->Open(config->backend_settings, Clock::Real(), config->store);
  if (!store.ok()) {
    LogError("storage backend %s: %s", config->backend,
             store.status().message());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Access>> access = OpenAccess(*config);
  if (!access.ok()) {
    LogError("policy: %s", access.status().message());
    return 2;
  }
  SessionHandler handler(store->get(), sealer->get(), config->handler);
  GrpcServerOptions grpc_options = config->grpc;
  if (absl::Status tls = LoadTls(*config, &grpc_options); !tls.ok()) {
    LogError("TLS: %s", tls.message());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start(&handler, access->get(), grpc_options);
  crypto::Wipe(&grpc_options.tls_private_key_pem);
  if (!server.ok()) {
    LogError("%s", server.status().message());
    return 1;
  }
  LogInfo("sessiond serving on %s (port %d), backend %s, %s",
          config->grpc.listen_address, (*server)->port(),
          backend->Describe(config->backend_settings),
          config->tls_cert_file.empty()        ? "no TLS"
          : config->tls_client_ca_file.empty() ? "TLS"
                                               : "mutual TLS");
  if ((*server)->health_port() != 0) {
    LogInfo("health checks (grpc.health.v1 only, plaintext) on %s (port %d)",
            config->grpc.health_listen_address, (*server)->health_port());
  }
  if (config->tls_cert_file.empty() &&
      !IsLoopbackAddress(config->grpc.listen_address)) {
    LogWarning(
        "serving without TLS on %s: anyone who can reach this port can read "
        "and delete sessions. Use --tls_cert_file/--tls_key_file (and "
        "--tls_client_ca_file), or a network policy or service mesh that "
        "admits only your services.",
        config->grpc.listen_address);
  }

  const absl::Duration oldest_connection =
      config->grpc.max_connection_age * 1.1;
  if (config->shutdown_drain_delay > absl::ZeroDuration() &&
      (config->grpc.max_connection_age == absl::ZeroDuration() ||
       config->shutdown_drain_delay <= oldest_connection)) {
    LogWarning(
        "--shutdown_drain_delay=%s does not outlast --max_connection_age "
        "(+10%%): clients still connected when shutdown begins may see calls "
        "fail CANCELLED; make the drain delay longer than %s",
        absl::FormatDuration(config->shutdown_drain_delay),
        config->grpc.max_connection_age == absl::ZeroDuration()
            ? std::string("a nonzero --max_connection_age")
            : absl::FormatDuration(oldest_connection));
  }

  std::optional<BackgroundPruner> pruner;
  if (config->prune_interval > absl::ZeroDuration()) {
    pruner.emplace(&handler, config->prune_interval, config->grpc.call_timeout);
  }

  // Until SIGTERM or SIGINT: reload the policy on SIGHUP, and when its
  // file changes.
  const std::string& policy_file = config->policy_file;
  std::optional<FileStamp> policy_stamp = StampOf(policy_file);
  const timespec poll = absl::ToTimespec(kPolicyPollInterval);
  int signal_number = 0;
  for (;;) {
    if (policy_file.empty()) {
      sigwait(&signals, &signal_number);
    } else {
      signal_number = sigtimedwait(&signals, nullptr, &poll);
    }
    if (signal_number < 0) {  // the poll interval passed (or EINTR)
      std::optional<FileStamp> now = StampOf(policy_file);
      if (now.has_value() &&
          !(policy_stamp.has_value() && *now == *policy_stamp)) {
        policy_stamp = now;
        ReloadPolicy(**access, policy_file, "policy file changed");
      }
      continue;
    }
    if (signal_number != SIGHUP) break;
    if (policy_file.empty()) {
      LogInfo("SIGHUP received: no --policy_file to reload");
      continue;
    }
    policy_stamp = StampOf(policy_file);
    ReloadPolicy(**access, policy_file, "SIGHUP received");
  }
  const char* signal_name = signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
  if (config->shutdown_drain_delay > absl::ZeroDuration()) {
    LogInfo("%s received: reporting NOT_SERVING, still serving for %s",
            signal_name, absl::FormatDuration(config->shutdown_drain_delay));
    (*server)->SetServing(false);
    absl::SleepFor(config->shutdown_drain_delay);
  }
  LogInfo("%s received: draining in-flight calls (up to %s)", signal_name,
          absl::FormatDuration(config->shutdown_grace));
  // A prune in progress ends within --call_timeout, meanwhile.
  if (pruner.has_value()) pruner->RequestStop();
  if (!(*server)->Shutdown(config->shutdown_grace)) {
    // A handler is stuck in the backend past its deadline: what it uses
    // cannot be freed, and nothing it does now is acknowledged.
    LogError("sessiond stopped with calls still running");
    std::_Exit(1);
  }
  pruner.reset();
  LogInfo("sessiond stopped");
  return 0;
}

}  // namespace
}  // namespace sessiond

int main(int argc, char** argv) { return sessiond::Run(argc, argv); }
