#include "server/config.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sessiond {
namespace {

using Setter =
    std::function<absl::Status(absl::string_view value, ServerConfig* config)>;

struct FlagSpec {
  std::string name;  // With underscores.
  std::string default_text;
  std::string help;
  bool is_bool;
  Setter set;
};

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

Setter StringFlag(std::string ServerConfig::*field) {
  return [field](absl::string_view value, ServerConfig* c) {
    c->*field = std::string(value);
    return absl::OkStatus();
  };
}

template <typename Field>
Setter IntFlag(Field field, int64_t min, int64_t max) {
  return [field, min, max](absl::string_view value, ServerConfig* c) {
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(value, &parsed) || parsed < min || parsed > max) {
      return Bad(absl::StrCat("must be an integer from ", min, " to ", max));
    }
    field(c) = static_cast<std::remove_reference_t<decltype(field(c))>>(parsed);
    return absl::OkStatus();
  };
}

template <typename Field>
Setter DurationFlag(Field field, absl::Duration min, absl::Duration max) {
  return [field, min, max](absl::string_view value, ServerConfig* c) {
    absl::Duration parsed;
    if (!absl::ParseDuration(value, &parsed) || parsed < min || parsed > max) {
      return Bad(absl::StrCat("must be a duration (like 90s, 30m, 12h) from ",
                              absl::FormatDuration(min), " to ",
                              absl::FormatDuration(max)));
    }
    field(c) = parsed;
    return absl::OkStatus();
  };
}

Setter BoolFlag(bool ServerConfig::*field) {
  return [field](absl::string_view value, ServerConfig* c) {
    const std::string v = absl::AsciiStrToLower(value);
    if (v == "true" || v == "1" || v == "yes") {
      c->*field = true;
    } else if (v == "false" || v == "0" || v == "no") {
      c->*field = false;
    } else {
      return Bad("must be true or false");
    }
    return absl::OkStatus();
  };
}

const std::vector<FlagSpec>& Flags() {
  static const auto* const flags = new std::vector<FlagSpec>{
      {"listen", "0.0.0.0:50051", "address to serve gRPC on (host:port)", false,
       [](absl::string_view v, ServerConfig* c) {
         if (v.find(':') == absl::string_view::npos) {
           return Bad("must be host:port");
         }
         c->grpc.listen_address = std::string(v);
         return absl::OkStatus();
       }},
      {"health_listen", "",
       "also serve grpc.health.v1 alone, in plaintext, on this host:port "
       "(for probes that cannot speak TLS); empty: no",
       false,
       [](absl::string_view v, ServerConfig* c) {
         if (!v.empty() && v.find(':') == absl::string_view::npos) {
           return Bad("must be host:port");
         }
         c->grpc.health_listen_address = std::string(v);
         return absl::OkStatus();
       }},
      {"backend", "sqlite",
       "storage backend: sqlite, memory, postgres or valkey", false,
       [](absl::string_view v, ServerConfig* c) {
         for (const char* name : storage::kBackendNames) {
           if (v == name) {
             c->backend_config.backend = std::string(v);
             return absl::OkStatus();
           }
         }
         return Bad(
             absl::StrCat("unknown backend \"", v,
                          "\" (expected sqlite, memory, postgres or valkey)"));
       }},
      {"db_path", "./sessiond.db", "SQLite database file", false,
       [](absl::string_view v, ServerConfig* c) {
         c->backend_config.sqlite_path = std::string(v);
         return absl::OkStatus();
       }},
      {"postgres_dsn", "",
       "postgres: libpq connection string or URI, without a password", false,
       [](absl::string_view v, ServerConfig* c) {
         c->backend_config.postgres.dsn = std::string(v);
         return absl::OkStatus();
       }},
      {"postgres_password_file", "", "postgres: file holding the password",
       false,
       [](absl::string_view v, ServerConfig* c) {
         c->backend_config.postgres.password_file = std::string(v);
         return absl::OkStatus();
       }},
      {"postgres_pool_size", "8", "postgres: connections in the pool", false,
       IntFlag([](ServerConfig* c)
                   -> int& { return c->backend_config.postgres.pool_size; },
               1, 1000)},
      {"postgres_statement_timeout", "5s",
       "postgres: server-side bound on each statement", false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& {
             return c->backend_config.postgres.statement_timeout;
           },
           absl::Milliseconds(100), absl::Minutes(10))},
      {"valkey_address", "127.0.0.1:6379", "valkey: host:port", false,
       [](absl::string_view v, ServerConfig* c) {
         const size_t colon = v.rfind(':');
         int port = 0;
         if (colon == absl::string_view::npos || colon == 0 ||
             !absl::SimpleAtoi(v.substr(colon + 1), &port) || port < 1 ||
             port > 65535) {
           return Bad("must be host:port");
         }
         c->backend_config.valkey.host = std::string(v.substr(0, colon));
         c->backend_config.valkey.port = port;
         return absl::OkStatus();
       }},
      {"valkey_database", "0", "valkey: database number (SELECT)", false,
       IntFlag([](ServerConfig* c)
                   -> int& { return c->backend_config.valkey.database; },
               0, 1000)},
      {"valkey_username", "", "valkey: ACL user name for AUTH", false,
       [](absl::string_view v, ServerConfig* c) {
         c->backend_config.valkey.username = std::string(v);
         return absl::OkStatus();
       }},
      {"valkey_password_file", "", "valkey: file holding the AUTH password",
       false,
       [](absl::string_view v, ServerConfig* c) {
         c->backend_config.valkey.password_file = std::string(v);
         return absl::OkStatus();
       }},
      {"valkey_key_prefix", "sessiond",
       "valkey: prefix (and cluster hash tag) of every key", false,
       [](absl::string_view v, ServerConfig* c) {
         if (v.empty() || v.find_first_of("{}") != absl::string_view::npos) {
           return Bad("must be non-empty, without { or }");
         }
         c->backend_config.valkey.key_prefix = std::string(v);
         return absl::OkStatus();
       }},
      {"valkey_pool_size", "8", "valkey: connections in the pool", false,
       IntFlag([](ServerConfig* c)
                   -> int& { return c->backend_config.valkey.pool_size; },
               1, 1000)},
      {"valkey_timeout", "2s",
       "valkey: bound on connecting and on each command", false,
       [](absl::string_view v, ServerConfig* c) {
         absl::Duration d;
         if (!absl::ParseDuration(v, &d) || d < absl::Milliseconds(10) ||
             d > absl::Minutes(1)) {
           return Bad("must be a duration from 10ms to 1m");
         }
         c->backend_config.valkey.connect_timeout = d;
         c->backend_config.valkey.command_timeout = d;
         return absl::OkStatus();
       }},
      {"key_files", "",
       "comma-separated key files (base64 of 32 bytes, mode 0600); the first "
       "seals new data, all of them open existing data",
       false,
       [](absl::string_view v, ServerConfig* c) {
         c->key_files.clear();
         for (absl::string_view path : absl::StrSplit(v, ',')) {
           path = absl::StripAsciiWhitespace(path);
           if (!path.empty()) c->key_files.emplace_back(path);
         }
         return absl::OkStatus();
       }},
      {"create_key_if_missing", "false",
       "create the key file (one path in --key_files) if it does not exist",
       true, BoolFlag(&ServerConfig::create_key_if_missing)},
      {"insecure_plaintext", "false",
       "store session data unencrypted (no key files); for development only",
       true, BoolFlag(&ServerConfig::insecure_plaintext)},
      {"tls_cert_file", "",
       "PEM certificate chain: serve TLS only (with --tls_key_file)", false,
       StringFlag(&ServerConfig::tls_cert_file)},
      {"tls_key_file", "", "PEM private key of --tls_cert_file", false,
       StringFlag(&ServerConfig::tls_key_file)},
      {"tls_client_ca_file", "",
       "PEM CA certificates: require client certificates signed by them "
       "(mutual TLS)",
       false, StringFlag(&ServerConfig::tls_client_ca_file)},
      {"idle_timeout", "30m", "default idle timeout (sliding expiry)", false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& {
             return c->handler.default_idle_timeout;
           },
           absl::Seconds(1), absl::Hours(24 * 400))},
      {"absolute_lifetime", "12h",
       "default absolute lifetime, counted from creation", false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& {
             return c->handler.default_absolute_lifetime;
           },
           absl::Seconds(1), absl::Hours(24 * 400))},
      {"touch_interval", "1m",
       "a touching Load writes only if the last activity is this old", false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& {
             return c->handler.touch_interval;
           },
           absl::ZeroDuration(), absl::Hours(24))},
      {"max_payload_bytes", "65536",
       "limit on a session's stored payload (data and metadata, after "
       "encryption)",
       false,
       IntFlag([](ServerConfig* c)
                   -> int64_t& { return c->handler.max_payload_bytes; },
               64, 1024 * 1024)},
      {"max_sessions_per_user", "0",
       "cap on a user's live sessions; creating one more evicts the least "
       "recently active (0: no cap)",
       false,
       IntFlag([](ServerConfig* c)
                   -> int& { return c->store.max_sessions_per_user; },
               0, 1000000)},
      {"prune_interval", "5m",
       "how often expired sessions are removed in the background (0: never)",
       false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& { return c->prune_interval; },
           absl::ZeroDuration(), absl::Hours(24))},
      {"threads", "0",
       "gRPC completion-queue threads (0: twice the number of cores)", false,
       IntFlag([](ServerConfig* c) -> int& { return c->grpc.threads; }, 0,
               1024)},
      {"shutdown_drain_delay", "0s",
       "after SIGTERM or SIGINT, keep serving this long while health checks "
       "report NOT_SERVING, so load balancers drain this replica first",
       false,
       DurationFlag([](ServerConfig* c)
                        -> absl::Duration& { return c->shutdown_drain_delay; },
                    absl::ZeroDuration(), absl::Minutes(5))},
      {"shutdown_grace", "10s",
       "how long in-flight calls may finish after SIGTERM or SIGINT", false,
       DurationFlag(
           [](ServerConfig* c) -> absl::Duration& { return c->shutdown_grace; },
           absl::ZeroDuration(), absl::Minutes(10))},
  };
  return *flags;
}

std::string EnvName(const std::string& flag) {
  return absl::StrCat("SESSIOND_", absl::AsciiStrToUpper(flag));
}

const FlagSpec* FindFlag(absl::string_view name) {
  const std::string normalized = absl::StrReplaceAll(name, {{"-", "_"}});
  for (const FlagSpec& spec : Flags()) {
    if (spec.name == normalized) return &spec;
  }
  return nullptr;
}

absl::Status Apply(const FlagSpec& spec, absl::string_view value,
                   absl::string_view source, ServerConfig* config) {
  absl::Status status = spec.set(value, config);
  if (!status.ok()) {
    return Bad(absl::StrCat(source, ": ", status.message()));
  }
  return absl::OkStatus();
}

// True if a libpq DSN carries a password: "password=" in key=value form, or
// "user:password@" in a URI.
bool DsnHasPassword(absl::string_view dsn) {
  const std::string lower = absl::AsciiStrToLower(dsn);
  if (lower.find("password") != std::string::npos) return true;
  const size_t scheme = lower.find("://");
  if (scheme == std::string::npos) return false;
  const size_t at = lower.find('@', scheme);
  const size_t colon = lower.find(':', scheme + 3);
  return at != std::string::npos && colon != std::string::npos && colon < at;
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
  if (config->handler.touch_interval * 2 >
      config->handler.default_idle_timeout) {
    return Bad(
        absl::StrCat("--touch_interval (",
                     absl::FormatDuration(config->handler.touch_interval),
                     ") must be at most half of --idle_timeout (",
                     absl::FormatDuration(config->handler.default_idle_timeout),
                     "), or touched sessions could expire between writes"));
  }
  if (config->tls_cert_file.empty() != config->tls_key_file.empty()) {
    return Bad("--tls_cert_file and --tls_key_file go together");
  }
  if (!config->tls_client_ca_file.empty() && config->tls_cert_file.empty()) {
    return Bad("--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
  }
  if (config->create_key_if_missing && config->key_files.size() != 1) {
    return Bad("--create_key_if_missing needs exactly one path in --key_files");
  }
  if (DsnHasPassword(config->backend_config.postgres.dsn)) {
    return Bad(
        "--postgres_dsn must not contain a password (it would show in "
        "process listings and logs); put it in --postgres_password_file");
  }
  if (config->backend_config.backend == "postgres" &&
      config->backend_config.postgres.dsn.empty()) {
    return Bad("--postgres_dsn is required with --backend=postgres");
  }
  if (config->backend_config.backend == "sqlite" &&
      config->backend_config.sqlite_path.empty()) {
    return Bad("--db_path: must not be empty with --backend=sqlite");
  }
  return absl::OkStatus();
}

}  // namespace

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
  for (const FlagSpec& spec : Flags()) {
    if (std::optional<std::string> value = env(EnvName(spec.name))) {
      if (absl::Status s = Apply(spec, *value, EnvName(spec.name), &config);
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
    const FlagSpec* spec = FindFlag(parts.first);
    if (spec == nullptr) {
      return Bad(absl::StrCat("unknown flag --", parts.first, " (see --help)"));
    }
    std::string value;
    if (has_value) {
      value = std::string(parts.second);
    } else if (spec->is_bool) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Bad(absl::StrCat("--", spec->name, " needs a value"));
    }
    if (absl::Status s =
            Apply(*spec, value, absl::StrCat("--", spec->name), &config);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = Validate(&config); !s.ok()) return s;
  return config;
}

std::string ConfigUsage() {
  std::string usage =
      "Usage: sessiond [--flag=value ...]\n"
      "Every flag may also be set by its environment variable; a flag on the\n"
      "command line wins.\n\n";
  for (const FlagSpec& spec : Flags()) {
    absl::StrAppend(&usage, "  --", spec.name, " (", EnvName(spec.name),
                    ", default \"", spec.default_text, "\")\n      ", spec.help,
                    "\n");
  }
  return usage;
}

}  // namespace sessiond
