#include "storage/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/session_record.h"

namespace sessiond::storage {
namespace {

// How long a connection waits for another process's write lock before the
// call fails with UNAVAILABLE. Threads of this process never get here: they
// queue on SqliteStore::write_mu_ first.
constexpr int kBusyTimeoutMs = 5000;

// SessionRecord::token_hash is a SHA-256.

// PruneExpired deletes at most this many rows per write transaction, so the
// write lock is never held for long.
constexpr int64_t kPruneBatchSize = 1000;

// Upper bound on reader connections; the pool grows on demand up to it.
int MaxReaders() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores, 2, 8);
}

// ---------------------------------------------------------------------------
// Schema.

struct Migration {
  int version;
  // Fixed DDL; never contains values.
  const char* sql;
};

// Ordered; each entry moves the schema from version - 1 to version in one
// transaction. Append only: never edit a migration that has shipped.
constexpr Migration kMigrations[] = {
    {1, R"sql(
      CREATE TABLE sessions (
        id                   TEXT    NOT NULL PRIMARY KEY,
        token_hash           BLOB    NOT NULL UNIQUE,
        user_id              TEXT    NOT NULL,
        sealed               BLOB    NOT NULL,
        created_at           INTEGER NOT NULL,  -- Unix micros
        last_active_at       INTEGER NOT NULL,  -- Unix micros
        idle_timeout_us      INTEGER NOT NULL,
        absolute_lifetime_us INTEGER NOT NULL,
        version              INTEGER NOT NULL,
        -- min(last_active_at + idle, created_at + absolute), Unix micros;
        -- kept in step with the columns above by every write.
        expires_at           INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sessions_by_user
        ON sessions (user_id, last_active_at DESC, id DESC);
      CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    )sql"},
};

static_assert(kMigrations[std::size(kMigrations) - 1].version ==
                  kSqliteSchemaVersion,
              "kSqliteSchemaVersion must be the last migration's version");

// ---------------------------------------------------------------------------
// Statements. Every statement is prepared once per connection and cached;
// values are always bound, never spliced into SQL text.

enum Sql : int {
  kBegin,
  kCommit,
  kRollback,
  kUserVersion,
  kSelectByHash,
  kDeleteExpiredConflicts,
  kDeleteExpiredByHash,
  kInsert,
  kTouch,
  kRewrite,
  kEvict,
  kDeleteByHash,
  kDeleteById,
  kDeleteForUser,
  kListFirst,
  kListAfter,
  kPruneBatch,
  kPing,
  kNumSql,
};

// Column order read by RecordFromRow (kSelectByHash adds expires_at as
// column kExpiresAtColumn).
#define SESSIOND_SQLITE_COLUMNS                                   \
  "id, token_hash, user_id, sealed, created_at, last_active_at, " \
  "idle_timeout_us, absolute_lifetime_us, version"

constexpr std::array<const char*, kNumSql> kSqlText = {
    // kBegin: takes the write lock up front (waiting up to the busy timeout),
    // so a transaction never fails half-way on lock upgrade.
    "BEGIN IMMEDIATE",
    // kCommit
    "COMMIT",
    // kRollback
    "ROLLBACK",
    // kUserVersion
    "PRAGMA user_version",
    // kSelectByHash: ?1 token_hash. Live or expired: the caller compares
    // expires_at (the extra last column) with now.
    "SELECT " SESSIOND_SQLITE_COLUMNS
    ", expires_at FROM sessions WHERE token_hash = ?1",
    // kDeleteExpiredConflicts: ?1 id, ?2 token_hash, ?3 now. An expired row
    // is as good as missing, so it must not block a new one.
    "DELETE FROM sessions WHERE (id = ?1 OR token_hash = ?2)"
    " AND expires_at <= ?3",
    // kDeleteExpiredByHash: ?1 token_hash, ?2 now
    "DELETE FROM sessions WHERE token_hash = ?1 AND expires_at <= ?2",
    // kInsert
    "INSERT INTO sessions (" SESSIOND_SQLITE_COLUMNS
    ", expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    // kTouch: ?1 id, ?2 last_active_at, ?3 expires_at
    "UPDATE sessions SET last_active_at = ?2, expires_at = ?3 WHERE id = ?1",
    // kRewrite: ?1 id, ?2 expected version, then the new values.
    "UPDATE sessions SET token_hash = ?3, user_id = ?4, sealed = ?5,"
    " last_active_at = ?6, idle_timeout_us = ?7, absolute_lifetime_us = ?8,"
    " version = ?9, expires_at = ?10 WHERE id = ?1 AND version = ?2",
    // kEvict: ?1 user_id, ?2 now, ?3 id to keep, ?4 how many others to keep.
    // Keeps the most recently active (listing order) and deletes the rest.
    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
    " WHERE user_id = ?1 AND expires_at > ?2 AND id <> ?3"
    " ORDER BY last_active_at DESC, id DESC LIMIT -1 OFFSET ?4)",
    // kDeleteByHash: ?1 token_hash, ?2 now
    "DELETE FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
    // kDeleteById: ?1 id, ?2 now
    "DELETE FROM sessions WHERE id = ?1 AND expires_at > ?2",
    // kDeleteForUser: ?1 user_id, ?2 now, ?3 except id ('' keeps none; no
    // stored id is empty).
    "DELETE FROM sessions WHERE user_id = ?1 AND expires_at > ?2"
    " AND id <> ?3",
    // kListFirst: ?1 user_id, ?2 now, ?3 limit
    "SELECT " SESSIOND_SQLITE_COLUMNS
    " FROM sessions WHERE user_id = ?1 AND expires_at > ?2"
    " ORDER BY last_active_at DESC, id DESC LIMIT ?3",
    // kListAfter: as kListFirst, strictly after (?4 last_active_at, ?5 id).
    "SELECT " SESSIOND_SQLITE_COLUMNS
    " FROM sessions WHERE user_id = ?1 AND expires_at > ?2"
    " AND (last_active_at < ?4 OR (last_active_at = ?4 AND id < ?5))"
    " ORDER BY last_active_at DESC, id DESC LIMIT ?3",
    // kPruneBatch: ?1 now, ?2 batch size
    "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions"
    " WHERE expires_at <= ?1 LIMIT ?2)",
    // kPing: reads the schema, so it touches the file.
    "SELECT count(*) FROM sqlite_schema",
};

#undef SESSIOND_SQLITE_COLUMNS

constexpr int kExpiresAtColumn = 9;

// ---------------------------------------------------------------------------
// Errors.

// Maps a SQLite result code to the SessionStore error space. The message
// carries SQLite's text (which names tables and columns, never bound
// values).
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message =
      absl::StrCat("sqlite: ", what, ": ", detail, " (code ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_CONSTRAINT:
      // The only constraints are the id primary key and token_hash UNIQUE.
      return absl::AlreadyExistsError(message);
    default:
      return absl::InternalError(message);
  }
}

// ---------------------------------------------------------------------------
// Conversions. Times are Unix microseconds; durations are microseconds, with
// int64 max standing for an infinite duration.

int64_t TimeToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time MicrosToTime(int64_t us) { return absl::FromUnixMicros(us); }

// Durations the store was given are first truncated with
// TruncateDurationToMicros (session_record.h), so these two convert them
// both ways without loss.
int64_t DurationToMicros(absl::Duration d) {
  return absl::ToInt64Microseconds(d);
}
absl::Duration MicrosToDuration(int64_t us) {
  if (us == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(us);
}

// ---------------------------------------------------------------------------
// Connection and statement wrappers.

class Connection;

// A cached statement in use. Resets and clears it when destroyed, so it
// never keeps a read transaction open.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        bind_rc_(other.bind_rc_) {}
  ~Stmt() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Stmt& Int(int i, int64_t v) {
    Note(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& Text(int i, absl::string_view v) {
    // A null pointer would bind SQL NULL; "" binds an empty string.
    Note(sqlite3_bind_text64(stmt_, i, v.data() != nullptr ? v.data() : "",
                             v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Stmt& Blob(int i, absl::string_view v) {
    Note(sqlite3_bind_blob64(stmt_, i, v.data() != nullptr ? v.data() : "",
                             v.size(), SQLITE_TRANSIENT));
    return *this;
  }

  // True when a row is ready, false when the statement is done.
  absl::StatusOr<bool> Step(absl::string_view what) {
    if (bind_rc_ != SQLITE_OK) return SqliteError(db_, bind_rc_, what);
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, what);
  }
  // Runs a statement that returns no rows; returns the number of rows it
  // changed.
  absl::StatusOr<int64_t> Run(absl::string_view what) {
    absl::StatusOr<bool> row = Step(what);
    if (!row.ok()) return row.status();
    if (*row)
      return absl::InternalError(
          absl::StrCat("sqlite: ", what, ": unexpected row"));
    return static_cast<int64_t>(sqlite3_changes64(db_));
  }

  int64_t ColumnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  std::string ColumnBytes(int i) const {
    // Pointer first, then size, as SQLite documents.
    const void* p = sqlite3_column_blob(stmt_, i);
    const int n = sqlite3_column_bytes(stmt_, i);
    if (p == nullptr || n <= 0) return std::string();
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  void Note(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

SessionRecord RecordFromRow(const Stmt& s) {
  SessionRecord r;
  r.id = s.ColumnBytes(0);
  r.token_hash = s.ColumnBytes(1);
  r.user_id = s.ColumnBytes(2);
  r.sealed_payload = s.ColumnBytes(3);
  r.created_at = MicrosToTime(s.ColumnInt(4));
  r.last_active_at = MicrosToTime(s.ColumnInt(5));
  r.idle_timeout = MicrosToDuration(s.ColumnInt(6));
  r.absolute_lifetime = MicrosToDuration(s.ColumnInt(7));
  r.version = s.ColumnInt(8);
  return r;
}

// One SQLite connection with its statement cache. Used by one thread at a
// time (opened with SQLITE_OPEN_NOMUTEX; the store hands it out exclusively).
class Connection {
 public:
  enum class Role { kWriter, kReader };

  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, Role role) {
    sqlite3* db = nullptr;
    const int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status status = SqliteError(
          db, rc, absl::StrCat("cannot open database \"", path, "\""));
      sqlite3_close_v2(db);  // A handle is returned even on failure.
      return status;
    }
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    if (absl::Status s = conn->Configure(role); !s.ok()) return s;
    return conn;
  }

  ~Connection() {
    for (sqlite3_stmt* stmt : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  // The cached statement `id`, prepared on first use.
  absl::StatusOr<Stmt> Get(Sql id) {
    sqlite3_stmt*& stmt = stmts_[id];
    if (stmt == nullptr) {
      const int rc = sqlite3_prepare_v3(
          db_, kSqlText[id], -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        absl::Status s = SqliteError(db_, rc, "prepare");
        sqlite3_finalize(stmt);
        stmt = nullptr;
        return s;
      }
    }
    return Stmt(db_, stmt);
  }

  // Runs a cached statement that takes no parameters and returns no rows.
  absl::Status Run(Sql id, absl::string_view what) {
    absl::StatusOr<Stmt> stmt = Get(id);
    if (!stmt.ok()) return stmt.status();
    return stmt->Run(what).status();
  }

  // Runs fixed SQL (schema and pragmas only; never values).
  absl::Status Exec(const std::string& sql, absl::string_view what) {
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, what);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> UserVersion() {
    absl::StatusOr<Stmt> stmt = Get(kUserVersion);
    if (!stmt.ok()) return stmt.status();
    absl::StatusOr<bool> row = stmt->Step("read schema version");
    if (!row.ok()) return row.status();
    if (!*row) return absl::InternalError("sqlite: no user_version row");
    return stmt->ColumnInt(0);
  }

  // Ends any open transaction without keeping its changes. Some errors make
  // SQLite roll back by itself; then there is nothing left to do.
  void RollbackIfOpen() {
    if (sqlite3_get_autocommit(db_) != 0) return;
    if (!Run(kRollback, "rollback").ok()) {
      // Last resort: the uncached form, in case the cached one is unusable.
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) { stmts_.fill(nullptr); }

  absl::Status Configure(Role role) {
    sqlite3_extended_result_codes(db_, 1);
    // Waits (with backoff) for another process's lock before SQLITE_BUSY.
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    if (role == Role::kWriter) {
      // WAL is a property of the file and persists; the writer sets it
      // before any reader is opened.
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &stmt,
                                  nullptr);
      std::string mode;
      if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
          const unsigned char* text = sqlite3_column_text(stmt, 0);
          if (text != nullptr) mode = reinterpret_cast<const char*>(text);
          rc = SQLITE_OK;
        }
      }
      absl::Status status = rc == SQLITE_OK || rc == SQLITE_DONE
                                ? absl::OkStatus()
                                : SqliteError(db_, rc, "set journal_mode=WAL");
      sqlite3_finalize(stmt);
      if (!status.ok()) return status;
      if (mode != "wal") {
        return absl::FailedPreconditionError(absl::StrCat(
            "sqlite: could not switch the database to WAL mode (got \"", mode,
            "\"); is it on a file system without shared memory support?"));
      }
    }
    // Durable across a process crash; on power loss the last commits may be
    // rolled back (never corrupted). See the header for why this is chosen.
    if (absl::Status s = Exec("PRAGMA synchronous=NORMAL", "set synchronous");
        !s.ok()) {
      return s;
    }
    if (role == Role::kReader) {
      // Readers never write; make any attempt fail loudly.
      if (absl::Status s = Exec("PRAGMA query_only=ON", "set query_only");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  sqlite3* const db_;
  std::array<sqlite3_stmt*, kNumSql> stmts_;
};

// Applies the migrations the file lacks, each in its own transaction.
absl::Status Migrate(Connection& conn, const std::string& path) {
  auto too_new = [&path](int64_t found) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sqlite: database \"", path, "\" has schema version ", found,
        ", but this sessiond knows versions up to ", kSqliteSchemaVersion,
        "; it was written by a newer sessiond. Upgrade sessiond or point it at "
        "another database."));
  };
  absl::StatusOr<int64_t> current = conn.UserVersion();
  if (!current.ok()) return current.status();
  if (*current > kSqliteSchemaVersion) return too_new(*current);
  if (*current < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("sqlite: database \"", path,
                     "\" has an invalid schema version ", *current));
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= *current) continue;
    if (absl::Status s = conn.Run(kBegin, "begin migration"); !s.ok()) {
      return s;
    }
    // Another process may have migrated while we waited for the lock.
    absl::Status status;
    absl::StatusOr<int64_t> now_at = conn.UserVersion();
    if (!now_at.ok()) {
      status = now_at.status();
    } else if (*now_at > kSqliteSchemaVersion) {
      status = too_new(*now_at);
    } else if (*now_at < m.version) {
      status = conn.Exec(m.sql, absl::StrCat("migrate to version ", m.version));
      if (status.ok()) {
        // PRAGMA takes no parameters; the value is our own constant.
        status = conn.Exec(absl::StrCat("PRAGMA user_version = ", m.version),
                           "record schema version");
      }
    }
    if (status.ok()) status = conn.Run(kCommit, "commit migration");
    if (!status.ok()) {
      conn.RollbackIfOpen();
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status NotFound() {
  return absl::NotFoundError("no live session with this token hash");
}

// ---------------------------------------------------------------------------
// The store.

class SqliteStore : public SessionStore {
 public:
  SqliteStore(std::string path, const Clock* clock, StoreOptions options,
              std::unique_ptr<Connection> writer)
      : path_(std::move(path)),
        clock_(clock),
        options_(options),
        max_readers_(MaxReaders()),
        writer_(std::move(writer)) {}

  absl::string_view backend_name() const override { return "sqlite"; }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& record) override {
    if (absl::Status s = CheckCreateArguments(record); !s.ok()) return s;
    return InWriteTxn<SessionRecord>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<SessionRecord> {
          SessionRecord r = record;
          r.created_at = now;
          r.last_active_at = now;
          r.idle_timeout = TruncateDurationToMicros(record.idle_timeout);
          r.absolute_lifetime =
              TruncateDurationToMicros(record.absolute_lifetime);
          r.version = 1;

          absl::StatusOr<Stmt> clear = c.Get(kDeleteExpiredConflicts);
          if (!clear.ok()) return clear.status();
          clear->Text(1, r.id).Blob(2, r.token_hash).Int(3, TimeToMicros(now));
          if (auto n = clear->Run("create"); !n.ok()) return n.status();

          absl::StatusOr<Stmt> insert = c.Get(kInsert);
          if (!insert.ok()) return insert.status();
          insert->Text(1, r.id)
              .Blob(2, r.token_hash)
              .Text(3, r.user_id)
              .Blob(4, r.sealed_payload)
              .Int(5, TimeToMicros(r.created_at))
              .Int(6, TimeToMicros(r.last_active_at))
              .Int(7, DurationToMicros(r.idle_timeout))
              .Int(8, DurationToMicros(r.absolute_lifetime))
              .Int(9, r.version)
              .Int(10, TimeToMicros(r.ExpiresAt()));
          if (auto n = insert->Run("create"); !n.ok()) {
            if (absl::IsAlreadyExists(n.status())) {
              return absl::AlreadyExistsError(
                  "a live session with this id or token hash already exists");
            }
            return n.status();
          }
          if (absl::Status s = EnforceCap(c, r, now); !s.ok()) return s;
          return r;
        });
  }

  absl::StatusOr<SessionRecord> Load(absl::string_view token_hash) override {
    {
      absl::StatusOr<Reader> reader = AcquireReader();
      if (!reader.ok()) return reader.status();
      const absl::Time now = Now();  // after any wait for the reader
      absl::StatusOr<std::optional<Row>> row =
          SelectByHash(reader->conn(), token_hash, now);
      if (!row.ok()) return row.status();
      if (!row->has_value()) return NotFound();
      if ((*row)->live) return (*row)->record;
    }
    // Expired in the reader's snapshot, which is not final: ask again under
    // the write lock (see SelectByHash).
    return InWriteTxn<SessionRecord>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<SessionRecord> {
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectLive(c, token_hash, now);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          return **found;
        });
  }

  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view token_hash, absl::Duration min_interval) override {
    // Touching when now == last_active_at would change nothing, and a
    // last_active_at ahead of now (another process's clock) is never moved
    // back: skip both.
    auto needs_touch = [&](const SessionRecord& r, absl::Time now) {
      return now - r.last_active_at >= min_interval && now > r.last_active_at;
    };
    // Most calls fall inside the interval: answer those from a reader,
    // without taking the write lock.
    {
      absl::StatusOr<Reader> reader = AcquireReader();
      if (!reader.ok()) return reader.status();
      const absl::Time now = Now();  // after any wait for the reader
      absl::StatusOr<std::optional<Row>> row =
          SelectByHash(reader->conn(), token_hash, now);
      if (!row.ok()) return row.status();
      if (!row->has_value()) return NotFound();
      if ((*row)->live && !needs_touch((*row)->record, now)) {
        return (*row)->record;
      }
      // To touch, or expired in this snapshot (not final, see
      // SelectByHash): both are decided under the write lock.
    }
    return InWriteTxn<SessionRecord>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<SessionRecord> {
          // Read again under the write lock: it may have changed meanwhile.
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectLive(c, token_hash, now);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          SessionRecord r = **found;
          if (!needs_touch(r, now)) return r;
          r.last_active_at = now;
          absl::StatusOr<Stmt> touch = c.Get(kTouch);
          if (!touch.ok()) return touch.status();
          touch->Text(1, r.id)
              .Int(2, TimeToMicros(r.last_active_at))
              .Int(3, TimeToMicros(r.ExpiresAt()));
          if (auto n = touch->Run("touch"); !n.ok()) return n.status();
          return r;
        });
  }

  absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    if (absl::Status s = CheckUpdateArguments(update); !s.ok()) return s;
    return InWriteTxn<SessionRecord>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<SessionRecord> {
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectLive(c, token_hash, now);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          const int64_t old_version = (*found)->version;
          absl::StatusOr<SessionRecord> r =
              ApplyUpdate(**std::move(found), update, now);
          if (!r.ok()) return r.status();
          if (absl::Status s = Rewrite(c, *r, old_version, "update"); !s.ok()) {
            return s;
          }
          if (absl::Status s = EnforceCap(c, *r, now); !s.ok()) return s;
          return r;
        });
  }

  absl::StatusOr<SessionRecord> Cycle(
      absl::string_view old_token_hash, absl::string_view new_token_hash,
      const std::optional<std::string>& user_id) override {
    if (absl::Status s =
            CheckCycleArguments(old_token_hash, new_token_hash, user_id);
        !s.ok()) {
      return s;
    }
    return InWriteTxn<SessionRecord>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<SessionRecord> {
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectLive(c, old_token_hash, now);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          SessionRecord r = **found;

          absl::StatusOr<Stmt> clear = c.Get(kDeleteExpiredByHash);
          if (!clear.ok()) return clear.status();
          clear->Blob(1, new_token_hash).Int(2, TimeToMicros(now));
          if (auto n = clear->Run("cycle"); !n.ok()) return n.status();

          const int64_t old_version = r.version;
          r.token_hash = std::string(new_token_hash);
          if (user_id.has_value()) r.user_id = *user_id;
          r.last_active_at = now;
          r.version = old_version + 1;
          if (absl::Status s = Rewrite(c, r, old_version, "cycle"); !s.ok()) {
            if (absl::IsAlreadyExists(s)) {
              return absl::AlreadyExistsError(
                  "new token hash belongs to another live session");
            }
            return s;
          }
          if (user_id.has_value()) {
            if (absl::Status s = EnforceCap(c, r, now); !s.ok()) return s;
          }
          return r;
        });
  }

  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view token_hash) override {
    return InWriteTxn<int64_t>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<int64_t> {
          absl::StatusOr<Stmt> stmt = c.Get(kDeleteByHash);
          if (!stmt.ok()) return stmt.status();
          stmt->Blob(1, token_hash).Int(2, TimeToMicros(now));
          return stmt->Run("delete by token hash");
        });
  }

  absl::StatusOr<int64_t> DeleteById(absl::string_view id) override {
    if (!IsStorableText(id)) return 0;  // no stored id is like it
    return InWriteTxn<int64_t>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<int64_t> {
          absl::StatusOr<Stmt> stmt = c.Get(kDeleteById);
          if (!stmt.ok()) return stmt.status();
          stmt->Text(1, id).Int(2, TimeToMicros(now));
          return stmt->Run("delete by id");
        });
  }

  absl::StatusOr<int64_t> DeleteForUser(absl::string_view user_id,
                                        absl::string_view except_id) override {
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (!IsStorableText(user_id)) return 0;  // no stored user is like it
    return InWriteTxn<int64_t>(
        [&](Connection& c, absl::Time now) -> absl::StatusOr<int64_t> {
          absl::StatusOr<Stmt> stmt = c.Get(kDeleteForUser);
          if (!stmt.ok()) return stmt.status();
          stmt->Text(1, user_id).Int(2, TimeToMicros(now)).Text(3, except_id);
          return stmt->Run("delete for user");
        });
  }

  absl::StatusOr<SessionPage> ListForUser(
      absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after) override {
    if (absl::Status s = CheckPageLimit(limit); !s.ok()) return s;
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (!IsStorableText(user_id)) return SessionPage();  // no such user
    absl::StatusOr<Reader> reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    const absl::Time now = Now();  // after any wait for the reader
    absl::StatusOr<Stmt> stmt =
        reader->conn().Get(after.has_value() ? kListAfter : kListFirst);
    if (!stmt.ok()) return stmt.status();
    // One extra row tells whether another page follows.
    stmt->Text(1, user_id)
        .Int(2, TimeToMicros(now))
        .Int(3, static_cast<int64_t>(limit) + 1);
    if (after.has_value()) {
      stmt->Int(4, TimeToMicros(after->last_active_at)).Text(5, after->id);
    }
    SessionPage page;
    bool more = false;
    while (true) {
      absl::StatusOr<bool> row = stmt->Step("list for user");
      if (!row.ok()) return row.status();
      if (!*row) break;
      if (page.sessions.size() == static_cast<size_t>(limit)) {
        more = true;
        break;
      }
      page.sessions.push_back(RecordFromRow(*stmt));
    }
    if (more) {
      const SessionRecord& last = page.sessions.back();
      page.next = ListCursor{last.last_active_at, last.id};
    }
    return page;
  }

  absl::StatusOr<int64_t> PruneExpired() override {
    int64_t total = 0;
    while (true) {
      // One short write transaction per batch; other writers get the lock
      // in between. Each batch prunes by its own now.
      absl::StatusOr<int64_t> n = InWriteTxn<int64_t>(
          [&](Connection& c, absl::Time now) -> absl::StatusOr<int64_t> {
            absl::StatusOr<Stmt> stmt = c.Get(kPruneBatch);
            if (!stmt.ok()) return stmt.status();
            stmt->Int(1, TimeToMicros(now)).Int(2, kPruneBatchSize);
            return stmt->Run("prune expired");
          });
      if (!n.ok()) return n.status();
      total += *n;
      if (*n < kPruneBatchSize) return total;
    }
  }

  absl::Status Ping() override {
    absl::StatusOr<Reader> reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    absl::StatusOr<Stmt> stmt = reader->conn().Get(kPing);
    if (!stmt.ok()) return stmt.status();
    return stmt->Step("ping").status();
  }

 private:
  // A reader connection on loan from the pool; returned when destroyed.
  class Reader {
   public:
    Reader(SqliteStore* store, std::unique_ptr<Connection> conn)
        : store_(store), conn_(std::move(conn)) {}
    Reader(Reader&&) = default;
    Reader& operator=(Reader&&) = delete;
    ~Reader() {
      if (conn_ != nullptr) store_->ReleaseReader(std::move(conn_));
    }
    Connection& conn() { return *conn_; }

   private:
    SqliteStore* store_;
    std::unique_ptr<Connection> conn_;
  };

  absl::Time Now() const { return TruncateToMicros(clock_->Now()); }

  absl::StatusOr<Reader> AcquireReader() {
    {
      absl::MutexLock lock(&pool_mu_);
      pool_mu_.Await(absl::Condition(this, &SqliteStore::ReaderAvailable));
      if (!idle_readers_.empty()) {
        std::unique_ptr<Connection> conn = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        return Reader(this, std::move(conn));
      }
      ++open_readers_;  // Reserve a slot; open outside the lock.
    }
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Open(path_, Connection::Role::kReader);
    if (!conn.ok()) {
      absl::MutexLock lock(&pool_mu_);
      --open_readers_;
      return conn.status();
    }
    return Reader(this, *std::move(conn));
  }

  bool ReaderAvailable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
    return !idle_readers_.empty() || open_readers_ < max_readers_;
  }

  void ReleaseReader(std::unique_ptr<Connection> conn) {
    absl::MutexLock lock(&pool_mu_);
    idle_readers_.push_back(std::move(conn));
  }

  // Runs `fn(connection, now)` in one BEGIN IMMEDIATE transaction on the
  // writer connection and commits if it succeeds; rolls back (nothing
  // written) if it fails.
  //
  // `now` is read only once the transaction holds the write lock (after the
  // wait on write_mu_ and on other processes' locks), so the times of
  // successive writes are in commit order. A time read before the wait
  // could be older than a write that committed meanwhile: last_active_at
  // would go back, and a session that expired during the wait (and that
  // other calls already reported expired) would be written as live.
  template <typename T>
  absl::StatusOr<T> InWriteTxn(
      absl::FunctionRef<absl::StatusOr<T>(Connection&, absl::Time now)> fn) {
    absl::MutexLock lock(&write_mu_);
    Connection& c = *writer_;
    if (absl::Status s = c.Run(kBegin, "begin"); !s.ok()) {
      c.RollbackIfOpen();
      return s;
    }
    absl::StatusOr<T> result = fn(c, Now());
    if (result.ok()) {
      if (absl::Status s = c.Run(kCommit, "commit"); !s.ok()) {
        result = s;
      }
    }
    if (!result.ok()) c.RollbackIfOpen();
    return result;
  }

  // The row with a token hash, and whether it is live at `now`.
  //
  // A reader that finds the row expired does not report NOT_FOUND itself
  // but asks again under the write lock (Load, LoadAndTouch). Its snapshot may
  // lack a write that read its time before the session expired and has not
  // committed yet; that write will make the session live again, so an expiry
  // seen in a snapshot is not final. Under the write lock no write is in flight
  // (in any process), and every later write reads a later time, so NOT_FOUND
  // from there is final. This costs a write-lock round trip only for expired
  // rows not yet pruned.
  struct Row {
    SessionRecord record;
    bool live;
  };
  static absl::StatusOr<std::optional<Row>> SelectByHash(
      Connection& c, absl::string_view token_hash, absl::Time now) {
    absl::StatusOr<Stmt> stmt = c.Get(kSelectByHash);
    if (!stmt.ok()) return stmt.status();
    stmt->Blob(1, token_hash);
    absl::StatusOr<bool> row = stmt->Step("load");
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<Row>();
    return std::optional<Row>(
        Row{RecordFromRow(*stmt),
            stmt->ColumnInt(kExpiresAtColumn) > TimeToMicros(now)});
  }

  // The live session with a token hash, if any.
  static absl::StatusOr<std::optional<SessionRecord>> SelectLive(
      Connection& c, absl::string_view token_hash, absl::Time now) {
    absl::StatusOr<std::optional<Row>> row = SelectByHash(c, token_hash, now);
    if (!row.ok()) return row.status();
    if (!row->has_value() || !(*row)->live) {
      return std::optional<SessionRecord>();
    }
    return std::optional<SessionRecord>(std::move((*row)->record));
  }

  // Writes every field of `r` over the row with r.id, if its version is
  // still `old_version` (always so under the write lock; checked anyway).
  static absl::Status Rewrite(Connection& c, const SessionRecord& r,
                              int64_t old_version, absl::string_view what) {
    absl::StatusOr<Stmt> stmt = c.Get(kRewrite);
    if (!stmt.ok()) return stmt.status();
    stmt->Text(1, r.id)
        .Int(2, old_version)
        .Blob(3, r.token_hash)
        .Text(4, r.user_id)
        .Blob(5, r.sealed_payload)
        .Int(6, TimeToMicros(r.last_active_at))
        .Int(7, DurationToMicros(r.idle_timeout))
        .Int(8, DurationToMicros(r.absolute_lifetime))
        .Int(9, r.version)
        .Int(10, TimeToMicros(r.ExpiresAt()));
    absl::StatusOr<int64_t> n = stmt->Run(what);
    if (!n.ok()) return n.status();
    if (*n != 1) {
      return absl::AbortedError(
          absl::StrCat("sqlite: ", what, ": session changed concurrently"));
    }
    return absl::OkStatus();
  }

  // The per-user cap, in the caller's transaction: keeps `r` and the
  // max_sessions_per_user - 1 most recently active other live sessions of
  // r.user_id, deletes the rest.
  absl::Status EnforceCap(Connection& c, const SessionRecord& r,
                          absl::Time now) const {
    if (options_.max_sessions_per_user <= 0 || r.user_id.empty()) {
      return absl::OkStatus();
    }
    absl::StatusOr<Stmt> stmt = c.Get(kEvict);
    if (!stmt.ok()) return stmt.status();
    stmt->Text(1, r.user_id)
        .Int(2, TimeToMicros(now))
        .Text(3, r.id)
        .Int(4, options_.max_sessions_per_user - 1);
    return stmt->Run("evict over per-user cap").status();
  }

  const std::string path_;
  const Clock* const clock_;
  const StoreOptions options_;
  const int max_readers_;

  absl::Mutex write_mu_;
  const std::unique_ptr<Connection> writer_ ABSL_PT_GUARDED_BY(write_mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_
      ABSL_GUARDED_BY(pool_mu_);
  int open_readers_ ABSL_GUARDED_BY(pool_mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> OpenSqliteStore(
    const std::string& path, const Clock* clock, const StoreOptions& options) {
  if (path.empty() || path == ":memory:" ||
      absl::string_view(path).substr(0, 5) == "file:") {
    return absl::InvalidArgumentError(
        "sqlite: path must name a database file (\":memory:\", \"\" and URIs "
        "are not supported: the store opens several connections)");
  }
  if (clock == nullptr) {
    return absl::InvalidArgumentError("sqlite: clock must not be null");
  }
  if (options.max_sessions_per_user < 0) {
    return absl::InvalidArgumentError(
        "sqlite: max_sessions_per_user must not be negative");
  }
  absl::StatusOr<std::unique_ptr<Connection>> writer =
      Connection::Open(path, Connection::Role::kWriter);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = Migrate(**writer, path); !s.ok()) return s;
  return std::unique_ptr<SessionStore>(
      new SqliteStore(path, clock, options, *std::move(writer)));
}

}  // namespace sessiond::storage
