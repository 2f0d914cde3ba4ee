// SessiondProcess: the real sessiond binary as a child process on a free
// loopback port, for end-to-end tests.
#ifndef SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_
#define SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {

// The sessiond binary in this test's runfiles.
std::string SessiondBinaryPath();

class SessiondProcess {
 public:
  // Starts sessiond with `flags` plus --listen=127.0.0.1:0, its output going
  // to `log_path`, and waits (up to 30 s) until it logs the port it serves
  // on. An error carries the log if the process exits first.
  static absl::StatusOr<std::unique_ptr<SessiondProcess>> Start(
      const std::vector<std::string>& flags, const std::string& log_path);

  // Runs sessiond with `flags` to completion (at most `timeout`), listening
  // on loopback unless `flags` say otherwise, and returns its exit code; its
  // output goes to `log_path`.
  static absl::StatusOr<int> RunToExit(const std::vector<std::string>& flags,
                                       const std::string& log_path,
                                       absl::Duration timeout);

  int port() const { return port_; }
  pid_t pid() const { return process_->pid(); }
  std::string address() const;
  const std::string& log_path() const { return process_->log_path(); }

  // Sends `signal` and waits up to `timeout` for the exit code.
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout) {
    return process_->Stop(signal, timeout);
  }

 private:
  SessiondProcess(std::unique_ptr<Subprocess> process, int port)
      : process_(std::move(process)), port_(port) {}

  std::unique_ptr<Subprocess> process_;
  int port_;
};

// Calls `method` ("/package.Service/Method") on `address` (plaintext) with
// `request` as the request's wire bytes, waiting up to `timeout`. The
// response's wire bytes, or the call's status.
absl::StatusOr<std::string> CallRaw(const std::string& address,
                                    const std::string& method,
                                    const std::string& request,
                                    absl::Duration timeout);

// Calls the standard grpc.health.v1.Health/Check on `address` (plaintext)
// for `service` ("" for the server as a whole). Returns the status: 1
// SERVING, 2 NOT_SERVING; or -1 if the call failed.
int StandardHealth(const std::string& address, const std::string& service);

}  // namespace sessiond::testing

#endif  // SESSIOND_TESTS_E2E_SESSIOND_PROCESS_H_
