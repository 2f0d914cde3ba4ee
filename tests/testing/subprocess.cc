#include "tests/testing/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sessiond::testing {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Spawn(
    const SubprocessOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("empty argv");
  uid_t uid = 0;
  gid_t gid = 0;
  const bool switch_user = options.run_as_user.has_value() && getuid() == 0;
  if (switch_user) {
    const passwd* user = getpwnam(options.run_as_user->c_str());
    if (user == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("no user named ", *options.run_as_user));
    }
    uid = user->pw_uid;
    gid = user->pw_gid;
  }
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const int log =
      open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open log file ", options.log_path));
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    close(log);
    // A new process group, so that signals meant for the test runner do not
    // reach the child.
    setpgid(0, 0);
    // The parent may block signals; the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (switch_user &&
        (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
      _exit(126);
    }
    // Die with the test: if Bazel kills it on a timeout, no server is left
    // behind. (Set after setuid, which clears it.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, options.log_path));
}

Subprocess::~Subprocess() {
  if (Running()) {
    kill(pid_, SIGKILL);
    (void)WaitForExit(absl::Seconds(10));
  }
}

bool Subprocess::Running() {
  if (exit_code_.has_value()) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_code_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> Subprocess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return *exit_code_;
}

absl::StatusOr<int> Subprocess::Stop(int signal, absl::Duration timeout) {
  if (!Running()) return *exit_code_;
  kill(pid_, signal);
  absl::StatusOr<int> code = WaitForExit(timeout);
  if (!code.ok()) {
    kill(pid_, SIGKILL);
    (void)WaitForExit(absl::Seconds(10));
  }
  return code;
}

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

absl::Status WaitForPort(int port, absl::Duration timeout,
                         Subprocess* process) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool connected =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (connected) return absl::OkStatus();
    if (process != nullptr && !process->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("process exited before listening on port ", port,
                       "; its log:\n", ReadFileOrEmpty(process->log_path())));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("nothing listened on port ", port, " within ",
                   absl::FormatDuration(timeout)));
}

std::string MakeTempDir(const std::string& prefix, bool world_traversable,
                        const std::optional<std::string>& owner) {
  const char* test_tmp = std::getenv("TEST_TMPDIR");
  const std::string base =
      world_traversable || test_tmp == nullptr ? "/tmp" : test_tmp;
  std::string pattern = absl::StrCat(base, "/", prefix, ".XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return "";
  chmod(pattern.c_str(), 0755);
  if (owner.has_value()) {
    if (const passwd* user = getpwnam(owner->c_str())) {
      if (chown(pattern.c_str(), user->pw_uid, user->pw_gid) != 0) return "";
    }
  }
  return pattern;
}

void RemoveTree(const std::string& path) {
  if (path.empty() || path == "/") return;
  nftw(
      path.c_str(),
      [](const char* file, const struct stat*, int, struct FTW*) {
        remove(file);
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace sessiond::testing
