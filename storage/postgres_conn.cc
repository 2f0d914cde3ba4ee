#include "storage/postgres_conn.h"

#include <errno.h>
#include <poll.h>
#include <postgresql/libpq-fe.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sessiond::storage::postgres_internal {
namespace {

// Type OIDs (pg_type.dat); stable across PostgreSQL versions.
constexpr Oid kInt8Oid = 20;
constexpr Oid kByteaOid = 17;
constexpr Oid kTextOid = 25;

// libpq's messages end with a newline and may span lines; one line reads
// better inside a Status.
std::string OneLine(const char* message) {
  std::string out;
  bool space = false;
  for (const char* p = message != nullptr ? message : ""; *p != '\0'; ++p) {
    const char c = *p;
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

bool StartsWith(absl::string_view s, absl::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

// ---------------------------------------------------------------------------
// Params and Result.

Params& Params::Int(int64_t v) {
  std::string be(8, '\0');
  const uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) {
    be[i] = static_cast<char>((u >> (8 * (7 - i))) & 0xff);
  }
  values_.push_back(std::move(be));
  lengths_.push_back(8);
  formats_.push_back(1);
  return *this;
}

Params& Params::Bytes(absl::string_view v) {
  values_.emplace_back(v.data() != nullptr ? v.data() : "", v.size());
  lengths_.push_back(static_cast<int>(v.size()));
  formats_.push_back(1);
  return *this;
}

std::vector<const char*> Params::Values() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const std::string& v : values_) out.push_back(v.data());
  return out;
}

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (res_ != nullptr) PQclear(res_);
    res_ = std::exchange(other.res_, nullptr);
  }
  return *this;
}

Result::~Result() {
  if (res_ != nullptr) PQclear(res_);
}

int Result::rows() const { return res_ != nullptr ? PQntuples(res_) : 0; }

int64_t Result::affected() const {
  int64_t n = 0;
  if (res_ == nullptr || !absl::SimpleAtoi(PQcmdTuples(res_), &n)) return 0;
  return n;
}

bool Result::IsNull(int row, int col) const {
  return PQgetisnull(res_, row, col) != 0;
}

int64_t Result::Int(int row, int col) const {
  const auto* p =
      reinterpret_cast<const unsigned char*>(PQgetvalue(res_, row, col));
  const int n = PQgetlength(res_, row, col);
  uint64_t u = 0;
  for (int i = 0; i < n && i < 8; ++i) u = (u << 8) | p[i];
  if (n == 4) {  // int4: sign-extend
    return static_cast<int64_t>(static_cast<int32_t>(u));
  }
  return static_cast<int64_t>(u);
}

std::string Result::Bytes(int row, int col) const {
  const char* p = PQgetvalue(res_, row, col);
  const int n = PQgetlength(res_, row, col);
  if (p == nullptr || n <= 0) return std::string();
  return std::string(p, static_cast<size_t>(n));
}

// ---------------------------------------------------------------------------
// Connection.

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const ConnectOptions& options, absl::Time deadline) {
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : options.params) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* raw = PQconnectStartParams(keys.data(), values.data(),
                                     /*expand_dbname=*/1);
  if (raw == nullptr) {
    return absl::UnavailableError("postgres: cannot allocate a connection");
  }
  std::unique_ptr<Connection> conn(new Connection(raw, options.secret));
  // libpq prints NOTICEs (e.g. "relation ... already exists, skipping") to
  // stderr by default; a library must not.
  PQsetNoticeProcessor(
      raw, [](void*, const char*) {}, nullptr);
  auto cannot_connect = [&conn](absl::string_view detail) {
    return absl::UnavailableError(conn->Scrub(
        absl::StrCat("postgres: cannot connect: ",
                     detail.empty() ? "connection failed" : detail)));
  };
  if (PQstatus(raw) == CONNECTION_BAD) {
    return cannot_connect(OneLine(PQerrorMessage(raw)));
  }
  // As if PQconnectPoll had last returned PGRES_POLLING_WRITING (libpq docs).
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  while (poll_status != PGRES_POLLING_OK) {
    if (poll_status == PGRES_POLLING_FAILED) {
      return cannot_connect(OneLine(PQerrorMessage(raw)));
    }
    const int events = poll_status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (absl::Status s = conn->Wait(events, deadline, "connect"); !s.ok()) {
      return cannot_connect("no answer from the server in time");
    }
    poll_status = PQconnectPoll(raw);
  }
  const char* encoding = PQparameterStatus(raw, "server_encoding");
  if (encoding == nullptr || std::strcmp(encoding, "UTF8") != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "postgres: the database's encoding is ",
        encoding != nullptr ? encoding : "unknown",
        "; sessiond needs a UTF8 database (CREATE DATABASE ... ENCODING "
        "'UTF8')"));
  }
  if (PQsetnonblocking(raw, 1) != 0) {
    return cannot_connect(OneLine(PQerrorMessage(raw)));
  }
  // The value is our own integer, never user input.
  const int64_t timeout_ms = std::max<int64_t>(
      1, absl::ToInt64Milliseconds(
             absl::Ceil(options.statement_timeout, absl::Milliseconds(1))));
  absl::StatusOr<Result> set =
      conn->ExecSimple(absl::StrCat("SET statement_timeout = ", timeout_ms),
                       deadline, "set statement_timeout");
  if (!set.ok()) return set.status();
  return conn;
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::Idle() const {
  return !broken_ && PQstatus(conn_) == CONNECTION_OK &&
         PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

bool Connection::InTransaction() const {
  const PGTransactionStatusType t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

bool Connection::LooksHealthy() {
  if (!Idle()) return false;
  const int fd = PQsocket(conn_);
  if (fd < 0) return false;
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  // Anything readable (a FATAL notice, EOF) or an error: not healthy.
  return poll(&p, 1, 0) == 0;
}

absl::StatusOr<Result> Connection::Exec(const Statement& stmt,
                                        const Params& params,
                                        absl::Time deadline,
                                        absl::string_view what) {
  if (broken_) {
    last_error_ = ErrorKind::kConnection;
    return absl::UnavailableError(
        absl::StrCat("postgres: ", what, ": connection is broken"));
  }
  const std::string name = absl::StrCat("sessiond_", stmt.index);
  const uint64_t bit = uint64_t{1} << stmt.index;
  const int n = params.size();
  if ((prepared_ & bit) == 0) {
    std::vector<Oid> types;
    for (const char* t = stmt.param_types; *t != '\0'; ++t) {
      types.push_back(*t == 'i' ? kInt8Oid : *t == 'b' ? kByteaOid : kTextOid);
    }
    if (PQsendPrepare(conn_, name.c_str(), stmt.sql,
                      static_cast<int>(types.size()), types.data()) == 0) {
      return ConnectionLost(what);
    }
    absl::StatusOr<Result> prepared = Finish(deadline, what);
    if (!prepared.ok()) return prepared.status();
    prepared_ |= bit;
  }
  const std::vector<const char*> values = params.Values();
  if (PQsendQueryPrepared(conn_, name.c_str(), n, values.data(),
                          params.Lengths().data(), params.Formats().data(),
                          /*resultFormat=*/1) == 0) {
    return ConnectionLost(what);
  }
  return Finish(deadline, what);
}

absl::StatusOr<Result> Connection::ExecSimple(absl::string_view sql,
                                              absl::Time deadline,
                                              absl::string_view what) {
  if (broken_) {
    last_error_ = ErrorKind::kConnection;
    return absl::UnavailableError(
        absl::StrCat("postgres: ", what, ": connection is broken"));
  }
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) return ConnectionLost(what);
  return Finish(deadline, what);
}

absl::StatusOr<Result> Connection::Finish(absl::Time deadline,
                                          absl::string_view what) {
  // Send everything. While the server's answers pile up, read them too, so
  // that neither side blocks on a full buffer.
  while (true) {
    const int flushed = PQflush(conn_);
    if (flushed == 0) break;
    if (flushed < 0) return ConnectionLost(what);
    if (absl::Status s = Wait(POLLIN | POLLOUT, deadline, what); !s.ok()) {
      return s;
    }
    if (PQconsumeInput(conn_) == 0) return ConnectionLost(what);
  }
  Result last(nullptr);
  PGresult* first_error = nullptr;
  auto drop_error = [&first_error] {
    if (first_error != nullptr) PQclear(first_error);
    first_error = nullptr;
  };
  while (true) {
    while (PQisBusy(conn_) != 0) {
      if (absl::Status s = Wait(POLLIN, deadline, what); !s.ok()) {
        drop_error();
        return s;
      }
      if (PQconsumeInput(conn_) == 0) {
        drop_error();
        return ConnectionLost(what);
      }
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    const ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
      if (first_error == nullptr) {
        first_error = res;
      } else {
        PQclear(res);
      }
    } else {
      last = Result(res);
    }
  }
  if (first_error != nullptr) {
    absl::Status s = Fail(first_error, what);
    drop_error();
    return s;
  }
  if (last.rows() == 0 && PQstatus(conn_) != CONNECTION_OK) {
    return ConnectionLost(what);
  }
  return last;
}

absl::Status Connection::Wait(int events, absl::Time deadline,
                              absl::string_view what) {
  const int fd = PQsocket(conn_);
  if (fd < 0) return ConnectionLost(what);
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      // Whatever is in flight is abandoned: the connection cannot be reused.
      broken_ = true;
      last_error_ = ErrorKind::kConnection;
      return absl::UnavailableError(absl::StrCat(
          "postgres: ", what, ": no answer from the server in time"));
    }
    const int64_t ms =
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
    pollfd p{};
    p.fd = fd;
    p.events = static_cast<short>(events);
    const int rc =
        poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, INT_MAX)));
    // Readable, writable, or an error/hang-up that libpq will report.
    if (rc > 0) return absl::OkStatus();
    if (rc < 0 && errno != EINTR) return ConnectionLost(what);
  }
}

absl::Status Connection::ConnectionLost(absl::string_view what) {
  broken_ = true;
  last_error_ = ErrorKind::kConnection;
  const std::string detail = OneLine(PQerrorMessage(conn_));
  return absl::UnavailableError(
      Scrub(absl::StrCat("postgres: ", what, ": connection to the server lost",
                         detail.empty() ? "" : ": ", detail)));
}

absl::Status Connection::Fail(const PGresult* res, absl::string_view what) {
  const char* raw_state =
      res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string state = raw_state != nullptr ? raw_state : "";
  if (state.empty() && PQstatus(conn_) != CONNECTION_OK) {
    return ConnectionLost(what);
  }
  const char* primary = res != nullptr
                            ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                            : nullptr;
  std::string detail =
      OneLine(primary != nullptr ? primary
                                 : (res != nullptr ? PQresultErrorMessage(res)
                                                   : PQerrorMessage(conn_)));
  auto message = [&](absl::string_view text) {
    return Scrub(absl::StrCat("postgres: ", what, ": ", text, " (SQLSTATE ",
                              state.empty() ? "none" : state, ")"));
  };
  const absl::string_view s(state);
  // Class 08: connection exception. 57P01..57P03: the server is shutting
  // down, crashed, or not yet accepting connections.
  if (StartsWith(s, "08") || s == "57P01" || s == "57P02" || s == "57P03" ||
      PQstatus(conn_) != CONNECTION_OK) {
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
  // out of connections, memory or disk.
  if (s == "57014" || s == "55P03" || StartsWith(s, "53")) {
    return absl::UnavailableError(message(detail));
  }
  if (s == "23505") return absl::AlreadyExistsError(message(detail));
  // Class 22 (data exception) messages may quote the offending value.
  if (StartsWith(s, "22")) {
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

bool IsStorableText(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

}  // namespace sessiond::storage::postgres_internal
