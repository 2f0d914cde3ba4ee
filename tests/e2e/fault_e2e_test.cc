// End-to-end fault suite, under load: whatever the backend does, every call
// ends within --call_timeout, fails only with a code that says what
// happened, and no acknowledged write is lost. A driver of many concurrent
// callers (each call with a 10 s deadline and no retries) runs while a
// fault lasts: PostgreSQL or Valkey SIGSTOPped for longer than the bound,
// or SIGKILLed and restarted; SQLite's write lock held by another process;
// SQLite's disk full. Each run counts the calls past the bound (must be
// 0), the calls failed with a code the fault does not explain (must be 0),
// and the acknowledged writes that cannot be read back afterwards (must be
// 0), and prints the worst call. (A rolling restart of sessiond itself:
// rolling_restart_e2e_test.)
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
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
#include "tests/testing/postgres_server.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/threads.h"

namespace sessiond::testing {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(2);
// What a call may take beyond its bound: scheduling on a shared machine.
constexpr absl::Duration kMargin = absl::Milliseconds(500);
constexpr int kCallers = 32;
constexpr absl::Duration kHang = absl::Seconds(6);

struct Figures {
  int64_t calls = 0;
  int64_t unavailable = 0;  // or, for a full disk, RESOURCE_EXHAUSTED
  int64_t other_errors = 0;
  int64_t past_bound = 0;
  absl::Duration worst = absl::ZeroDuration();
  std::string first_other_error;
  std::vector<std::string> acknowledged;  // tokens of acknowledged creates
};

// Runs kCallers callers against `address`, each alternating a Create (with
// `data`) and a Load of its last acknowledged session, while `fault` runs on
// this thread. `expected` is the error code the fault explains.
Figures RunUnderFault(
    const std::string& address, const std::function<void()>& fault,
    absl::StatusCode expected = absl::StatusCode::kUnavailable,
    const std::string& data = "") {
  Figures figures;
  absl::Mutex mu;
  std::atomic<bool> stop{false};
  std::thread driver([&] {
    RunThreads(kCallers, [&](int i) {
      absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(
          address,
          ClientOptions{absl::Seconds(10), 1, absl::Milliseconds(50), ""});
      if (!client.ok()) {
        absl::MutexLock lock(&mu);
        ++figures.other_errors;
        figures.first_other_error = client.status().ToString();
        return;
      }
      std::string last_token;
      for (int n = 0; !stop.load(); ++n) {
        const absl::Time start = absl::Now();
        absl::Status status;
        std::string token;
        if (n % 2 == 0 || last_token.empty()) {
          absl::StatusOr<v1::SaveResponse> created =
              (*client)->Create(absl::StrCat("caller-", i), data);
          status = created.status();
          if (created.ok()) token = created->token();
        } else {
          status = (*client)->Load(last_token).status();
        }
        const absl::Duration took = absl::Now() - start;
        absl::MutexLock lock(&mu);
        ++figures.calls;
        figures.worst = std::max(figures.worst, took);
        if (took > kCallTimeout + kMargin) ++figures.past_bound;
        if (status.code() == expected) {
          ++figures.unavailable;
        } else if (!status.ok()) {
          if (figures.other_errors++ == 0) {
            figures.first_other_error = status.ToString();
          }
        }
        if (!token.empty()) {
          figures.acknowledged.push_back(token);
          last_token = token;
        }
      }
    });
  });
  absl::SleepFor(absl::Seconds(1));
  fault();
  absl::SleepFor(absl::Seconds(2));  // recovery, under load
  stop.store(true);
  driver.join();
  return figures;
}

// Every acknowledged session is still there.
int64_t CountLost(const std::string& address,
                  const std::vector<std::string>& tokens) {
  std::unique_ptr<Client> client = *Client::Connect(
      address, ClientOptions{absl::Seconds(10), 3, absl::Milliseconds(50), ""});
  int64_t lost = 0;
  for (const std::string& token : tokens) {
    if (!client->Load(token).ok()) ++lost;
  }
  return lost;
}

void Check(const std::string& what, const std::string& address,
           const Figures& f,
           absl::StatusCode expected = absl::StatusCode::kUnavailable) {
  std::printf(
      "%s: %lld calls, %lld %s, worst call %s (bound %s), "
      "%lld past the bound, %lld acknowledged creates\n",
      what.c_str(), static_cast<long long>(f.calls),
      static_cast<long long>(f.unavailable),
      absl::StatusCodeToString(expected).c_str(),
      absl::FormatDuration(f.worst).c_str(),
      absl::FormatDuration(kCallTimeout).c_str(),
      static_cast<long long>(f.past_bound),
      static_cast<long long>(f.acknowledged.size()));
  EXPECT_EQ(f.past_bound, 0)
      << what << ": worst call " << absl::FormatDuration(f.worst);
  EXPECT_EQ(f.other_errors, 0) << what << ": " << f.first_other_error;
  EXPECT_GT(f.unavailable, 0) << what << ": the fault had no effect";
  EXPECT_GT(f.acknowledged.size(), 0u);
  EXPECT_EQ(CountLost(address, f.acknowledged), 0) << what;
}

std::vector<std::string> Flags(std::vector<std::string> backend) {
  backend.push_back("--insecure_plaintext");
  backend.push_back("--call_timeout=" + absl::FormatDuration(kCallTimeout));
  return backend;
}

// sessiond on a Valkey server of its own, under load while `fault` runs
// on that server.
void ValkeyUnderFault(const std::string& what,
                      const std::function<void(RedisServer&)>& fault) {
  const std::string dir = MakeTempDir("fault-valkey");
  absl::StatusOr<std::unique_ptr<RedisServer>> valkey =
      RedisServer::Start(RedisServerOptions{});
  ASSERT_TRUE(valkey.ok()) << valkey.status();
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start(Flags({"--backend=valkey",
                                    "--valkey_address=127.0.0.1:" +
                                        std::to_string((*valkey)->port()),
                                    "--valkey_timeout=1s"}),
                             dir + "/sessiond.log");
  ASSERT_TRUE(server.ok()) << server.status();
  const Figures f =
      RunUnderFault((*server)->address(), [&] { fault(**valkey); });
  Check(what, (*server)->address(), f);
}

// The same on a PostgreSQL server of its own.
void PostgresUnderFault(const std::string& what,
                        const std::function<void(PostgresServer&)>& fault) {
  const std::string dir = MakeTempDir("fault-postgres");
  PostgresServer postgres;
  ASSERT_TRUE(postgres.Start().ok());
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start(
          Flags({"--backend=postgres", "--postgres_dsn=" + postgres.dsn(),
                 "--postgres_statement_timeout=1s"}),
          dir + "/sessiond.log");
  ASSERT_TRUE(server.ok()) << server.status();
  const Figures f =
      RunUnderFault((*server)->address(), [&] { fault(postgres); });
  Check(what, (*server)->address(), f);
}

TEST(FaultE2eTest, ValkeyStopped) {
  ValkeyUnderFault("valkey SIGSTOP", [](RedisServer& valkey) {
    ASSERT_TRUE(valkey.Pause().ok());
    absl::SleepFor(kHang);
    ASSERT_TRUE(valkey.Resume().ok());
  });
}

TEST(FaultE2eTest, PostgresStopped) {
  PostgresUnderFault("postgres SIGSTOP", [](PostgresServer& postgres) {
    ASSERT_TRUE(postgres.Pause().ok());
    absl::SleepFor(kHang);
    ASSERT_TRUE(postgres.Resume().ok());
  });
}

TEST(FaultE2eTest, SqliteWriteLockHeld) {
  const std::string dir = MakeTempDir("hung-sqlite");
  const std::string db_path = dir + "/sessions.db";
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start(
          Flags({"--backend=sqlite", "--db_path=" + db_path}),
          dir + "/sessiond.log");
  ASSERT_TRUE(server.ok()) << server.status();
  const Figures f = RunUnderFault((*server)->address(), [&] {
    // Another process (this test) takes the write lock and keeps it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    absl::SleepFor(kHang);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  });
  Check("sqlite write lock held", (*server)->address(), f);
}

// SIGKILL mid-load, restarted after a second: the appendonly file (fsync
// always) keeps every acknowledged write.
TEST(FaultE2eTest, ValkeyKilledAndRestarted) {
  ValkeyUnderFault("valkey SIGKILL, restart", [](RedisServer& valkey) {
    ASSERT_TRUE(valkey.Kill().ok());
    absl::SleepFor(absl::Seconds(1));
    ASSERT_TRUE(valkey.Restart().ok());
  });
}

// SIGKILL to the postmaster and its children, as a crash; the restart runs
// crash recovery.
TEST(FaultE2eTest, PostgresKilledAndRestarted) {
  PostgresUnderFault("postgres SIGKILL, restart", [](PostgresServer& postgres) {
    ASSERT_TRUE(postgres.Kill().ok());
    absl::SleepFor(absl::Seconds(1));
    ASSERT_TRUE(postgres.Restart().ok());
  });
}

// The database on a small tmpfs (64 MiB, which the load alone takes longer
// than the test to fill) that a filler file fills up: creates are
// RESOURCE_EXHAUSTED (nothing written) while it is full, loads go on, and
// once space is freed a create works at once. Needs mount(2) (root, and a
// machine that allows it); skipped otherwise.
TEST(FaultE2eTest, SqliteDiskFull) {
  const std::string dir = MakeTempDir("full-sqlite");
  const std::string mnt = dir + "/disk";
  ASSERT_EQ(::mkdir(mnt.c_str(), 0700), 0);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64m,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); the full-disk fault needs one";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string filler = mnt + "/filler";
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start(
          Flags({"--backend=sqlite", "--db_path=" + mnt + "/sessions.db"}),
          dir + "/sessiond.log");
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Client> client = *Client::Connect(
      (*server)->address(),
      ClientOptions{absl::Seconds(10), 1, absl::Milliseconds(50), ""});
  const Figures f = RunUnderFault(
      (*server)->address(),
      [&] {
        // Fill what is left of the disk, hold it full, then free it.
        std::FILE* out = std::fopen(filler.c_str(), "w");
        ASSERT_NE(out, nullptr);
        const std::string block(64 * 1024, 'f');
        while (std::fwrite(block.data(), 1, block.size(), out) ==
                   block.size() &&
               std::fflush(out) == 0) {
        }
        std::fclose(out);
        absl::SleepFor(absl::Seconds(4));
        ASSERT_EQ(std::remove(filler.c_str()), 0);
        // Room again: a create works at once (the load fills the disk
        // again within seconds).
        const absl::Status after =
            client->Create("after", std::string(2048, 'd')).status();
        EXPECT_TRUE(after.ok()) << after;
      },
      absl::StatusCode::kResourceExhausted, std::string(2048, 'd'));
  Check("sqlite disk full", (*server)->address(), f,
        absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace sessiond::testing
