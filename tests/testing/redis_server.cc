#include "tests/testing/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sessiond::testing {
namespace {

RedisReply Convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t k = 0; k < r->elements; ++k) {
        out.elements.push_back(Convert(r->element[k]));
      }
      break;
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  if (r->str != nullptr) out.str.assign(r->str, r->len);
  return out;
}

// Sends one command on `c`; an error status if the connection fails.
absl::StatusOr<RedisReply> Send(redisContext* c,
                                const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(redisCommandArgv(
      c, static_cast<int>(argv.size()), argv.data(), lengths.data()));
  if (reply == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("redis connection error: ", c->errstr));
  }
  RedisReply out = Convert(reply);
  freeReplyObject(reply);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    const RedisServerOptions& options) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.binary,
        " is missing: the Valkey backend's tests need a real redis-server "
        "(or valkey-server); run tools/install_deps.sh --test"));
  }
  // The port was free a moment ago; another process may take it before the
  // server binds. Try a few. (A failed attempt's directory goes with it.)
  absl::Status status;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::string dir = MakeTempDir("redis");
    if (dir.empty()) {
      return absl::InternalError("cannot create a temporary directory");
    }
    std::unique_ptr<RedisServer> server(new RedisServer(
        options, dir, PickFreePort(), options.cluster ? PickFreePort() : 0));
    status = server->Launch();
    if (status.ok()) return server;
    if (!absl::StrContains(status.message(), "Address already in use")) break;
  }
  return status;
}

RedisServer::~RedisServer() {
  if (process_ != nullptr && process_->Running()) {
    (void)process_->Stop(SIGKILL, absl::Seconds(10));
  }
  process_.reset();
  RemoveTree(dir_);
}

std::string RedisServer::log() const {
  return process_ == nullptr ? "" : ReadFileOrEmpty(process_->log_path());
}

bool RedisServer::running() {
  return process_ != nullptr && process_->Running();
}

absl::Status RedisServer::Launch() {
  std::vector<std::string> argv = {options_.binary,
                                   "--bind",
                                   "127.0.0.1",
                                   "--port",
                                   absl::StrCat(port_),
                                   "--dir",
                                   dir_,
                                   "--appendonly",
                                   "yes",
                                   "--appendfsync",
                                   "always",
                                   "--save",
                                   "",
                                   "--daemonize",
                                   "no",
                                   "--logfile",
                                   ""};
  if (!options_.password.empty()) {
    argv.push_back("--requirepass");
    argv.push_back(options_.password);
  }
  if (options_.cluster) {
    // An explicit bus port: the default (port + 10000) may be taken, or
    // beyond 65535.
    for (const std::string& arg :
         {std::string("--cluster-enabled"), std::string("yes"),
          std::string("--cluster-config-file"), std::string("nodes.conf"),
          std::string("--cluster-port"), absl::StrCat(cluster_port_)}) {
      argv.push_back(arg);
    }
  }
  argv.insert(argv.end(), options_.extra_args.begin(),
              options_.extra_args.end());
  const std::string log_path =
      absl::StrCat(dir_, "/redis-server.", ++launches_, ".log");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn({argv, log_path, std::nullopt});
  if (!process.ok()) return process.status();
  process_ = *std::move(process);
  paused_ = false;

  const absl::Time deadline = absl::Now() + options_.start_timeout;
  std::string last_error;
  while (absl::Now() < deadline) {
    if (!process_->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("redis-server exited while starting; its log:\n",
                       ReadFileOrEmpty(log_path)));
    }
    absl::StatusOr<RedisReply> pong = Command({"PING"});
    if (pong.ok() && pong->type == RedisReply::Type::kStatus &&
        pong->str == "PONG") {
      return absl::OkStatus();
    }
    last_error = pong.ok() ? pong->str : std::string(pong.status().message());
    absl::SleepFor(absl::Milliseconds(20));
  }
  (void)process_->Stop(SIGKILL, absl::Seconds(10));
  return absl::DeadlineExceededError(absl::StrCat(
      "redis-server did not answer PING within ",
      absl::FormatDuration(options_.start_timeout), " (last: ", last_error,
      "); its log:\n", ReadFileOrEmpty(log_path)));
}

absl::Status RedisServer::Stop() {
  if (!running()) return absl::OkStatus();
  if (paused_) {
    if (absl::Status s = Resume(); !s.ok()) return s;
  }
  absl::StatusOr<int> code = process_->Stop(SIGTERM, absl::Seconds(30));
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat("redis-server exited with ", *code,
                                            " on SIGTERM; its log:\n", log()));
  }
  return absl::OkStatus();
}

absl::Status RedisServer::Kill() {
  if (!running()) return absl::OkStatus();
  absl::StatusOr<int> code = process_->Stop(SIGKILL, absl::Seconds(10));
  paused_ = false;
  return code.status();
}

absl::Status RedisServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch();
}

absl::Status RedisServer::Pause() {
  if (!running()) return absl::FailedPreconditionError("not running");
  if (kill(process_->pid(), SIGSTOP) != 0) {
    return absl::InternalError("kill(SIGSTOP) failed");
  }
  paused_ = true;
  return absl::OkStatus();
}

absl::Status RedisServer::Resume() {
  if (!running()) return absl::FailedPreconditionError("not running");
  if (kill(process_->pid(), SIGCONT) != 0) {
    return absl::InternalError("kill(SIGCONT) failed");
  }
  paused_ = false;
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisServer::Command(
    const std::vector<std::string>& args, int db) const {
  timeval connect_timeout = {2, 0};
  redisContext* c =
      redisConnectWithTimeout(host().c_str(), port_, connect_timeout);
  if (c == nullptr) return absl::InternalError("out of memory");
  struct Closer {
    redisContext* c;
    ~Closer() { redisFree(c); }
  } closer{c};
  if (c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to redis-server: ", c->errstr));
  }
  timeval command_timeout = {30, 0};
  redisSetTimeout(c, command_timeout);
  if (!options_.password.empty()) {
    absl::StatusOr<RedisReply> auth = Send(c, {"AUTH", options_.password});
    if (!auth.ok()) return auth.status();
    if (auth->is_error()) return *auth;
  }
  if (db != 0) {
    absl::StatusOr<RedisReply> select = Send(c, {"SELECT", absl::StrCat(db)});
    if (!select.ok()) return select.status();
    if (select->is_error()) return *select;
  }
  return Send(c, args);
}

}  // namespace sessiond::testing
