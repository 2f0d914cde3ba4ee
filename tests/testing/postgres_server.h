// Test support: a real, throwaway PostgreSQL server.
//
// Start() creates a data directory under /tmp (the server runs as user
// "postgres" when the test runs as root, and cannot reach Bazel's private
// TEST_TMPDIR), runs initdb, starts `postgres` on a free loopback port with
// fsync on, waits until it accepts connections, and creates the database
// database(). Loopback connections are trusted (user "postgres", no
// password), except for roles made with CreatePasswordRole, which must log in
// with their password (scram-sha-256).
//
// The server can be stopped (fast shutdown), killed (SIGKILL to the
// postmaster and all its children, as in a crash), paused (SIGSTOP to all of
// them: a hung server whose kernel still accepts and acknowledges TCP), and
// started again on the same port and data directory. The destructor stops it
// and removes the directory.
//
// The binaries come from Debian's postgresql-15 package; without them Start()
// fails (tests must not silently skip) and says how to install them.
#ifndef SESSIOND_TESTS_TESTING_POSTGRES_SERVER_H_
#define SESSIOND_TESTS_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {

class PostgresServer {
 public:
  static constexpr char kDefaultBinDir[] = "/usr/lib/postgresql/15/bin";
  // The group role whose members must log in with a password.
  static constexpr char kPasswordGroup[] = "sessiond_password_users";

  explicit PostgresServer(std::string bin_dir = kDefaultBinDir);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // initdb, start, wait until ready, create database(). Call once.
  absl::Status Start();
  // Fast shutdown (SIGINT): open transactions roll back, clients are
  // disconnected, committed data is flushed. Waits for the exit.
  absl::Status Stop();
  // Stop() if running, then starts again on the same port and data
  // directory and waits until ready.
  absl::Status Restart();
  // SIGKILL to the postmaster and all its children, as if the machine
  // crashed; Restart() then runs crash recovery.
  absl::Status Kill();
  // SIGSTOP / SIGCONT to every server process: a server that hangs while
  // its TCP connections stay open.
  absl::Status Pause();
  absl::Status Resume();
  bool running();

  int port() const { return port_; }
  // The database created by Start().
  const std::string& database() const { return database_; }
  // libpq connection string for the superuser "postgres" (trusted, no
  // password) and `database` (default: database()).
  std::string dsn(const std::string& database = "") const;
  // The server's log since it was last (re)started.
  std::string Log() const;

  // Creates an empty database named `prefix`_N (N unique in this process)
  // and returns its name. Thread-safe.
  absl::StatusOr<std::string> CreateDatabase(const std::string& prefix = "db");
  // Runs `sql` as the superuser in `database` (default: database()).
  absl::Status Exec(const std::string& sql, const std::string& database = "");
  // The first column of the first row of `sql`, as text ("" for NULL).
  absl::StatusOr<std::string> QueryValue(const std::string& sql,
                                         const std::string& database = "");
  // A login role that must authenticate with `password` (scram-sha-256) and
  // owns nothing; grant it what the test needs.
  absl::Status CreatePasswordRole(const std::string& role,
                                  const std::string& password);

 private:
  absl::Status StartServer();
  absl::Status WaitUntilReady(absl::Duration timeout);
  // The postmaster's child processes (backends and helpers).
  std::vector<pid_t> Children() const;

  const std::string bin_dir_;
  const std::string database_ = "sessiond_test";
  std::string root_;  // Temp dir: data/, sockets, logs.
  int port_ = 0;
  int starts_ = 0;
  bool paused_ = false;
  std::vector<pid_t> paused_children_;
  std::unique_ptr<Subprocess> server_;
  std::atomic<int> next_database_{0};
};

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_TESTING_POSTGRES_SERVER_H_
