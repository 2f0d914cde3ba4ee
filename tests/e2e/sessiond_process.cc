#include "tests/e2e/sessiond_process.h"

#include <signal.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sessiond::testing {
namespace {

std::vector<std::string> Argv(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {SessiondBinaryPath()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

// The port from sessiond's "serving on ... (port N)" log line, or 0.
int LoggedPort(const std::string& log) {
  const std::string marker = "(port ";
  const size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  const size_t end = log.find(')', at);
  int port = 0;
  if (end == std::string::npos ||
      !absl::SimpleAtoi(
          log.substr(at + marker.size(), end - at - marker.size()), &port)) {
    return 0;
  }
  return port;
}

}  // namespace

std::string SessiondBinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir == nullptr ? "." : srcdir,
                      "/sessiond/server/sessiond");
}

absl::StatusOr<std::unique_ptr<SessiondProcess>> SessiondProcess::Start(
    const std::vector<std::string>& flags, const std::string& log_path) {
  std::vector<std::string> argv = Argv(flags);
  argv.insert(argv.begin() + 1, "--listen=127.0.0.1:0");
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn({argv, log_path, std::nullopt});
  if (!process.ok()) return process.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (int port = LoggedPort(ReadFileOrEmpty(log_path)); port != 0) {
      return std::unique_ptr<SessiondProcess>(
          new SessiondProcess(std::move(*process), port));
    }
    if (!(*process)->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sessiond exited before serving; its log:\n",
                       ReadFileOrEmpty(log_path)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("sessiond did not start serving in 30s; its log:\n",
                   ReadFileOrEmpty(log_path)));
}

absl::StatusOr<int> SessiondProcess::RunToExit(
    const std::vector<std::string>& flags, const std::string& log_path,
    absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Spawn({Argv(flags), log_path, std::nullopt});
  if (!process.ok()) return process.status();
  absl::StatusOr<int> code = (*process)->WaitForExit(timeout);
  if (!code.ok()) (void)(*process)->Stop(SIGKILL, absl::Seconds(5));
  return code;
}

std::string SessiondProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

}  // namespace sessiond::testing
