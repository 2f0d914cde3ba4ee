// Test support: child processes (sessiond, postgres, redis-server) started
// and stopped by tests, free loopback ports, and temporary directories.
#ifndef SESSIOND_TESTS_TESTING_SUBPROCESS_H_
#define SESSIOND_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sessiond::testing {

struct SubprocessOptions {
  // argv[0] is the executable's path.
  std::vector<std::string> argv;
  // Receives the child's stdout and stderr (truncated first).
  std::string log_path;
  // If set (and the test runs as root), the child runs as this user, e.g.
  // "postgres", which refuses to run as root.
  std::optional<std::string> run_as_user;
};

// A child process. Killed (SIGKILL) and reaped on destruction if it still
// runs. The kernel also kills it when the thread that spawned it exits (so
// that no server outlives a test Bazel killed): spawn long-lived children
// from the test's main thread.
class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(
      const SubprocessOptions& options);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // True until the child has exited (and been reaped).
  bool Running();
  // Waits up to `timeout` for the exit; returns the exit code, or 128 + the
  // signal number if a signal ended it. DEADLINE_EXCEEDED if still running.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);
  // Sends `signal`, then WaitForExit(timeout); SIGKILLs the child if it did
  // not exit in time (and still returns DEADLINE_EXCEEDED).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

 private:
  Subprocess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int PickFreePort();

// Connects to 127.0.0.1:`port` until it accepts, for up to `timeout`.
// Fails early (with the process's log) if `process` exits meanwhile.
absl::Status WaitForPort(int port, absl::Duration timeout,
                         Subprocess* process = nullptr);

// A fresh, empty directory, mode 0755, under TEST_TMPDIR (or under /tmp
// when `world_traversable`, for children that run as another user and cannot
// reach Bazel's private test directory). `owner`, if set, becomes its owner.
std::string MakeTempDir(const std::string& prefix,
                        bool world_traversable = false,
                        const std::optional<std::string>& owner = std::nullopt);

// Removes a directory tree (best effort).
void RemoveTree(const std::string& path);

// The whole content of a file ("" if it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_TESTING_SUBPROCESS_H_
