// End-to-end: a replica that is shut down as a rolling restart does it
// fails no call with anything but UNAVAILABLE (safe to retry). Callers
// reach sessiond through a TCP proxy that plays the load balancer: at
// SIGTERM it stops sending new connections to the replica (as Kubernetes
// does for a terminating pod), while the connections already open go on
// until sessiond closes them. sessiond is stopped repeatedly under load;
// before --max_connection_age, calls arriving as shutdown began failed
// CANCELLED in most runs.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/testing/threads.h"

namespace sessiond::testing {
namespace {

// Forwards each connection accepted on a loopback port to `target_port`,
// byte for byte, until StopAccepting; the connections it holds go on.
class TcpProxy {
 public:
  explicit TcpProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
            0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    accepting_ = std::thread([this] { Accept(); });
  }

  ~TcpProxy() {
    StopAccepting();
    {
      absl::MutexLock lock(&mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& pump : pumps_) pump.join();
    for (int fd : fds_) ::close(fd);
  }

  int port() const { return port_; }

  void StopAccepting() {
    if (listen_fd_ < 0) return;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (accepting_.joinable()) accepting_.join();
    ::close(listen_fd_);
    listen_fd_ = -1;
  }

 private:
  void Accept() {
    while (true) {
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0) {
        ::close(server);
        ::close(client);
        continue;
      }
      absl::MutexLock lock(&mu_);
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([client, server] { Pump(client, server); });
      pumps_.emplace_back([client, server] { Pump(server, client); });
    }
  }

  static void Pump(int from, int to) {
    char buffer[16384];
    while (true) {
      const ssize_t n = ::read(from, buffer, sizeof(buffer));
      if (n <= 0) break;
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::write(to, buffer + done, n - done);
        if (w <= 0) {
          ::shutdown(from, SHUT_RD);
          return;
        }
        done += w;
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread accepting_;
  absl::Mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;  // joined by the destructor only
};

constexpr int kCallers = 16;
constexpr int kRestarts = 4;

TEST(RollingRestartE2eTest, AStoppingReplicaFailsNoCallButUnavailable) {
  const std::string dir = MakeTempDir("rolling");
  ASSERT_FALSE(dir.empty());
  std::map<absl::StatusCode, int64_t> codes;
  std::string first_unexpected;
  for (int restart = 0; restart < kRestarts; ++restart) {
    SCOPED_TRACE(restart);
    absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
        SessiondProcess::Start(
            {"--backend=sqlite", "--insecure_plaintext",
             "--db_path=" + dir + "/sessions.db", "--max_connection_age=1s",
             "--shutdown_drain_delay=1500ms", "--shutdown_grace=5s",
             "--call_timeout=2s"},
            absl::StrCat(dir, "/sessiond-", restart, ".log"));
    ASSERT_TRUE(server.ok()) << server.status();
    TcpProxy proxy((*server)->port());
    ASSERT_NE(proxy.port(), 0);
    const std::string address = absl::StrCat("127.0.0.1:", proxy.port());

    absl::Mutex mu;
    std::atomic<bool> stop{false};
    std::thread driver([&] {
      RunThreads(kCallers, [&](int) {
        absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
            address,
            ClientOptions{absl::Seconds(5), 1, absl::Milliseconds(50), ""});
        if (!client.ok()) return;
        while (!stop.load()) {
          const absl::Status status = (*client)->Create("alice").status();
          {
            absl::MutexLock lock(&mu);
            ++codes[status.code()];
            if (!status.ok() && !absl::IsUnavailable(status) &&
                first_unexpected.empty()) {
              first_unexpected = status.ToString();
            }
          }
          // A caller backs off a little once the replica is gone.
          if (!status.ok()) absl::SleepFor(absl::Milliseconds(5));
        }
      });
    });
    absl::SleepFor(absl::Milliseconds(700));
    // The load balancer takes the replica out, and the replica is told to
    // stop: new connections go nowhere, old ones stay until sessiond
    // closes them.
    proxy.StopAccepting();
    absl::StatusOr<int> exit_code = (*server)->Stop(SIGTERM, absl::Seconds(20));
    stop.store(true);
    driver.join();
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);
  }
  int64_t unexpected = 0;
  for (const auto& [code, n] : codes) {
    std::printf("%s: %lld\n", absl::StatusCodeToString(code).c_str(),
                static_cast<long long>(n));
    if (code != absl::StatusCode::kOk &&
        code != absl::StatusCode::kUnavailable) {
      unexpected += n;
    }
  }
  EXPECT_GT(codes[absl::StatusCode::kOk], 0);
  EXPECT_EQ(unexpected, 0) << "first: " << first_unexpected;
}

}  // namespace
}  // namespace sessiond::testing
