#include "tests/e2e/sessiond_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sessiond::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& flags, const std::string& log_path,
            bool add_listen) {
  std::vector<std::string> args = {SessiondBinaryPath()};
  if (add_listen) args.push_back("--listen=127.0.0.1:0");
  args.insert(args.end(), flags.begin(), flags.end());
  pid_t pid = fork();
  if (pid == 0) {
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (log >= 0) {
      dup2(log, STDERR_FILENO);
      dup2(log, STDOUT_FILENO);
    }
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` up to `timeout`; returns the exit code, or nullopt-like -1
// if it is still running.
int WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -2;
    }
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

std::string SessiondBinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir == nullptr ? "." : srcdir,
                      "/sessiond/server/sessiond");
}

std::string MakeTempDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp == nullptr ? "/tmp" : tmp, "/", name);
  mkdir(dir.c_str(), 0700);
  return dir;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

absl::StatusOr<std::unique_ptr<SessiondProcess>> SessiondProcess::Start(
    const std::vector<std::string>& flags, const std::string& log_path) {
  pid_t pid = Spawn(flags, log_path, /*add_listen=*/true);
  if (pid < 0) return absl::InternalError("fork failed");
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  const std::string kMarker = "(port ";
  while (absl::Now() < deadline) {
    const std::string log = ReadFileOrEmpty(log_path);
    size_t at = log.find(kMarker);
    if (at != std::string::npos) {
      size_t end = log.find(')', at);
      int port = 0;
      if (end != std::string::npos &&
          absl::SimpleAtoi(
              log.substr(at + kMarker.size(), end - at - kMarker.size()),
              &port)) {
        return std::unique_ptr<SessiondProcess>(
            new SessiondProcess(pid, port, log_path));
      }
    }
    int exit_code = WaitFor(pid, absl::Milliseconds(50));
    if (exit_code != -1) {
      return absl::FailedPreconditionError(
          absl::StrCat("sessiond exited with ", exit_code,
                       " before serving; its log:\n", log));
    }
  }
  kill(pid, SIGKILL);
  WaitFor(pid, absl::Seconds(5));
  return absl::DeadlineExceededError(
      absl::StrCat("sessiond did not start serving in 30s; its log:\n",
                   ReadFileOrEmpty(log_path)));
}

absl::StatusOr<int> SessiondProcess::RunToExit(
    const std::vector<std::string>& flags, const std::string& log_path,
    absl::Duration timeout) {
  pid_t pid = Spawn(flags, log_path, /*add_listen=*/false);
  if (pid < 0) return absl::InternalError("fork failed");
  int exit_code = WaitFor(pid, timeout);
  if (exit_code == -1) {
    kill(pid, SIGKILL);
    WaitFor(pid, absl::Seconds(5));
    return absl::DeadlineExceededError("sessiond did not exit in time");
  }
  return exit_code;
}

std::string SessiondProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

absl::StatusOr<int> SessiondProcess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("already stopped");
  kill(pid_, signal);
  int exit_code = WaitFor(pid_, timeout);
  if (exit_code == -1) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, absl::Seconds(5));
    pid_ = -1;
    return absl::DeadlineExceededError(
        absl::StrCat("sessiond did not exit within ",
                     absl::FormatDuration(timeout), " of the signal"));
  }
  pid_ = -1;
  return exit_code;
}

SessiondProcess::~SessiondProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, absl::Seconds(5));
  }
}

}  // namespace sessiond::testing
