#include "tests/testing/postgres_server.h"

#include <dirent.h>
#include <postgresql/libpq-fe.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {
namespace {

constexpr char kServerUser[] = "postgres";

bool IsExecutable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

std::optional<std::string> RunAs() {
  // Subprocess switches user only when the test runs as root; PostgreSQL
  // refuses to run as root.
  if (getuid() == 0) return std::string(kServerUser);
  return std::nullopt;
}

// A superuser connection for one statement.
struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};

absl::StatusOr<std::unique_ptr<PGresult, PgResultDeleter>> RunSql(
    const std::string& dsn, const std::string& sql) {
  std::unique_ptr<PGconn, PgConnDeleter> conn(
      PQconnectdb(absl::StrCat(dsn, " connect_timeout=10").c_str()));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to the test server: ",
        conn != nullptr ? PQerrorMessage(conn.get()) : "no memory"));
  }
  std::unique_ptr<PGresult, PgResultDeleter> res(
      PQexec(conn.get(), sql.c_str()));
  const ExecStatusType status =
      res != nullptr ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return absl::InternalError(
        absl::StrCat("\"", sql, "\" failed: ", PQerrorMessage(conn.get())));
  }
  return res;
}

}  // namespace

PostgresServer::PostgresServer(std::string bin_dir)
    : bin_dir_(std::move(bin_dir)) {}

PostgresServer::~PostgresServer() {
  if (paused_) (void)Resume();
  if (server_ != nullptr && server_->Running()) (void)Stop();
  server_.reset();
  if (!root_.empty()) RemoveTree(root_);
}

absl::Status PostgresServer::Start() {
  if (!root_.empty()) {
    return absl::FailedPreconditionError("PostgresServer::Start called twice");
  }
  const std::string initdb = bin_dir_ + "/initdb";
  const std::string postgres = bin_dir_ + "/postgres";
  if (!IsExecutable(initdb) || !IsExecutable(postgres)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PostgreSQL server binaries not found (", postgres,
        "); the PostgreSQL tests need a real server: run "
        "`tools/install_deps.sh --test` (Debian package postgresql-15)"));
  }
  const std::optional<std::string> run_as = RunAs();
  root_ = MakeTempDir("postgres", /*world_traversable=*/true, run_as);
  if (root_.empty()) {
    return absl::InternalError(
        "cannot create a temporary directory for PostgreSQL under /tmp");
  }
  SubprocessOptions init;
  init.argv = {initdb,     "-D",           root_ + "/data",   "-U",
               "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C",
               "--no-sync"};
  init.log_path = root_ + "/initdb.log";
  init.run_as_user = run_as;
  absl::StatusOr<std::unique_ptr<Subprocess>> proc = Subprocess::Spawn(init);
  if (!proc.ok()) return proc.status();
  absl::StatusOr<int> code = (*proc)->WaitForExit(absl::Minutes(2));
  if (!code.ok() || *code != 0) {
    return absl::InternalError(absl::StrCat(
        "initdb failed (",
        code.ok() ? absl::StrCat("exit code ", *code)
                  : code.status().ToString(),
        code.ok() && *code == 126 ? ": could not switch to user postgres" : "",
        "); its log:\n", ReadFileOrEmpty(init.log_path)));
  }
  {
    // First match wins: members of kPasswordGroup need their password.
    std::ofstream hba(root_ + "/data/pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\n"
        << "host all +" << kPasswordGroup << " 127.0.0.1/32 scram-sha-256\n"
        << "host all all 127.0.0.1/32 trust\n";
    if (!hba) return absl::InternalError("cannot write pg_hba.conf");
  }
  port_ = PickFreePort();
  if (port_ == 0) return absl::InternalError("no free port");
  if (absl::Status s = StartServer(); !s.ok()) return s;
  if (absl::Status s =
          Exec(absl::StrCat("CREATE ROLE ", kPasswordGroup), "postgres");
      !s.ok()) {
    return s;
  }
  return Exec(absl::StrCat("CREATE DATABASE ", database_), "postgres");
}

absl::Status PostgresServer::StartServer() {
  absl::Status last;
  // After Kill(), the old backends may take a moment to go away; the new
  // postmaster refuses to start while they hold the old shared memory.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(500));
    SubprocessOptions opts;
    opts.argv = {bin_dir_ + "/postgres",       "-D", root_ + "/data", "-p",
                 absl::StrCat(port_),          "-k", root_,           "-c",
                 "listen_addresses=127.0.0.1", "-c", "fsync=on",      "-c",
                 "max_connections=200"};
    opts.log_path = absl::StrCat(root_, "/postgres.", ++starts_, ".log");
    opts.run_as_user = RunAs();
    absl::StatusOr<std::unique_ptr<Subprocess>> proc = Subprocess::Spawn(opts);
    if (!proc.ok()) return proc.status();
    server_ = *std::move(proc);
    last = WaitUntilReady(absl::Minutes(1));
    if (last.ok()) return last;
    if (server_->Running()) break;  // Up, but not ready in time: give up.
  }
  return last;
}

absl::Status PostgresServer::WaitUntilReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  const std::string conninfo =
      absl::StrCat(dsn("postgres"), " connect_timeout=2");
  while (absl::Now() < deadline) {
    if (!server_->Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("postgres exited during start-up; its log:\n", Log()));
    }
    if (PQping(conninfo.c_str()) == PQPING_OK) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("postgres did not accept connections within ",
                   absl::FormatDuration(timeout), "; its log:\n", Log()));
}

absl::Status PostgresServer::Stop() {
  if (server_ == nullptr || !server_->Running()) return absl::OkStatus();
  if (paused_) {
    if (absl::Status s = Resume(); !s.ok()) return s;
  }
  absl::StatusOr<int> code = server_->Stop(SIGINT, absl::Minutes(1));
  return code.status();
}

absl::Status PostgresServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return StartServer();
}

absl::Status PostgresServer::Kill() {
  if (server_ == nullptr || !server_->Running()) return absl::OkStatus();
  // Freeze the postmaster first, so that it neither notices its children
  // dying nor starts new ones; then kill everything at once.
  if (kill(server_->pid(), SIGSTOP) != 0) {
    return absl::InternalError("cannot stop postgres");
  }
  for (pid_t child : Children()) kill(child, SIGKILL);
  kill(server_->pid(), SIGKILL);
  paused_ = false;
  paused_children_.clear();
  return server_->WaitForExit(absl::Seconds(30)).status();
}

absl::Status PostgresServer::Pause() {
  if (server_ == nullptr || !server_->Running()) {
    return absl::FailedPreconditionError("postgres is not running");
  }
  if (paused_) return absl::OkStatus();
  if (kill(server_->pid(), SIGSTOP) != 0) {
    return absl::InternalError("cannot stop postgres");
  }
  // The postmaster is frozen: it starts no new children meanwhile.
  paused_children_ = Children();
  for (pid_t child : paused_children_) kill(child, SIGSTOP);
  paused_ = true;
  return absl::OkStatus();
}

absl::Status PostgresServer::Resume() {
  if (!paused_) return absl::OkStatus();
  for (pid_t child : paused_children_) kill(child, SIGCONT);
  if (server_ != nullptr && server_->Running()) kill(server_->pid(), SIGCONT);
  paused_children_.clear();
  paused_ = false;
  return absl::OkStatus();
}

std::vector<pid_t> PostgresServer::Children() const {
  // Each backend is its own process group leader (PostgreSQL calls
  // setsid()), so the children are found by parent pid.
  std::vector<pid_t> children;
  if (server_ == nullptr) return children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (const dirent* entry = readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    const std::string stat =
        ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(
        absl::string_view(stat).substr(paren + 1), ' ', absl::SkipEmpty());
    pid_t ppid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == server_->pid()) {
      children.push_back(pid);
    }
  }
  closedir(proc);
  return children;
}

bool PostgresServer::running() {
  return server_ != nullptr && server_->Running();
}

std::string PostgresServer::dsn(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_,
                      " user=postgres sslmode=disable gssencmode=disable "
                      "dbname=",
                      database.empty() ? database_ : database);
}

std::string PostgresServer::Log() const {
  return server_ != nullptr ? ReadFileOrEmpty(server_->log_path()) : "";
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(
    const std::string& prefix) {
  const std::string name =
      absl::StrCat(prefix, "_", next_database_.fetch_add(1));
  if (absl::Status s = Exec(absl::StrCat("CREATE DATABASE ", name), "postgres");
      !s.ok()) {
    return s;
  }
  return name;
}

absl::Status PostgresServer::Exec(const std::string& sql,
                                  const std::string& database) {
  return RunSql(dsn(database), sql).status();
}

absl::StatusOr<std::string> PostgresServer::QueryValue(
    const std::string& sql, const std::string& database) {
  auto res = RunSql(dsn(database), sql);
  if (!res.ok()) return res.status();
  if (PQntuples(res->get()) < 1 || PQnfields(res->get()) < 1) {
    return absl::NotFoundError(absl::StrCat("\"", sql, "\" returned no rows"));
  }
  return std::string(PQgetvalue(res->get(), 0, 0));
}

absl::Status PostgresServer::CreatePasswordRole(const std::string& role,
                                                const std::string& password) {
  // Test values: plain identifiers and passwords without quotes.
  return Exec(absl::StrCat("CREATE ROLE ", role, " LOGIN PASSWORD '", password,
                           "' IN ROLE ", kPasswordGroup),
              "postgres");
}

}  // namespace sessiond::testing
