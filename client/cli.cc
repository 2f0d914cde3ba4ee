#include "client/cli.h"

#include <algorithm>
#include <fstream>
#include <istream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "crypto/secret_file.h"

namespace sessiond {
namespace {

constexpr char kUsage[] =
    R"(usage: sessionctl [--addr HOST:PORT] [--deadline DURATION] COMMAND [ARGS]

commands:
  create [--user U] [--data TEXT] [--meta K=V]...
        Create a session. Prints its token (the only command that does).
  load TOKEN [--touch]
        Show the live session for TOKEN; --touch extends its idle expiry.
  list USER [--page-size N] [--page-token T]
        List USER's live sessions, most recently active first.
  delete --token TOKEN | --id ID | --user U [--except-id ID]
        Delete one session, or every session of U (but ID). Prints the count.
  prune
        Remove expired sessions now. Prints the count.
  health
        Show whether the storage backend answers. Exit 1 if not serving.

global flags:
  --addr HOST:PORT     server (default: $SESSIOND_ADDR, else 127.0.0.1:50051)
  --deadline DURATION  bound on the whole command, e.g. 500ms or 5s (default 2s)
  --tls-ca FILE        use TLS, trusting servers signed by this PEM CA
  --tls-cert FILE      with --tls-key: present this client certificate (mTLS)
  --tls-key FILE       the client certificate's PEM private key
  --api-key-file FILE  send the API key in FILE (mode 0600) as the caller's
                       identity ($SESSIOND_API_KEY_FILE)

A TOKEN given as "-" is read from stdin, keeping it out of argv and history.
Session data is shown as its size only. Exit status: 0 ok, 1 RPC error,
2 usage error.
)";

const std::set<std::string>& BoolFlags() {
  static const auto* flags = new std::set<std::string>{"help", "touch"};
  return *flags;
}

const std::set<std::string>& GlobalFlags() {
  static const auto* flags =
      new std::set<std::string>{"addr",   "api-key-file", "deadline", "help",
                                "tls-ca", "tls-cert",     "tls-key"};
  return *flags;
}

struct Command {
  size_t positional;            // Arguments after the command name.
  std::set<std::string> flags;  // Besides the global ones.
};

const std::map<std::string, Command>& Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"create", {0, {"user", "data", "meta"}}},
      {"load", {1, {"touch"}}},
      {"list", {1, {"page-size", "page-token"}}},
      {"delete", {0, {"token", "id", "user", "except-id"}}},
      {"prune", {0, {}}},
      {"health", {0, {}}},
  };
  return *commands;
}

bool IsKnownFlag(const std::string& name) {
  if (GlobalFlags().count(name) > 0) return true;
  for (const auto& [unused, command] : Commands()) {
    if (command.flags.count(name) > 0) return true;
  }
  return false;
}

struct Args {
  std::vector<std::string> positional;  // The command name first.
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::string Get(const std::string& name) const {
    auto it = flags.find(name);
    return it == flags.end() ? "" : it->second.back();
  }
};

// Flags go anywhere: --name VALUE, --name=VALUE, or --name for booleans.
// Error messages name the flag but never echo a value (it may be a token).
absl::Status Parse(const std::vector<std::string>& argv, Args& args) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      args.positional.insert(args.positional.end(), argv.begin() + i + 1,
                             argv.end());
      break;
    }
    if (arg == "-h") arg = "--help";
    if (arg.size() <= 2 || arg.compare(0, 2, "--") != 0) {
      args.positional.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name =
        arg.substr(2, eq == std::string::npos ? eq : eq - 2);
    if (!IsKnownFlag(name)) {
      return absl::InvalidArgumentError("unknown flag --" + name);
    }
    std::string value;
    if (BoolFlags().count(name) > 0) {
      if (eq != std::string::npos) {
        return absl::InvalidArgumentError("--" + name + " takes no value");
      }
    } else if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError("--" + name + " needs a value");
    }
    std::vector<std::string>& values = args.flags[name];
    if (!values.empty() && name != "meta") {
      return absl::InvalidArgumentError("--" + name + " given twice");
    }
    values.push_back(std::move(value));
  }
  return absl::OkStatus();
}

// "-" means: read one line from `in`.
absl::Status ResolveSecret(std::istream& in, std::string& secret) {
  if (secret != "-") return absl::OkStatus();
  std::string line;
  std::getline(in, line);
  secret = std::string(absl::StripAsciiWhitespace(line));
  if (secret.empty()) return absl::InvalidArgumentError("no token on stdin");
  return absl::OkStatus();
}

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  const absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  if (d.seconds() == 0 && d.nanos() == 0) return "-";
  return absl::FormatDuration(absl::Seconds(d.seconds()) +
                              absl::Nanoseconds(d.nanos()));
}

// The session has no token field; data is shown as its size only.
void PrintSession(const v1::Session& s, std::ostream& out) {
  out << "id: " << s.id() << "\n"
      << "user_id: " << (s.user_id().empty() ? "-" : s.user_id()) << "\n"
      << "version: " << s.version() << "\n"
      << "created_at: " << FormatTimestamp(s.created_at()) << "\n"
      << "last_active_at: " << FormatTimestamp(s.last_active_at()) << "\n"
      << "expires_at: " << FormatTimestamp(s.expires_at()) << "\n"
      << "idle_timeout: " << FormatDuration(s.idle_timeout()) << "\n"
      << "absolute_lifetime: " << FormatDuration(s.absolute_lifetime()) << "\n"
      << "data: " << s.data().size() << " bytes\n";
  // Sorted: proto map order is unspecified.
  std::map<std::string, std::string> metadata(s.metadata().begin(),
                                              s.metadata().end());
  for (const auto& [key, value] : metadata) {
    out << "metadata." << key << ": " << value << "\n";
  }
}

int Usage(std::ostream& err, absl::string_view problem) {
  err << "sessionctl: " << problem << "\n"
      << "run 'sessionctl --help' for usage\n";
  return kExitUsage;
}

// Prints "error: CODE: message", with `secret` (if any) masked out.
int RpcError(std::ostream& err, const absl::Status& status,
             const std::string& secret = "") {
  std::string message(status.message());
  if (!secret.empty()) {
    absl::StrReplaceAll({{secret, "<redacted>"}}, &message);
  }
  err << "error: " << absl::StatusCodeToString(status.code()) << ": " << message
      << "\n";
  return kExitRpcError;
}

int RunCreate(const Client& client, const Args& args, std::ostream& out,
              std::ostream& err) {
  Client::Metadata metadata;
  if (args.Has("meta")) {
    for (const std::string& kv : args.flags.at("meta")) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return Usage(err, "--meta wants KEY=VALUE");
      }
      metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  absl::StatusOr<v1::SaveResponse> r =
      client.Create(args.Get("user"), args.Get("data"), metadata);
  if (!r.ok()) return RpcError(err, r.status());
  out << "token: " << r->token() << "\n";
  PrintSession(r->session(), out);
  return kExitOk;
}

int RunLoad(const Client& client, const Args& args, std::istream& in,
            std::ostream& out, std::ostream& err) {
  std::string token = args.positional[1];
  if (absl::Status s = ResolveSecret(in, token); !s.ok()) {
    return Usage(err, s.message());
  }
  absl::StatusOr<v1::LoadResponse> r = client.Load(token, args.Has("touch"));
  if (!r.ok()) return RpcError(err, r.status(), token);
  PrintSession(r->session(), out);
  return kExitOk;
}

int RunList(const Client& client, const Args& args, std::ostream& out,
            std::ostream& err) {
  int page_size = 0;
  if (args.Has("page-size") &&
      (!absl::SimpleAtoi(args.Get("page-size"), &page_size) || page_size < 0)) {
    return Usage(err, "--page-size wants a non-negative integer");
  }
  absl::StatusOr<v1::ListForUserResponse> r =
      client.ListForUser(args.positional[1], page_size, args.Get("page-token"));
  if (!r.ok()) return RpcError(err, r.status());
  out << r->sessions_size() << " session(s)\n";
  for (const v1::Session& s : r->sessions()) {
    out << "\n";
    PrintSession(s, out);
  }
  if (!r->next_page_token().empty()) {
    out << "\nnext_page_token: " << r->next_page_token() << "\n";
  }
  return kExitOk;
}

int RunDelete(const Client& client, const Args& args, std::istream& in,
              std::ostream& out, std::ostream& err) {
  const int targets = static_cast<int>(args.Has("token")) +
                      static_cast<int>(args.Has("id")) +
                      static_cast<int>(args.Has("user"));
  if (targets != 1) {
    return Usage(err, "delete wants exactly one of --token, --id, --user");
  }
  if (args.Has("except-id") && !args.Has("user")) {
    return Usage(err, "--except-id goes with --user");
  }
  std::string token = args.Get("token");
  absl::StatusOr<v1::DeleteResponse> r;
  if (args.Has("token")) {
    if (absl::Status s = ResolveSecret(in, token); !s.ok()) {
      return Usage(err, s.message());
    }
    r = client.DeleteByToken(token);
  } else if (args.Has("id")) {
    r = client.DeleteById(args.Get("id"));
  } else {
    r = client.DeleteForUser(args.Get("user"), args.Get("except-id"));
  }
  if (!r.ok()) return RpcError(err, r.status(), token);
  out << "deleted: " << r->deleted() << "\n";
  return kExitOk;
}

int RunHealth(const Client& client, std::ostream& out, std::ostream& err) {
  absl::StatusOr<v1::HealthResponse> r = client.Health();
  if (!r.ok()) return RpcError(err, r.status());
  out << "serving: " << (r->serving() ? "yes" : "no") << "\n"
      << "backend: " << r->backend() << "\n"
      << "latency: " << FormatDuration(r->latency()) << "\n";
  if (!r->message().empty()) out << "message: " << r->message() << "\n";
  if (!r->serving()) {
    err << "error: not serving\n";
    return kExitRpcError;
  }
  return kExitOk;
}

}  // namespace

int RunSessionctl(const std::vector<std::string>& argv,
                  const std::optional<std::string>& env_addr, std::istream& in,
                  std::ostream& out, std::ostream& err) {
  Args args;
  if (absl::Status s = Parse(argv, args); !s.ok()) {
    return Usage(err, s.message());
  }
  if (args.Has("help")) {
    out << kUsage;
    return kExitOk;
  }
  if (args.positional.empty()) return Usage(err, "missing command");
  const std::string& name = args.positional[0];
  auto command = Commands().find(name);
  if (command == Commands().end()) {
    return Usage(err, "unknown command '" + name + "'");
  }
  for (const auto& [flag, unused] : args.flags) {
    if (GlobalFlags().count(flag) == 0 &&
        command->second.flags.count(flag) == 0) {
      return Usage(err, "--" + flag + " does not apply to " + name);
    }
  }
  if (args.positional.size() != command->second.positional + 1) {
    return Usage(err, name + " takes " +
                          std::to_string(command->second.positional) +
                          " argument(s)");
  }

  ClientOptions options;
  if (args.Has("deadline") &&
      (!absl::ParseDuration(args.Get("deadline"), &options.deadline) ||
       options.deadline <= absl::ZeroDuration() ||
       options.deadline == absl::InfiniteDuration())) {
    return Usage(err, "--deadline wants a positive duration such as 2s");
  }
  std::string addr = kDefaultAddr;
  if (args.Has("addr")) {
    addr = args.Get("addr");
  } else if (env_addr.has_value() && !env_addr->empty()) {
    addr = *env_addr;
  }
  if (addr.empty()) return Usage(err, "--addr is empty");
  if (args.Has("api-key-file")) {
    absl::StatusOr<crypto::Secret> key =
        crypto::ReadSecretFile(args.Get("api-key-file"), "API key file");
    if (!key.ok()) return Usage(err, key.status().message());
    options.api_key = std::string(key->view());
  }
  std::optional<ClientTls> tls;
  if (args.Has("tls-ca") || args.Has("tls-cert") || args.Has("tls-key")) {
    tls.emplace();
    const std::pair<const char*, std::string*> files[] = {
        {"tls-ca", &tls->root_ca_pem},
        {"tls-cert", &tls->cert_chain_pem},
        {"tls-key", &tls->private_key_pem}};
    for (const auto& [flag, pem] : files) {
      if (!args.Has(flag)) continue;
      std::ifstream file(args.Get(flag), std::ios::binary);
      std::stringstream content;
      content << file.rdbuf();
      if (!file || content.str().empty()) {
        return Usage(
            err, std::string("--") + flag + ": cannot read " + args.Get(flag));
      }
      *pem = content.str();
    }
  }
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(addr, options, tls);
  if (!client.ok()) return Usage(err, client.status().message());

  if (name == "create") return RunCreate(**client, args, out, err);
  if (name == "load") return RunLoad(**client, args, in, out, err);
  if (name == "list") return RunList(**client, args, out, err);
  if (name == "delete") return RunDelete(**client, args, in, out, err);
  if (name == "prune") {
    absl::StatusOr<v1::PruneResponse> r = (*client)->Prune();
    if (!r.ok()) return RpcError(err, r.status());
    out << "pruned: " << r->pruned() << "\n";
    return kExitOk;
  }
  return RunHealth(**client, out, err);
}

}  // namespace sessiond
