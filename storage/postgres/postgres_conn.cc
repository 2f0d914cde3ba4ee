#include "storage/postgres/postgres_conn.h"

#include <fcntl.h>
#include <poll.h>
#include <postgresql/libpq-fe.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/errorhandler>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/prepared_statement>
#include <pqxx/result>
#include <pqxx/transaction>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crypto/wipe.h"
#include "storage/sql/statements.h"

namespace sessiond::storage::postgres_internal {
namespace {

// libpq's messages end with a newline and may span lines; one line reads
// better inside a Status.
std::string OneLine(absl::string_view message) {
  std::string out;
  bool space = false;
  for (const char c : message) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// The primary message of a server error as libpq formats it for
// pqxx::sql_error::what() ("ERROR:  <primary>\n", then with the default
// verbosity DETAIL and HINT lines): the first line without the severity.
// Connections use terse verbosity, which leaves DETAIL (which may quote
// values) out of the message in the first place; cutting at the first line
// keeps it out regardless.
std::string PrimaryMessage(absl::string_view message) {
  message = message.substr(0, message.find('\n'));
  const size_t sep = message.find(":  ");
  if (sep != absl::string_view::npos && sep > 0 && sep <= 16 &&
      std::all_of(message.begin(), message.begin() + sep,
                  [](char c) { return absl::ascii_isalpha(c); })) {
    message.remove_prefix(sep + 3);
  }
  return OneLine(message);
}

// A value in a libpq connection string: single-quoted, with backslashes and
// quotes escaped.
std::string QuoteConnValue(absl::string_view value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

// A statement's name as prepared on every connection.
const std::string& PreparedName(sql::SqlStatement statement) {
  static const auto* const kNames = [] {
    auto* names = new std::array<std::string, sql::kNumStatements>;
    for (int i = 0; i < sql::kNumStatements; ++i) {
      (*names)[i] = absl::StrCat(
          "sessiond_", sql::StatementName(static_cast<sql::SqlStatement>(i)));
    }
    return names;
  }();
  return (*kNames)[static_cast<int>(statement)];
}

// A parameter in binary format (Connection::Execute).
pqxx::binarystring BinaryParam(const sql::SqlParam& p) {
  if (p.type == sql::SqlType::kInt) {
    unsigned char be[8];
    const uint64_t v = static_cast<uint64_t>(p.number);
    for (int i = 0; i < 8; ++i) {
      be[i] = static_cast<unsigned char>(v >> (56 - 8 * i));
    }
    return pqxx::binarystring(be, sizeof(be));
  }
  return pqxx::binarystring(p.bytes.empty() ? "" : p.bytes.data(),
                            p.bytes.size());
}

class PgRow final : public sql::SqlRow {
 public:
  explicit PgRow(const pqxx::row& row) : row_(row) {}
  int64_t Int(int column) const override { return FieldInt(row_[column]); }
  std::string Text(int column) const override {
    return FieldText(row_[column]);
  }
  std::string Bytes(int column) const override {
    return FieldBytea(row_[column]);
  }

 private:
  const pqxx::row& row_;
};

// Wipes a string that held the password when it goes out of scope.
struct WipeOnExit {
  std::string* secret;
  ~WipeOnExit() { crypto::Wipe(secret); }
};

}  // namespace

// ---------------------------------------------------------------------------
// Results.

int64_t FieldInt(const pqxx::field& f) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::string_view(f.c_str(), f.size()), &v)) return 0;
  return v;
}

std::string FieldText(const pqxx::field& f) {
  return std::string(f.c_str(), f.size());
}

std::string FieldBytea(const pqxx::field& f) {
  return pqxx::binarystring(f).str();
}

// ---------------------------------------------------------------------------
// Connection strings.

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseDsn(
    const std::string& dsn) {
  // The only libpq functions the backend calls itself, deliberately: libpqxx 6
  // passes a connection string to libpq as is and has no way to parse one,
  // or to combine it with other settings, while the DSN may be in either of
  // libpq's two syntaxes (keyword/value or URI). PQconninfoParse only parses
  // (it never connects, reads the environment or opens a file), exactly as
  // the connection itself will.
  //
  // As with libpq's expand_dbname: a DSN that is neither a URI nor has a
  // "keyword=value" pair is a database name.
  if (!absl::StartsWith(dsn, "postgresql://") && !absl::StartsWith(dsn, "postgres://") &&
      dsn.find('=') == std::string::npos) {
    return std::vector<std::pair<std::string, std::string>>{{"dbname", dsn}};
  }
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (options == nullptr) {
    std::string message =
        error != nullptr ? OneLine(error) : std::string("out of memory");
    if (error != nullptr) PQfreemem(error);
    return absl::InvalidArgumentError(message);
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(options);
  return out;
}

absl::Status PinHostAddresses(
    std::vector<std::pair<std::string, std::string>>& params,
    internal::HostLookup& lookup, absl::Time deadline) {
  // The last of each keyword counts, as in ConnectionString.
  std::string* host = nullptr;
  std::string* port = nullptr;
  for (auto& [key, value] : params) {
    if (key == "hostaddr") return absl::OkStatus();
    if (key == "host") host = &value;
    if (key == "port") port = &value;
  }
  if (host == nullptr || host->empty()) return absl::OkStatus();
  const std::vector<std::string> hosts = absl::StrSplit(*host, ',');
  std::vector<std::string> ports;
  if (port != nullptr) ports = absl::StrSplit(*port, ',');
  const bool port_per_host = ports.size() > 1 && ports.size() == hosts.size();
  std::vector<std::string> new_hosts, new_addrs, new_ports;
  bool looked_up = false;
  for (size_t i = 0; i < hosts.size(); ++i) {
    std::vector<std::string> addresses = {""};  // "": libpq uses the host
    if (!hosts[i].empty() && hosts[i][0] != '/' && hosts[i][0] != '@') {
      looked_up = true;
      absl::StatusOr<std::vector<std::string>> found =
          lookup.Addresses(hosts[i], deadline);
      if (!found.ok()) {
        return absl::UnavailableError(absl::StrCat("postgres: cannot connect: ",
                                                   found.status().message()));
      }
      addresses = *std::move(found);
    }
    for (std::string& address : addresses) {
      new_hosts.push_back(hosts[i]);
      new_addrs.push_back(std::move(address));
      if (port_per_host) new_ports.push_back(ports[i]);
    }
  }
  if (!looked_up) return absl::OkStatus();
  *host = absl::StrJoin(new_hosts, ",");
  if (port_per_host) *port = absl::StrJoin(new_ports, ",");
  params.emplace_back("hostaddr", absl::StrJoin(new_addrs, ","));
  return absl::OkStatus();
}

std::string ConnectionString(
    const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<std::pair<absl::string_view, absl::string_view>> merged;
  absl::flat_hash_map<absl::string_view, size_t> index;
  for (const auto& [key, value] : params) {
    auto [it, inserted] = index.emplace(key, merged.size());
    if (inserted) {
      merged.emplace_back(key, value);
    } else {
      merged[it->second].second = value;
    }
  }
  std::string out;
  for (const auto& [key, value] : merged) {
    if (!out.empty()) out.push_back(' ');
    absl::StrAppend(&out, key, "=", QuoteConnValue(value));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Connection.

Connection::Connection(std::unique_ptr<pqxx::asyncconnection> conn,
                       int watch_fd, Watchdog& watchdog,
                       absl::string_view secret)
    : conn_(std::move(conn)),
      // Server notices (e.g. "relation ... already exists, skipping") are
      // of no use to the store; a library must not print them.
      quiet_(std::make_unique<pqxx::quiet_errorhandler>(*conn_)),
      watch_fd_(watch_fd),
      watchdog_(watchdog),
      secret_(secret) {}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const ConnectOptions& options, absl::Time deadline, Watchdog& watchdog) {
  auto cannot_connect = [&options](absl::string_view detail) {
    return absl::UnavailableError(
        ScrubSecret(absl::StrCat("postgres: cannot connect: ",
                                 detail.empty() ? "connection failed" : detail),
                    options.secret.view()));
  };
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return cannot_connect("no answer from the server in time");
  }
  // The connection is started (PQconnectStart), and completed with the
  // socket under the watchdog until `deadline`: a server that accepts TCP
  // but never answers (hung, or SIGSTOPped) fails the connect in time.
  // libpq opens a new socket for each further address it tries (a name
  // with several addresses, host=a,b): those are bounded by its own
  // connect_timeout (whole seconds, at least 2, per address) instead.
  std::vector<std::pair<std::string, std::string>> params;
  // No reallocation may leave a copy of the password behind.
  params.reserve(options.params.size() + 3);
  params.insert(params.end(), options.params.begin(), options.params.end());
  static internal::HostLookup* const lookup = new internal::HostLookup();
  if (absl::Status s = PinHostAddresses(params, *lookup, deadline); !s.ok()) {
    return s;
  }
  if (!options.secret.empty()) {
    params.emplace_back("password", options.secret.view());
  }
  params.emplace_back(
      "connect_timeout",
      absl::StrCat(std::max<int64_t>(
          2, absl::ToInt64Seconds(absl::Ceil(left, absl::Seconds(1))))));
  std::string conninfo = ConnectionString(params);
  const WipeOnExit wipe_conninfo{&conninfo};
  for (auto& [key, value] : params) {
    if (key == "password") crypto::Wipe(&value);
  }
  std::unique_ptr<pqxx::asyncconnection> conn;
  int watch_fd = -1;
  uint64_t ticket = 0;
  bool fired = false;
  try {
    conn = std::make_unique<pqxx::asyncconnection>(conninfo);
    const int fd = conn->sock();
    if (fd >= 0) watch_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (watch_fd < 0) return cannot_connect("no socket to watch");
    ticket = watchdog.Arm(watch_fd, deadline);
    // libpqxx 6 deprecates all of its connection-state control (7 drops
    // it), but has no other way to do either of these:
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // Completes the connect: startup, TLS, authentication.
    conn->activate();
    // libpqxx 6 would otherwise "reactivate" a broken connection by itself
    // (PQreset or a new PQconnectdb inside a later call): a new socket that
    // nobody watches, and a session without our settings. The store drops
    // broken connections and opens new ones itself.
    conn->inhibit_reactivation(true);
#pragma GCC diagnostic pop
    // Error messages without DETAIL, which may quote values.
    conn->set_verbosity(pqxx::connection_base::terse);
    for (int i = 0; i < sql::kNumStatements; ++i) {
      const auto statement = static_cast<sql::SqlStatement>(i);
      const char* text =
          sql::StatementText(statement, sql::SqlDialect::kPostgres);
      if (text != nullptr) conn->prepare(PreparedName(statement), text);
    }
    fired = watchdog.Disarm(ticket);
    // The statements to come are watched on the socket libpq kept, which
    // is not the first one if it moved on to another address.
    if (!fired) {
      ::close(watch_fd);
      const int kept = conn->sock();
      watch_fd = kept >= 0 ? fcntl(kept, F_DUPFD_CLOEXEC, 0) : -1;
      if (watch_fd < 0) return cannot_connect("no socket to watch");
    }
  } catch (const std::exception& e) {
    if (ticket != 0) fired = watchdog.Disarm(ticket);
    conn.reset();
    if (watch_fd >= 0) ::close(watch_fd);
    return cannot_connect(fired ? "no answer from the server in time"
                                : OneLine(e.what()));
  }
  if (fired || !conn->is_open()) {
    conn.reset();
    ::close(watch_fd);
    return cannot_connect("no answer from the server in time");
  }
  std::unique_ptr<Connection> c(new Connection(
      std::move(conn), watch_fd, watchdog, options.secret.view()));

  // The value is our own integer, never user input.
  const int64_t timeout_ms = std::max<int64_t>(
      1, absl::ToInt64Milliseconds(
             absl::Ceil(options.statement_timeout, absl::Milliseconds(1))));
  c->StartCall(deadline);
  absl::StatusOr<pqxx::result> set =
      c->ExecuteScript(absl::StrCat("SET statement_timeout = ", timeout_ms,
                                    "; SHOW server_encoding"),
                       "set up the connection");
  c->EndCall();
  if (!set.ok()) return set.status();
  if (c->broken()) {
    return absl::UnavailableError(
        "postgres: set up the connection: no answer from the server in time");
  }
  const std::string encoding =
      set->size() == 1 && set->columns() == 1 ? FieldText((*set)[0][0]) : "";
  if (encoding != "UTF8") {
    return absl::FailedPreconditionError(absl::StrCat(
        "postgres: the database's encoding is ",
        encoding.empty() ? "unknown" : encoding,
        "; sessiond needs a UTF8 database (CREATE DATABASE ... ENCODING "
        "'UTF8')"));
  }
  return c;
}

Connection::~Connection() {
  if (txn_ != nullptr) {
    // A transaction left open outside a call (the store never does this):
    // destroying it sends ROLLBACK, which must not wait on the server
    // unbounded. The connection is being closed anyway.
    ::shutdown(watch_fd_, SHUT_RDWR);
  }
  if (ticket_ != 0) watchdog_.Disarm(ticket_);
  autocommit_.reset();
  txn_.reset();
  quiet_.reset();
  conn_.reset();  // PQfinish
  // Only now: the watchdog no longer knows it, and libpq is done with the
  // socket.
  ::close(watch_fd_);
}

void Connection::StartCall(absl::Time deadline) {
  if (ticket_ != 0 && watchdog_.Disarm(ticket_)) broken_ = true;
  ticket_ = watchdog_.Arm(watch_fd_, deadline);
}

void Connection::EndCall() {
  Rollback();
  autocommit_.reset();
  if (ticket_ != 0) {
    // If the watchdog fired, the socket is shut down, whatever the call
    // made of it.
    if (watchdog_.Disarm(ticket_)) broken_ = true;
    ticket_ = 0;
  }
}

absl::Status Connection::CheckUsable(absl::string_view what) {
  if (!broken_) return absl::OkStatus();
  last_error_ = ErrorKind::kConnection;
  return absl::UnavailableError(
      absl::StrCat("postgres: ", what, ": connection is broken"));
}

pqxx::transaction_base& Connection::Current() {
  if (txn_ != nullptr) return *txn_;
  if (autocommit_ == nullptr) {
    autocommit_ = std::make_unique<pqxx::nontransaction>(*conn_);
  }
  return *autocommit_;
}

absl::StatusOr<int64_t> Connection::Execute(
    sql::SqlStatement statement, absl::Span<const sql::SqlParam> params,
    absl::FunctionRef<void(const sql::SqlRow&)> on_row) {
  const absl::string_view what = sql::StatementName(statement);
  if (absl::Status s = CheckUsable(what); !s.ok()) return s;
  std::vector<pqxx::binarystring> values;
  values.reserve(params.size());
  for (const sql::SqlParam& p : params) values.push_back(BinaryParam(p));
  pqxx::result res;
  try {
    res = Current().exec_prepared(PreparedName(statement),
                                  pqxx::prepare::make_dynamic_params(values));
  } catch (...) {
    return Fail(what);
  }
  for (const pqxx::row& row : res) on_row(PgRow(row));
  return static_cast<int64_t>(res.affected_rows());
}

absl::StatusOr<pqxx::result> Connection::ExecuteScript(const std::string& sql,
                                                       absl::string_view what) {
  if (absl::Status s = CheckUsable(what); !s.ok()) return s;
  try {
    return Current().exec(sql);
  } catch (...) {
    return Fail(what);
  }
}

absl::Status Connection::Begin(absl::string_view what) {
  if (absl::Status s = CheckUsable(what); !s.ok()) return s;
  if (txn_ != nullptr) {
    last_error_ = ErrorKind::kOther;
    return absl::InternalError(
        absl::StrCat("postgres: ", what, ": a transaction is already open"));
  }
  // One transaction object at a time per libpqxx connection; the
  // autocommit one holds nothing on the server.
  autocommit_.reset();
  try {
    txn_ = std::make_unique<pqxx::work>(*conn_);
  } catch (...) {
    return Fail(what);
  }
  return absl::OkStatus();
}

absl::Status Connection::Commit(absl::string_view what) {
  if (txn_ == nullptr) {
    last_error_ = ErrorKind::kOther;
    return absl::InternalError(
        absl::StrCat("postgres: ", what, ": no transaction to commit"));
  }
  try {
    txn_->commit();
  } catch (...) {
    return Fail(what);  // Rollback() cleans up.
  }
  txn_.reset();
  return absl::OkStatus();
}

void Connection::Rollback() {
  if (txn_ == nullptr) return;
  try {
    // Sends ROLLBACK if the transaction is still open; libpqxx swallows a
    // failure of it, so the connection's state is checked below.
    txn_->abort();
  } catch (...) {
    broken_ = true;
  }
  txn_.reset();
  if (!conn_->is_open()) broken_ = true;
}

bool Connection::Reusable() const {
  return !broken_ && txn_ == nullptr && conn_->is_open();
}

bool Connection::StillAlive() const {
  if (!Reusable()) return false;
  const int fd = conn_->sock();
  if (fd < 0) return false;
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  // Anything readable (a FATAL notice, EOF) or an error: not healthy.
  return poll(&p, 1, 0) == 0;
}

absl::Status Connection::ConnectionLost(absl::string_view what,
                                        absl::string_view detail) {
  broken_ = true;
  last_error_ = ErrorKind::kConnection;
  if (ticket_ != 0 && watchdog_.Fired(ticket_)) {
    return absl::UnavailableError(absl::StrCat(
        "postgres: ", what, ": no answer from the server in time"));
  }
  return absl::UnavailableError(
      Scrub(absl::StrCat("postgres: ", what, ": connection to the server lost",
                         detail.empty() ? "" : ": ", detail)));
}

absl::Status Connection::Fail(absl::string_view what) {
  std::string state;
  std::string detail;
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    // Includes SQLSTATE class 08 and too_many_connections (53300).
    return ConnectionLost(what, OneLine(e.what()));
  } catch (const pqxx::in_doubt_error&) {
    return ConnectionLost(what, "the outcome of COMMIT is unknown");
  } catch (const pqxx::serialization_failure& e) {
    // libpqxx 6 keeps no SQLSTATE for the transaction_rollback family; the
    // class says which it was.
    state = "40001";
    detail = PrimaryMessage(e.what());
  } catch (const pqxx::deadlock_detected& e) {
    state = "40P01";
    detail = PrimaryMessage(e.what());
  } catch (const pqxx::statement_completion_unknown& e) {
    state = "40003";
    detail = PrimaryMessage(e.what());
  } catch (const pqxx::transaction_rollback& e) {
    state = "40000";
    detail = PrimaryMessage(e.what());
  } catch (const pqxx::sql_error& e) {
    state = e.sqlstate();
    detail = PrimaryMessage(e.what());
  } catch (const std::exception& e) {
    if (!conn_->is_open()) return ConnectionLost(what, OneLine(e.what()));
    // Failed on the client side (usage, conversion, memory): the
    // connection's state is unknown, so it is not reused.
    broken_ = true;
    last_error_ = ErrorKind::kOther;
    return absl::InternalError(
        Scrub(absl::StrCat("postgres: ", what, ": ", OneLine(e.what()))));
  } catch (...) {
    broken_ = true;
    last_error_ = ErrorKind::kOther;
    return absl::InternalError(
        absl::StrCat("postgres: ", what, ": unknown error"));
  }
  auto message = [&](absl::string_view text) {
    return Scrub(absl::StrCat("postgres: ", what, ": ", text, " (SQLSTATE ",
                              state.empty() ? "none" : state, ")"));
  };
  const absl::string_view s(state);
  // Class 08: connection exception. 57P01..57P03: the server is shutting
  // down, crashed, or not yet accepting connections.
  if (absl::StartsWith(s, "08") || s == "57P01" || s == "57P02" || s == "57P03" ||
      !conn_->is_open()) {
    broken_ = true;
    last_error_ = ErrorKind::kConnection;
    return absl::UnavailableError(message(detail));
  }
  if (s == "40001" || s == "40P01") {
    last_error_ = ErrorKind::kRetryable;
    return absl::UnavailableError(message(detail));
  }
  last_error_ = ErrorKind::kOther;
  // 57014: statement_timeout (or a cancel). 55P03: lock_timeout. Class 53:
  // out of connections, memory or disk. 40003: the statement's completion
  // is unknown (a write may or may not have happened).
  if (s == "57014" || s == "55P03" || absl::StartsWith(s, "53") || s == "40003") {
    return absl::UnavailableError(message(detail));
  }
  if (s == "23505") return absl::AlreadyExistsError(message(detail));
  // Class 22 (data exception) messages may quote the offending value.
  if (absl::StartsWith(s, "22")) {
    return absl::InvalidArgumentError(message("invalid value"));
  }
  return absl::InternalError(message(detail));
}

std::string Connection::Scrub(std::string message) const {
  return ScrubSecret(std::move(message), secret_);
}

std::string ScrubSecret(std::string message, absl::string_view secret) {
  if (secret.empty()) return message;
  return absl::StrReplaceAll(message, {{secret, "<redacted>"}});
}

}  // namespace sessiond::storage::postgres_internal
