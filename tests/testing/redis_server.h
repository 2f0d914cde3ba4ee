// RedisServer: a real redis-server (Valkey-protocol compatible) as a child
// process on a free loopback port, for tests of the Valkey backend.
//
// The server persists to an append-only file with fsync on every write
// (--appendonly yes --appendfsync always, no RDB snapshots) in a private
// temporary directory, so Stop()/Kill() followed by Restart() keeps every
// acknowledged write. Pause()/Resume() stop and continue the process
// (SIGSTOP/SIGCONT): a hung server whose port still accepts connections.
#ifndef SESSIOND_TESTS_TESTING_REDIS_SERVER_H_
#define SESSIOND_TESTS_TESTING_REDIS_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {

struct RedisServerOptions {
  // If set, --requirepass (the default user's password).
  std::string password;
  // Cluster mode (--cluster-enabled yes), with the cluster bus on a free
  // port of its own. The node owns no slots until told (CLUSTER
  // ADDSLOTSRANGE).
  bool cluster = false;
  // More command-line arguments, e.g. {"--cluster-enabled", "yes"}.
  std::vector<std::string> extra_args;
  std::string binary = "/usr/bin/redis-server";
  // How long Start() and Restart() wait for the server to answer PING.
  absl::Duration start_timeout = absl::Seconds(30);
};

// A reply, as RedisServer::Command returns it.
struct RedisReply {
  enum class Type { kString, kStatus, kInteger, kNil, kArray, kError };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  int64_t integer = 0;
  std::vector<RedisReply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
};

class RedisServer {
 public:
  // Starts the server and waits until it answers PING. FAILED_PRECONDITION
  // (saying to run tools/install_deps.sh --test) if the binary is missing.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      const RedisServerOptions& options = {});

  // Kills the server if it still runs and removes its directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::string host() const { return "127.0.0.1"; }
  int port() const { return port_; }
  // The data directory (--dir).
  const std::string& dir() const { return dir_; }
  // The current process's output.
  std::string log() const;
  bool running();

  // SIGTERM, and waits for the exit: the server flushes its AOF first.
  absl::Status Stop();
  // SIGKILL, and waits for the exit.
  absl::Status Kill();
  // Stops the server if it runs, then starts it again on the same port with
  // the same directory (so the data survives) and waits for PING.
  absl::Status Restart();
  // SIGSTOP / SIGCONT.
  absl::Status Pause();
  absl::Status Resume();

  // Runs one command on a new connection (authenticated, on database `db`).
  // An error reply is a reply of Type::kError; a connection failure is an
  // error status.
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& args,
                                     int db = 0) const;

 private:
  RedisServer(RedisServerOptions options, std::string dir, int port,
              int cluster_port)
      : options_(std::move(options)),
        dir_(std::move(dir)),
        port_(port),
        cluster_port_(cluster_port) {}

  // Spawns the server on port_ and waits until it answers PING.
  absl::Status Launch();

  const RedisServerOptions options_;
  const std::string dir_;
  const int port_;
  const int cluster_port_;  // 0 unless options_.cluster
  int launches_ = 0;
  bool paused_ = false;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_TESTING_REDIS_SERVER_H_
