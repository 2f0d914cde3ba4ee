#include "server/config.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "flags/flags.h"
#include "storage/registry.h"

namespace sessiond {
namespace {

using flags::FlagSet;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

absl::Status CheckHostPort(absl::string_view value) {
  if (value.find(':') == absl::string_view::npos) {
    return Bad("must be host:port");
  }
  return absl::OkStatus();
}

// Every flag, in usage order: where to listen and which backend; each
// registered backend's flags (checked by that backend, kept as text in
// backend_settings); keys, TLS, session rules, pruning and shutdown.
FlagSet<ServerConfig> BuildFlags() {
  FlagSet<ServerConfig> f;
  f.String(
       "listen", "address to serve gRPC on (host:port)",
       [](ServerConfig* c) -> std::string& { return c->grpc.listen_address; },
       CheckHostPort)
      .String(
          "health_listen",
          "also serve grpc.health.v1 alone, in plaintext, on this host:port "
          "(for probes that cannot speak TLS); empty: no",
          [](ServerConfig* c) -> std::string& {
            return c->grpc.health_listen_address;
          },
          [](absl::string_view v) {
            return v.empty() ? absl::OkStatus() : CheckHostPort(v);
          })
      .Bool("reflection",
            "serve gRPC server reflection (the API's description, for tools "
            "such as grpcurl) on --listen",
            [](ServerConfig* c) -> bool& { return c->grpc.reflection; })
      .String("backend",
              absl::StrCat("storage backend: ", storage::BackendNameList()),
              &ServerConfig::backend, [](absl::string_view v) {
                return storage::FindBackend(v).status();
              });
  for (const storage::Backend* backend : storage::RegisteredBackends()) {
    for (const flags::FlagInfo& info : backend->flags()) {
      f.Custom(
          info.name, info.help,
          [text = info.default_text](const ServerConfig&) { return text; },
          [backend, name = info.name](absl::string_view v, ServerConfig* c) {
            if (absl::Status s = backend->CheckFlag(name, v); !s.ok()) {
              return s;
            }
            c->backend_settings[name] = std::string(v);
            return absl::OkStatus();
          },
          info.is_bool);
    }
  }
  f.Custom(
       "key_files",
       "comma-separated key files (base64 of 32 bytes, mode 0600); the first "
       "seals new data, all of them open existing data",
       [](const ServerConfig& c) { return absl::StrJoin(c.key_files, ","); },
       [](absl::string_view v, ServerConfig* c) {
         c->key_files.clear();
         for (absl::string_view path : absl::StrSplit(v, ',')) {
           path = absl::StripAsciiWhitespace(path);
           if (!path.empty()) c->key_files.emplace_back(path);
         }
         return absl::OkStatus();
       })
      .Bool("create_key_if_missing",
            "create the key file (one path in --key_files) if it does not "
            "exist",
            &ServerConfig::create_key_if_missing)
      .Bool("insecure_plaintext",
            "store session data unencrypted (no key files); for development "
            "only",
            &ServerConfig::insecure_plaintext)
      .String("policy_file",
              "YAML policy: which callers (client certificates, API keys) "
              "may call what, in which tenant; reloaded on SIGHUP",
              &ServerConfig::policy_file)
      .Bool("allow_unauthenticated",
            "without --policy_file, serve every caller that reaches a "
            "non-loopback --listen as fully trusted",
            &ServerConfig::allow_unauthenticated)
      .String("tls_cert_file",
              "PEM certificate chain: serve TLS only (with --tls_key_file)",
              &ServerConfig::tls_cert_file)
      .String("tls_key_file", "PEM private key of --tls_cert_file",
              &ServerConfig::tls_key_file)
      .String("tls_client_ca_file",
              "PEM CA certificates: require client certificates signed by "
              "them (mutual TLS)",
              &ServerConfig::tls_client_ca_file)
      .Duration(
          "idle_timeout", "default idle timeout (sliding expiry)",
          [](ServerConfig* c) -> absl::Duration& {
            return c->handler.default_idle_timeout;
          },
          absl::Seconds(1), kLongestTimeout)
      .Duration(
          "absolute_lifetime",
          "default absolute lifetime, counted from creation",
          [](ServerConfig* c) -> absl::Duration& {
            return c->handler.default_absolute_lifetime;
          },
          absl::Seconds(1), kLongestTimeout)
      .Duration(
          "max_idle_timeout",
          "the longest idle timeout a Save may ask for (at least "
          "--idle_timeout)",
          [](ServerConfig* c) -> absl::Duration& {
            return c->handler.max_idle_timeout;
          },
          absl::Seconds(1), kLongestTimeout)
      .Duration(
          "max_absolute_lifetime",
          "the longest absolute lifetime a Save may ask for (at least "
          "--absolute_lifetime)",
          [](ServerConfig* c) -> absl::Duration& {
            return c->handler.max_absolute_lifetime;
          },
          absl::Seconds(1), kLongestTimeout)
      .Duration(
          "touch_interval",
          "a touching Load writes only if the last activity is this old",
          [](ServerConfig* c) -> absl::Duration& {
            return c->handler.touch_interval;
          },
          absl::ZeroDuration(), absl::Hours(24))
      .Int(
          "max_payload_bytes",
          "limit on a session's stored payload (data and metadata, after "
          "encryption)",
          [](ServerConfig* c) -> int64_t& {
            return c->handler.max_payload_bytes;
          },
          64, 1024 * 1024)
      .Int(
          "max_sessions_per_user",
          "cap on a user's live sessions; creating one more evicts the least "
          "recently active (0: no cap)",
          [](ServerConfig* c) -> int& {
            return c->handler.max_sessions_per_user;
          },
          0, 1000000)
      .Int(
          "max_live_sessions",
          "cap on a tenant's live sessions; creating one more is "
          "RESOURCE_EXHAUSTED (0: no cap)",
          [](ServerConfig* c) -> int64_t& {
            return c->handler.max_live_sessions;
          },
          0, int64_t{1} << 40)
      .Duration("prune_interval",
                "how often expired sessions are removed in the background (0: "
                "never)",
                &ServerConfig::prune_interval, absl::ZeroDuration(),
                absl::Hours(24))
      .Int(
          "threads",
          "gRPC completion-queue threads (0: twice the number of cores)",
          [](ServerConfig* c) -> int& { return c->grpc.threads; }, 0, 1024)
      .Int(
          "workers",
          "threads that run calls, so that a hung database holds them and "
          "never the gRPC threads (0: the gRPC threads run calls, for the "
          "memory backend)",
          [](ServerConfig* c) -> int& { return c->grpc.workers; }, 0, 4096)
      .Duration(
          "call_timeout",
          "the longest a call may take from its arrival, whatever the "
          "caller's deadline; past it, UNAVAILABLE",
          [](ServerConfig* c) -> absl::Duration& {
            return c->grpc.call_timeout;
          },
          absl::Milliseconds(10), absl::Minutes(10))
      .Duration(
          "max_connection_age",
          "close each client connection gracefully after about this long "
          "(+-10%), so that clients reconnect, spreading over new replicas "
          "and leaving one that drains (0: never)",
          [](ServerConfig* c) -> absl::Duration& {
            return c->grpc.max_connection_age;
          },
          absl::ZeroDuration(), absl::Hours(24))
      .Int(
          "max_concurrent_streams",
          "calls one client connection may have open at once; a client "
          "holds further calls until one ends",
          [](ServerConfig* c) -> int& {
            return c->grpc.max_concurrent_streams;
          },
          1, 1 << 20)
      .Int(
          "transport_memory_bytes",
          "the memory gRPC's transport may take for connections and calls "
          "(its resource quota)",
          [](ServerConfig* c) -> int64_t& {
            return c->grpc.transport_memory_bytes;
          },
          int64_t{1} << 20, int64_t{1} << 40)
      .Duration(
          "shutdown_drain_delay",
          "after SIGTERM or SIGINT, keep serving this long while health "
          "checks report NOT_SERVING, so load balancers drain this replica "
          "first",
          &ServerConfig::shutdown_drain_delay, absl::ZeroDuration(),
          absl::Minutes(5))
      .Duration("shutdown_grace",
                "how long in-flight calls may finish after SIGTERM or SIGINT",
                &ServerConfig::shutdown_grace, absl::ZeroDuration(),
                absl::Minutes(10));
  return f;
}

const FlagSet<ServerConfig>& Flags() {
  static const auto* const flags = new FlagSet<ServerConfig>(BuildFlags());
  return *flags;
}

std::string EnvName(const std::string& flag) {
  return absl::StrCat("SESSIOND_", absl::AsciiStrToUpper(flag));
}

using Flag = FlagSet<ServerConfig>::Flag;

const Flag* FindFlag(absl::string_view name) {
  return Flags().Find(absl::StrReplaceAll(name, {{"-", "_"}}));
}

absl::Status Apply(const Flag& flag, absl::string_view value,
                   absl::string_view source, ServerConfig* config) {
  absl::Status status = flag.set(value, config);
  if (!status.ok()) {
    return Bad(absl::StrCat(source, ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status Validate(ServerConfig* config) {
  if (config->insecure_plaintext && !config->key_files.empty()) {
    return Bad(
        "--insecure_plaintext and --key_files contradict each other: choose "
        "one");
  }
  if (!config->insecure_plaintext && config->key_files.empty()) {
    return Bad(
        "--key_files is required (or --insecure_plaintext, to store sessions "
        "unencrypted); to start with a new key, pass --key_files=PATH "
        "--create_key_if_missing");
  }
  // The server's settings obey the rule each tenant's do.
  if (absl::Status s =
          ValidateScope(DefaultScope(storage::kDefaultTenant, config->handler),
                        config->handler, kFlagSettingNames);
      !s.ok()) {
    return s;
  }
  if (!config->policy_file.empty() && config->allow_unauthenticated) {
    return Bad(
        "--allow_unauthenticated and --policy_file contradict each other: "
        "with a policy, only the callers it names are served");
  }
  if (config->policy_file.empty() && !config->allow_unauthenticated &&
      !IsLoopbackAddress(config->grpc.listen_address)) {
    return Bad(absl::StrCat(
        "--listen=", config->grpc.listen_address,
        " can be reached from other machines, and without --policy_file "
        "every caller there could read and write every session: pass "
        "--policy_file (README: \"Callers and tenants\"), listen on "
        "127.0.0.1, or pass --allow_unauthenticated to accept it"));
  }
  if (config->tls_cert_file.empty() != config->tls_key_file.empty()) {
    return Bad("--tls_cert_file and --tls_key_file go together");
  }
  if (!config->tls_client_ca_file.empty() && config->tls_cert_file.empty()) {
    return Bad("--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
  }
  // Only the memory backend never waits on a peer: with any other, a hung
  // database would hold the gRPC threads, and no call would be answered.
  if (config->grpc.workers == 0 && config->backend != "memory") {
    return Bad(absl::StrCat(
        "--workers=0 runs calls on the gRPC threads, which a hung database "
        "would hold; it is for --backend=memory only, not ",
        config->backend));
  }
  if (config->create_key_if_missing && config->key_files.size() != 1) {
    return Bad("--create_key_if_missing needs exactly one path in --key_files");
  }
  absl::StatusOr<const storage::Backend*> backend =
      storage::FindBackend(config->backend);
  if (!backend.ok()) return backend.status();
  return (*backend)->Validate(config->backend_settings);
}

// Keeps only the values of the chosen backend's flags: the others were
// checked, but configure nothing.
void KeepChosenBackendSettings(ServerConfig* config) {
  absl::StatusOr<const storage::Backend*> backend =
      storage::FindBackend(config->backend);
  storage::BackendSettings kept;
  if (backend.ok()) {
    for (const flags::FlagInfo& flag : (*backend)->flags()) {
      auto it = config->backend_settings.find(flag.name);
      if (it != config->backend_settings.end()) kept.insert(*it);
    }
  }
  config->backend_settings = std::move(kept);
}

}  // namespace

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  absl::string_view host = address;
  const size_t colon = address.rfind(':');
  if (colon != absl::string_view::npos) host = address.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written out in full.
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (octet.empty() || octet.size() > 3 || !absl::SimpleAtoi(octet, &value) ||
        value > 255) {
      return false;
    }
  }
  return true;
}

EnvironmentLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<ServerConfig> ParseConfig(int argc, char** argv,
                                         const EnvironmentLookup& env) {
  ServerConfig config;
  for (const Flag& flag : Flags().flags()) {
    if (std::optional<std::string> value = env(EnvName(flag.info.name))) {
      if (absl::Status s =
              Apply(flag, *value, EnvName(flag.info.name), &config);
          !s.ok()) {
        return s;
      }
    }
  }
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      return Bad(absl::StrCat("unexpected argument \"", arg,
                              "\" (flags look like --name=value)"));
    }
    std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(arg, absl::MaxSplits('=', 1));
    const bool has_value = arg.find('=') != absl::string_view::npos;
    const Flag* flag = FindFlag(parts.first);
    if (flag == nullptr) {
      return Bad(absl::StrCat("unknown flag --", parts.first, " (see --help)"));
    }
    std::string value;
    if (has_value) {
      value = std::string(parts.second);
    } else if (flag->info.is_bool) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Bad(absl::StrCat("--", flag->info.name, " needs a value"));
    }
    if (absl::Status s =
            Apply(*flag, value, absl::StrCat("--", flag->info.name), &config);
        !s.ok()) {
      return s;
    }
  }
  KeepChosenBackendSettings(&config);
  if (absl::Status s = Validate(&config); !s.ok()) return s;
  return config;
}

std::string ConfigUsage() {
  std::string usage =
      "Usage: sessiond [--flag=value ...]\n"
      "Every flag may also be set by its environment variable; a flag on the\n"
      "command line wins.\n\n";
  for (const Flag& flag : Flags().flags()) {
    absl::StrAppend(&usage, "  --", flag.info.name, " (",
                    EnvName(flag.info.name), ", default \"",
                    flag.info.default_text, "\")\n      ", flag.info.help,
                    "\n");
  }
  return usage;
}

}  // namespace sessiond
