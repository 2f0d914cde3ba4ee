// End-to-end, under load: every call ends within --call_timeout whatever
// the backend does. A driver of many concurrent callers (each call with a
// 10 s deadline and no retries) runs while the backend hangs for longer than
// the bound: PostgreSQL or Valkey SIGSTOPped, or SQLite's write lock held by
// another process. Each run counts the calls that overran the bound (must
// be 0), the calls that failed with a code other than UNAVAILABLE (must be
// 0), and the acknowledged writes that cannot be read back afterwards (must
// be 0), and prints the worst call.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
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
  int64_t unavailable = 0;
  int64_t other_errors = 0;
  int64_t past_bound = 0;
  absl::Duration worst = absl::ZeroDuration();
  std::string first_other_error;
  std::vector<std::string> acknowledged;  // tokens of acknowledged creates
};

// Runs kCallers callers against `address`, each alternating a Create and a
// Load of its last acknowledged session, while `fault` runs on this thread.
Figures RunUnderFault(const std::string& address,
                      const std::function<void()>& fault) {
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
              (*client)->Create(absl::StrCat("caller-", i));
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
        if (absl::IsUnavailable(status)) {
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
           const Figures& f) {
  std::printf(
      "%s: %lld calls, %lld UNAVAILABLE, worst call %s (bound %s), "
      "%lld past the bound, %lld acknowledged creates\n",
      what.c_str(), static_cast<long long>(f.calls),
      static_cast<long long>(f.unavailable),
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

TEST(HungBackendE2eTest, ValkeyStopped) {
  const std::string dir = MakeTempDir("hung-valkey");
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
  const Figures f = RunUnderFault((*server)->address(), [&] {
    ASSERT_TRUE((*valkey)->Pause().ok());
    absl::SleepFor(kHang);
    ASSERT_TRUE((*valkey)->Resume().ok());
  });
  Check("valkey SIGSTOP", (*server)->address(), f);
}

TEST(HungBackendE2eTest, PostgresStopped) {
  const std::string dir = MakeTempDir("hung-postgres");
  PostgresServer postgres;
  ASSERT_TRUE(postgres.Start().ok());
  absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
      SessiondProcess::Start(
          Flags({"--backend=postgres", "--postgres_dsn=" + postgres.dsn(),
                 "--postgres_statement_timeout=1s"}),
          dir + "/sessiond.log");
  ASSERT_TRUE(server.ok()) << server.status();
  const Figures f = RunUnderFault((*server)->address(), [&] {
    ASSERT_TRUE(postgres.Pause().ok());
    absl::SleepFor(kHang);
    ASSERT_TRUE(postgres.Resume().ok());
  });
  Check("postgres SIGSTOP", (*server)->address(), f);
}

TEST(HungBackendE2eTest, SqliteWriteLockHeld) {
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

}  // namespace
}  // namespace sessiond::testing
