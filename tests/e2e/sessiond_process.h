// SessiondProcess: runs the real sessiond binary as a child process on a free
// loopback port, for end-to-end tests.
#ifndef SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_
#define SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sessiond::testing {

// The sessiond binary in this test's runfiles.
std::string SessiondBinaryPath();

// A fresh directory under TEST_TMPDIR.
std::string MakeTempDir(const std::string& name);

class SessiondProcess {
 public:
  // Starts sessiond with `flags` plus --listen=127.0.0.1:0, its stderr going
  // to `log_path`, and waits (up to 30 s) until it logs the port it serves
  // on. An error carries the log if the process exits first.
  static absl::StatusOr<std::unique_ptr<SessiondProcess>> Start(
      const std::vector<std::string>& flags, const std::string& log_path);

  // Runs sessiond with `flags` to completion (at most `timeout`) and returns
  // its exit code; its stderr goes to `log_path`.
  static absl::StatusOr<int> RunToExit(const std::vector<std::string>& flags,
                                       const std::string& log_path,
                                       absl::Duration timeout);

  // Kills the process if it still runs.
  ~SessiondProcess();

  int port() const { return port_; }
  std::string address() const;
  const std::string& log_path() const { return log_path_; }

  // Sends `signal` and waits up to `timeout` for the exit; returns the exit
  // code (128 + signal number if a signal ended it). DEADLINE_EXCEEDED if it
  // did not exit in time (it is then killed).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);

 private:
  SessiondProcess(pid_t pid, int port, std::string log_path)
      : pid_(pid), port_(port), log_path_(std::move(log_path)) {}

  pid_t pid_;
  int port_;
  std::string log_path_;
};

// The whole content of a file ("" if it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_
