#include "storage/postgres_store.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <pqxx/result>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "storage/postgres_conn.h"
#include "storage/session_record.h"
#include "storage/socket_watchdog.h"

namespace sessiond::storage {
namespace {

using internal::Watchdog;
using postgres_internal::Affected;
using postgres_internal::Bytea;
using postgres_internal::Connection;
using postgres_internal::ConnectOptions;
using postgres_internal::ErrorKind;
using postgres_internal::FieldBytea;
using postgres_internal::FieldInt;
using postgres_internal::FieldText;
using postgres_internal::Statement;
using postgres_internal::Text;

// SessionRecord::token_hash is a SHA-256.

// A deadlocked or serialization-failed call is retried this many more times.
constexpr int kMaxConflictRetries = 4;

// Eviction for the per-user cap chooses its victims again when some changed
// before it could delete them (see EnforceCap), at most this many times in
// all.
constexpr int kMaxEvictRounds = 8;

// Migrations may rewrite large tables: the migrating transaction gets this
// statement timeout instead of the store's.
constexpr absl::Duration kMigrationTimeout = absl::Minutes(5);

// TCP keepalive on pooled connections (seconds): a peer that vanished is
// noticed within about idle + interval * count.
constexpr int kKeepalivesIdle = 5;
constexpr int kKeepalivesInterval = 2;
constexpr int kKeepalivesCount = 3;

// ---------------------------------------------------------------------------
// Schema.

struct Migration {
  int version;
  // Recorded in sessiond_schema_migrations; no quotes.
  const char* description;
  // Fixed DDL; never contains values.
  const char* sql;
};

// Ordered; each entry moves the schema from version - 1 to version. Append
// only: never edit a migration that has shipped.
constexpr Migration kMigrations[] = {
    {1, "sessions table", R"sql(
      CREATE TABLE sessiond_sessions (
        id                   text COLLATE "C" NOT NULL PRIMARY KEY,
        token_hash           bytea  NOT NULL UNIQUE,
        user_id              text COLLATE "C" NOT NULL,
        sealed               bytea  NOT NULL,
        created_at           bigint NOT NULL,  -- Unix micros
        last_active_at       bigint NOT NULL,  -- Unix micros
        idle_timeout_us      bigint NOT NULL,  -- int64 max: infinite
        absolute_lifetime_us bigint NOT NULL,
        version              bigint NOT NULL,
        -- min(last_active_at + idle, created_at + absolute), Unix micros;
        -- kept in step with the columns above by every write.
        expires_at           bigint NOT NULL
      );
      CREATE INDEX sessiond_sessions_by_user
        ON sessiond_sessions (user_id, last_active_at DESC, id DESC);
      CREATE INDEX sessiond_sessions_by_expiry
        ON sessiond_sessions (expires_at);
    )sql"},
};

static_assert(kMigrations[std::size(kMigrations) - 1].version ==
                  kPostgresSchemaVersion,
              "kPostgresSchemaVersion must be the last migration's version");

// Advisory lock keys. The migration lock uses the one-bigint key space, the
// per-user locks the two-int key space; PostgreSQL keeps them apart.
#define SESSIOND_PG_MIGRATION_LOCK "x'73657373696f6e64'::bigint"
#define SESSIOND_PG_USER_LOCK_CLASS "x'73657373'::int"

// ---------------------------------------------------------------------------
// Statements, registered on each connection and prepared there on first use.
// Parameters: text as text, bytea in binary format, bigint as decimal text;
// their types are fixed by the casts.

enum StatementId : int {
  kLockUser,
  kSelectByHash,
  kSelectByHashForShare,
  kSelectByHashForUpdate,
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
  kNumStatements,
};

// Column order read by RecordFromRow.
#define SESSIOND_PG_COLUMNS                                       \
  "id, token_hash, user_id, sealed, created_at, last_active_at, " \
  "idle_timeout_us, absolute_lifetime_us, version"

constexpr std::array<Statement, kNumStatements> kStatements = {{
    // $1 user_id. Serialises, across processes, the writers that may have
    // to evict this user's sessions; released at commit or rollback.
    {kLockUser, "sessiond_lock_user",
     "SELECT pg_advisory_xact_lock(" SESSIOND_PG_USER_LOCK_CLASS
     ", hashtext($1::text))"},
    // $1 token_hash. Expired or not: the caller decides with its own time.
    {kSelectByHash, "sessiond_select_by_hash",
     "SELECT " SESSIOND_PG_COLUMNS
     " FROM sessiond_sessions WHERE token_hash = $1::bytea"},
    // Waits for a writer of the row to finish, and keeps writers out until
    // the transaction ends.
    {kSelectByHashForShare, "sessiond_select_by_hash_for_share",
     "SELECT " SESSIOND_PG_COLUMNS
     " FROM sessiond_sessions WHERE token_hash = $1::bytea FOR SHARE"},
    {kSelectByHashForUpdate, "sessiond_select_by_hash_for_update",
     "SELECT " SESSIOND_PG_COLUMNS
     " FROM sessiond_sessions WHERE token_hash = $1::bytea FOR UPDATE"},
    // $1 id, $2 token_hash, $3 now. An expired row is as good as missing,
    // so it must not block a new one.
    {kDeleteExpiredConflicts, "sessiond_delete_expired_conflicts",
     "DELETE FROM sessiond_sessions WHERE (id = $1::text OR token_hash ="
     " $2::bytea) AND expires_at <= $3::bigint"},
    // $1 token_hash, $2 now
    {kDeleteExpiredByHash, "sessiond_delete_expired_by_hash",
     "DELETE FROM sessiond_sessions WHERE token_hash = $1::bytea"
     " AND expires_at <= $2::bigint"},
    {kInsert, "sessiond_insert",
     "INSERT INTO sessiond_sessions (" SESSIOND_PG_COLUMNS
     ", expires_at) VALUES ($1::text, $2::bytea, $3::text, $4::bytea,"
     " $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::bigint,"
     " $10::bigint)"},
    // $1 id, $2 new last_active_at, $3 new expires_at; on a locked row.
    {kTouch, "sessiond_touch",
     "UPDATE sessiond_sessions SET last_active_at = $2::bigint,"
     " expires_at = $3::bigint WHERE id = $1::text"},
    // $1 id, $2 expected (current) version, then the new values. The
    // compare-and-set is the version check in this WHERE.
    {kRewrite, "sessiond_rewrite",
     "UPDATE sessiond_sessions SET token_hash = $3::bytea,"
     " user_id = $4::text, sealed = $5::bytea, last_active_at = $6::bigint,"
     " idle_timeout_us = $7::bigint, absolute_lifetime_us = $8::bigint,"
     " version = $9::bigint, expires_at = $10::bigint"
     " WHERE id = $1::text AND version = $2::bigint"},
    // $1 user_id, $2 now, $3 id to keep, $4 how many others to keep. Keeps
    // the most recently active (listing order), deletes the rest. Returns
    // how many of the victims it chose were not deleted because they changed
    // (or went) before it could lock them: the DELETE's conditions are
    // re-checked on the row's latest version, so a victim that was touched
    // meanwhile (its last_active_at moved: it may no longer be among the
    // least recently active), moved to another user, or was deleted, is
    // skipped, and the caller runs the statement again (with a new snapshot,
    // which sees the change).
    {kEvict, "sessiond_evict",
     "WITH victims AS (SELECT id, last_active_at FROM sessiond_sessions"
     " WHERE user_id = $1::text AND expires_at > $2::bigint AND id <> $3::text"
     " ORDER BY last_active_at DESC, id DESC OFFSET $4::bigint),"
     " evicted AS (DELETE FROM sessiond_sessions s USING victims v"
     " WHERE s.id = v.id AND s.last_active_at = v.last_active_at"
     " AND s.user_id = $1::text AND s.expires_at > $2::bigint RETURNING 1)"
     " SELECT (SELECT count(*) FROM victims) - (SELECT count(*) FROM evicted)"},
    // The deletes remove the rows whether expired or not (an expired row is
    // dead anyway) and return each row's expiry, so that the caller counts
    // the live ones with a time read once the rows are locked.
    // $1 token_hash
    {kDeleteByHash, "sessiond_delete_by_hash",
     "DELETE FROM sessiond_sessions WHERE token_hash = $1::bytea"
     " RETURNING expires_at"},
    // $1 id
    {kDeleteById, "sessiond_delete_by_id",
     "DELETE FROM sessiond_sessions WHERE id = $1::text RETURNING expires_at"},
    // $1 user_id, $2 except id ('' keeps none; no stored id is empty).
    {kDeleteForUser, "sessiond_delete_for_user",
     "DELETE FROM sessiond_sessions WHERE user_id = $1::text"
     " AND id <> $2::text RETURNING expires_at"},
    // $1 user_id, $2 now, $3 limit
    {kListFirst, "sessiond_list_first",
     "SELECT " SESSIOND_PG_COLUMNS
     " FROM sessiond_sessions WHERE user_id = $1::text"
     " AND expires_at > $2::bigint"
     " ORDER BY last_active_at DESC, id DESC LIMIT $3::bigint"},
    // As kListFirst, strictly after ($4 last_active_at, $5 id).
    {kListAfter, "sessiond_list_after",
     "SELECT " SESSIOND_PG_COLUMNS
     " FROM sessiond_sessions WHERE user_id = $1::text"
     " AND expires_at > $2::bigint"
     " AND (last_active_at, id) < ($4::bigint, $5::text)"
     " ORDER BY last_active_at DESC, id DESC LIMIT $3::bigint"},
    // $1 now, $2 batch size. Rows another transaction holds are skipped: a
    // concurrent pruner deletes them, or a writer that holds one may be
    // bringing it back to life, or the next prune does.
    {kPruneBatch, "sessiond_prune_batch",
     "DELETE FROM sessiond_sessions WHERE ctid = ANY(ARRAY("
     "SELECT ctid FROM sessiond_sessions WHERE expires_at <= $1::bigint"
     " LIMIT $2::bigint FOR UPDATE SKIP LOCKED))"
     " AND expires_at <= $1::bigint"},
    {kPing, "sessiond_ping", "SELECT 1"},
}};

#undef SESSIOND_PG_COLUMNS

constexpr bool StatementsInOrder() {
  for (int i = 0; i < kNumStatements; ++i) {
    if (kStatements[i].index != i) return false;
  }
  return true;
}
static_assert(StatementsInOrder(), "kStatements must follow StatementId");

const Statement& Stmt(StatementId id) { return kStatements[id]; }

// ---------------------------------------------------------------------------
// Conversions. Times are Unix microseconds; durations are microseconds, with
// int64 max standing for an infinite duration. Durations the store was given
// are first truncated with TruncateDurationToMicros (session_record.h), so
// these convert them both ways without loss.

int64_t TimeToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time MicrosToTime(int64_t us) { return absl::FromUnixMicros(us); }

int64_t DurationToMicros(absl::Duration d) {
  return absl::ToInt64Microseconds(d);
}
absl::Duration MicrosToDuration(int64_t us) {
  if (us == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(us);
}

SessionRecord RecordFromRow(const pqxx::row& row) {
  SessionRecord r;
  r.id = FieldText(row[0]);
  r.token_hash = FieldBytea(row[1]);
  r.user_id = FieldText(row[2]);
  r.sealed_payload = FieldBytea(row[3]);
  r.created_at = MicrosToTime(FieldInt(row[4]));
  r.last_active_at = MicrosToTime(FieldInt(row[5]));
  r.idle_timeout = MicrosToDuration(FieldInt(row[6]));
  r.absolute_lifetime = MicrosToDuration(FieldInt(row[7]));
  r.version = FieldInt(row[8]);
  return r;
}

// ---------------------------------------------------------------------------
// Statement helpers, run inside a call (see PostgresStore::Run).

// The row with this token hash, live or not, read as `id` says (plain,
// FOR SHARE or FOR UPDATE).
absl::StatusOr<std::optional<SessionRecord>> SelectByHash(
    Connection& c, StatementId id, absl::string_view token_hash) {
  absl::StatusOr<pqxx::result> res =
      c.Exec(Stmt(id), "load", Bytea(token_hash));
  if (!res.ok()) return res.status();
  if (res->empty()) return std::optional<SessionRecord>();
  return std::optional<SessionRecord>(RecordFromRow((*res)[0]));
}

// How many of the expiries a delete returned are after `now`.
int64_t CountLive(const pqxx::result& res, absl::Time now) {
  const int64_t now_us = absl::ToUnixMicros(now);
  int64_t live = 0;
  for (const pqxx::row& row : res) {
    if (FieldInt(row[0]) > now_us) ++live;
  }
  return live;
}

// Writes every field of `r` over the row with r.id, which the caller has
// locked at version `old_version`.
absl::Status Rewrite(Connection& c, const SessionRecord& r, int64_t old_version,
                     absl::string_view what) {
  absl::StatusOr<pqxx::result> res = c.Exec(
      Stmt(kRewrite), what, Text(r.id), old_version, Bytea(r.token_hash),
      Text(r.user_id), Bytea(r.sealed_payload), TimeToMicros(r.last_active_at),
      DurationToMicros(r.idle_timeout), DurationToMicros(r.absolute_lifetime),
      r.version, TimeToMicros(r.ExpiresAt()));
  if (!res.ok()) return res.status();
  if (Affected(*res) != 1) {
    return absl::InternalError(
        absl::StrCat("postgres: ", what, ": the locked session changed"));
  }
  return absl::OkStatus();
}

absl::Status NotFound() {
  return absl::NotFoundError("no live session with this token hash");
}

// Jittered exponential backoff before retrying a conflicted transaction.
absl::Duration ConflictBackoff(int attempt) {
  thread_local std::minstd_rand rng(static_cast<uint32_t>(
      std::hash<std::thread::id>()(std::this_thread::get_id()) ^
      static_cast<size_t>(absl::ToUnixNanos(absl::Now()))));
  const int64_t base_ms = int64_t{5} << std::min(attempt, 5);
  std::uniform_int_distribution<int64_t> jitter(0, base_ms);
  return absl::Milliseconds(base_ms + jitter(rng));
}

// ---------------------------------------------------------------------------
// Schema migration.

absl::StatusOr<int64_t> ParseVersion(const pqxx::result& res) {
  int64_t v = 0;
  if (res.size() != 1 || res.columns() != 1 ||
      !absl::SimpleAtoi(FieldText(res[0][0]), &v)) {
    return absl::InternalError("postgres: cannot read the schema version");
  }
  return v;
}

absl::Status TooNew(int64_t found) {
  return absl::FailedPreconditionError(absl::StrCat(
      "postgres: the database has schema version ", found,
      ", but this sessiond knows versions up to ", kPostgresSchemaVersion,
      "; it was written by a newer sessiond. Upgrade sessiond or point it at "
      "another database."));
}

// The recorded schema version; 0 for an empty database. Takes no lock. In a
// call.
absl::StatusOr<int64_t> ReadSchemaVersion(Connection& c) {
  absl::StatusOr<pqxx::result> exists =
      c.ExecSql("SELECT to_regclass('sessiond_schema_migrations') IS NOT NULL",
                "read schema version");
  if (!exists.ok()) return exists.status();
  if (exists->size() != 1 || FieldText((*exists)[0][0]) != "t") return 0;
  absl::StatusOr<pqxx::result> max = c.ExecSql(
      "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations",
      "read schema version");
  if (!max.ok()) return max.status();
  return ParseVersion(*max);
}

// In a call; leaves a transaction open on failure (EndCall rolls it back).
absl::Status MigrateLocked(Connection& c) {
  const int64_t timeout_ms = absl::ToInt64Milliseconds(kMigrationTimeout);
  if (absl::Status s = c.Begin("lock schema for migration"); !s.ok()) {
    return s;
  }
  // Under the lock, read the version again: another replica may have
  // migrated while this one waited.
  absl::StatusOr<pqxx::result> locked = c.ExecSql(
      absl::StrCat(
          "SET LOCAL statement_timeout = ", timeout_ms,
          "; SELECT pg_advisory_xact_lock(" SESSIOND_PG_MIGRATION_LOCK "); "
          "CREATE TABLE IF NOT EXISTS sessiond_schema_migrations ("
          " version integer PRIMARY KEY,"
          " description text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now()); "
          "SELECT coalesce(max(version), 0) FROM sessiond_schema_migrations"),
      "lock schema for migration");
  if (!locked.ok()) return locked.status();
  absl::StatusOr<int64_t> current = ParseVersion(*locked);
  if (!current.ok()) return current.status();
  if (*current > kPostgresSchemaVersion) return TooNew(*current);
  for (const Migration& m : kMigrations) {
    if (m.version <= *current) continue;
    const std::string what = absl::StrCat("migrate to version ", m.version);
    if (absl::StatusOr<pqxx::result> r = c.ExecSql(m.sql, what); !r.ok()) {
      return r.status();
    }
    // Our own constants: no values from outside.
    if (absl::StatusOr<pqxx::result> r = c.ExecSql(
            absl::StrCat("INSERT INTO sessiond_schema_migrations (version, "
                         "description) VALUES (",
                         m.version, ", '", m.description, "')"),
            what);
        !r.ok()) {
      return r.status();
    }
  }
  return c.Commit("commit migration");
}

// Brings the schema up to kPostgresSchemaVersion.
absl::Status Migrate(Connection& c, absl::Duration quick_budget) {
  c.StartCall(absl::Now() + quick_budget);
  absl::StatusOr<int64_t> current = ReadSchemaVersion(c);
  c.EndCall();
  if (!current.ok()) return current.status();
  if (*current > kPostgresSchemaVersion) return TooNew(*current);
  if (*current == kPostgresSchemaVersion) return absl::OkStatus();
  c.StartCall(absl::Now() + kMigrationTimeout + quick_budget);
  absl::Status s = MigrateLocked(c);
  c.EndCall();  // Rolls back what failed.
  return s;
}

// ---------------------------------------------------------------------------
// The store.

class PostgresStore : public SessionStore {
 public:
  PostgresStore(ConnectOptions connect, const PostgresOptions& options,
                const Clock* clock, StoreOptions store_options,
                std::unique_ptr<Watchdog> watchdog,
                std::unique_ptr<Connection> first)
      : connect_(std::move(connect)),
        clock_(clock),
        store_options_(store_options),
        pool_size_(options.pool_size),
        connect_timeout_(options.connect_timeout),
        call_budget_(options.connect_timeout + options.statement_timeout +
                     absl::Seconds(1)),
        prune_batch_size_(options.prune_batch_size),
        watchdog_(std::move(watchdog)) {
    absl::MutexLock lock(&mu_);
    open_ = 1;
    idle_.push_back(std::move(first));
  }

  ~PostgresStore() override {
    // Connections before the watchdog they are registered with.
    absl::MutexLock lock(&mu_);
    idle_.clear();
  }

  absl::string_view backend_name() const override { return "postgres"; }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& record) override {
    if (absl::Status s = CheckCreateArguments(record); !s.ok()) return s;
    return Run<SessionRecord>(
        Kind::kTransaction, "create",
        [&](Connection& c) -> absl::StatusOr<SessionRecord> {
          if (absl::Status s = LockUserIfCapped(c, record.user_id); !s.ok()) {
            return s;
          }
          const absl::Time now = Now();
          SessionRecord r = record;
          r.created_at = now;
          r.last_active_at = now;
          r.idle_timeout = TruncateDurationToMicros(record.idle_timeout);
          r.absolute_lifetime =
              TruncateDurationToMicros(record.absolute_lifetime);
          r.version = 1;
          absl::StatusOr<pqxx::result> cleared =
              c.Exec(Stmt(kDeleteExpiredConflicts), "create", Text(r.id),
                     Bytea(r.token_hash), TimeToMicros(now));
          if (!cleared.ok()) return cleared.status();
          absl::StatusOr<pqxx::result> inserted =
              c.Exec(Stmt(kInsert), "create", Text(r.id), Bytea(r.token_hash),
                     Text(r.user_id), Bytea(r.sealed_payload),
                     TimeToMicros(r.created_at), TimeToMicros(r.last_active_at),
                     DurationToMicros(r.idle_timeout),
                     DurationToMicros(r.absolute_lifetime), r.version,
                     TimeToMicros(r.ExpiresAt()));
          if (!inserted.ok()) {
            if (absl::IsAlreadyExists(inserted.status())) {
              return absl::AlreadyExistsError(
                  "a live session with this id or token hash already exists");
            }
            return inserted.status();
          }
          if (absl::Status s = EnforceCap(c, r, now); !s.ok()) return s;
          return r;
        });
  }

  absl::StatusOr<SessionRecord> Load(absl::string_view token_hash) override {
    return Run<SessionRecord>(
        Kind::kRetrySafe, "load",
        [&](Connection& c) -> absl::StatusOr<SessionRecord> {
          // The common case: one plain read, no lock.
          const absl::Time read_at = Now();
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectByHash(c, kSelectByHash, token_hash);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          if ((*found)->IsLiveAt(read_at)) return **found;
          return LoadLocked(c, token_hash);
        });
  }

  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view token_hash, absl::Duration min_interval) override {
    // Touching when now == last_active_at would change nothing, and a
    // last_active_at ahead of now (another process's clock) is never moved
    // back: skip both.
    auto needs_touch = [min_interval](const SessionRecord& r, absl::Time now) {
      return now - r.last_active_at >= min_interval && now > r.last_active_at;
    };
    // A touch only moves last_active_at to now: repeating it is harmless,
    // so the call is safe to retry on a new connection.
    return Run<SessionRecord>(
        Kind::kRetrySafe, "load and touch",
        [&](Connection& c) -> absl::StatusOr<SessionRecord> {
          // Most calls fall inside the interval: answer those with one plain
          // read.
          const absl::Time read_at = Now();
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectByHash(c, kSelectByHash, token_hash);
          if (!found.ok()) return found.status();
          if (!found->has_value()) return NotFound();
          if ((*found)->IsLiveAt(read_at) && !needs_touch(**found, read_at)) {
            return **found;
          }
          // Lock the row, then read the time and decide.
          if (absl::Status s = c.Begin("touch"); !s.ok()) return s;
          found = SelectByHash(c, kSelectByHashForUpdate, token_hash);
          if (!found.ok()) return found.status();
          const absl::Time now = Now();
          if (!found->has_value() || !(*found)->IsLiveAt(now)) {
            return NotFound();  // Run rolls the transaction back.
          }
          SessionRecord r = **found;
          if (needs_touch(r, now)) {
            r.last_active_at = now;
            absl::StatusOr<pqxx::result> touched = c.Exec(
                Stmt(kTouch), "touch", Text(r.id),
                TimeToMicros(r.last_active_at), TimeToMicros(r.ExpiresAt()));
            if (!touched.ok()) return touched.status();
          }
          if (absl::Status s = c.Commit("touch"); !s.ok()) return s;
          return r;
        });
  }

  absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    if (absl::Status s = CheckUpdateArguments(update); !s.ok()) return s;
    return Run<SessionRecord>(
        Kind::kTransaction, "update",
        [&](Connection& c) -> absl::StatusOr<SessionRecord> {
          if (absl::Status s = LockUserIfCapped(c, update.user_id); !s.ok()) {
            return s;
          }
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectByHash(c, kSelectByHashForUpdate, token_hash);
          if (!found.ok()) return found.status();
          const absl::Time now = Now();
          if (!found->has_value() || !(*found)->IsLiveAt(now)) {
            return NotFound();
          }
          const int64_t old_version = (*found)->version;
          // Never back in time: another process, whose clock may be ahead
          // of ours, may have written a later last_active_at.
          const absl::Time active = std::max(now, (*found)->last_active_at);
          absl::StatusOr<SessionRecord> r =
              ApplyUpdate(**std::move(found), update, active);
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
    return Run<SessionRecord>(
        Kind::kTransaction, "cycle",
        [&](Connection& c) -> absl::StatusOr<SessionRecord> {
          if (user_id.has_value()) {
            if (absl::Status s = LockUserIfCapped(c, *user_id); !s.ok()) {
              return s;
            }
          }
          // Locked: of concurrent Cycles of one session exactly one finds it
          // under the old hash.
          absl::StatusOr<std::optional<SessionRecord>> found =
              SelectByHash(c, kSelectByHashForUpdate, old_token_hash);
          if (!found.ok()) return found.status();
          const absl::Time now = Now();
          if (!found->has_value() || !(*found)->IsLiveAt(now)) {
            return NotFound();
          }
          SessionRecord r = **found;

          absl::StatusOr<pqxx::result> cleared =
              c.Exec(Stmt(kDeleteExpiredByHash), "cycle", Bytea(new_token_hash),
                     TimeToMicros(now));
          if (!cleared.ok()) return cleared.status();

          const int64_t old_version = r.version;
          r.token_hash = std::string(new_token_hash);
          if (user_id.has_value()) r.user_id = *user_id;
          r.last_active_at = std::max(now, r.last_active_at);  // as in Update
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
    constexpr absl::string_view kWhat = "delete by token hash";
    return Delete(kWhat, [&](Connection& c) {
      return c.Exec(Stmt(kDeleteByHash), kWhat, Bytea(token_hash));
    });
  }

  absl::StatusOr<int64_t> DeleteById(absl::string_view id) override {
    // No stored id is like this one.
    if (!IsStorableText(id)) return 0;
    constexpr absl::string_view kWhat = "delete by id";
    return Delete(kWhat, [&](Connection& c) {
      return c.Exec(Stmt(kDeleteById), kWhat, Text(id));
    });
  }

  absl::StatusOr<int64_t> DeleteForUser(absl::string_view user_id,
                                        absl::string_view except_id) override {
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (!IsStorableText(user_id)) return 0;
    // An except_id that no stored id can equal protects nothing.
    const absl::string_view keep =
        IsStorableText(except_id) ? except_id : absl::string_view();
    constexpr absl::string_view kWhat = "delete for user";
    return Delete(kWhat, [&](Connection& c) {
      return c.Exec(Stmt(kDeleteForUser), kWhat, Text(user_id), Text(keep));
    });
  }

  absl::StatusOr<SessionPage> ListForUser(
      absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after) override {
    if (absl::Status s = CheckPageLimit(limit); !s.ok()) return s;
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (after.has_value() && !IsStorableText(after->id)) {
      return absl::InvalidArgumentError(
          "cursor id must be valid UTF-8 without NUL bytes");
    }
    if (!IsStorableText(user_id)) return SessionPage();
    return Run<SessionPage>(
        Kind::kRetrySafe, "list for user",
        [&](Connection& c) -> absl::StatusOr<SessionPage> {
          const absl::Time now = Now();  // after any wait for a connection
          // One extra row tells whether another page follows.
          const int64_t rows_wanted = static_cast<int64_t>(limit) + 1;
          absl::StatusOr<pqxx::result> res =
              after.has_value()
                  ? c.Exec(Stmt(kListAfter), "list for user", Text(user_id),
                           TimeToMicros(now), rows_wanted,
                           TimeToMicros(after->last_active_at), Text(after->id))
                  : c.Exec(Stmt(kListFirst), "list for user", Text(user_id),
                           TimeToMicros(now), rows_wanted);
          if (!res.ok()) return res.status();
          SessionPage page;
          const int64_t rows = static_cast<int64_t>(res->size());
          for (int64_t i = 0; i < rows && i < limit; ++i) {
            page.sessions.push_back(
                RecordFromRow((*res)[static_cast<pqxx::result::size_type>(i)]));
          }
          if (rows > limit) {
            const SessionRecord& last = page.sessions.back();
            page.next = ListCursor{last.last_active_at, last.id};
          }
          return page;
        });
  }

  absl::StatusOr<int64_t> PruneExpired() override {
    int64_t total = 0;
    while (true) {
      // One short autocommit statement per batch, each by its own now.
      absl::StatusOr<int64_t> n =
          Run<int64_t>(Kind::kSingleWrite, "prune expired",
                       [&](Connection& c) -> absl::StatusOr<int64_t> {
                         const absl::Time now = Now();
                         absl::StatusOr<pqxx::result> res =
                             c.Exec(Stmt(kPruneBatch), "prune expired",
                                    TimeToMicros(now), prune_batch_size_);
                         if (!res.ok()) return res.status();
                         return Affected(*res);
                       });
      if (!n.ok()) return n.status();
      total += *n;
      if (*n < prune_batch_size_) return total;
    }
  }

  absl::Status Ping() override {
    return Run<bool>(Kind::kRetrySafe, "ping",
                     [](Connection& c) -> absl::StatusOr<bool> {
                       absl::StatusOr<pqxx::result> res =
                           c.Exec(Stmt(kPing), "ping");
                       if (!res.ok()) return res.status();
                       return true;
                     })
        .status();
  }

 private:
  // How a call may be retried when its pooled connection turns out dead.
  enum class Kind {
    // Reads and idempotent writes: retried once on a new connection.
    kRetrySafe,
    // One autocommit write: never retried (it may have been applied).
    kSingleWrite,
    // BEGIN ... COMMIT: retried once if it failed before COMMIT was sent.
    kTransaction,
  };

  // A connection on loan from the pool for one call, whose every wait on the
  // server is bounded by the call's deadline (Connection::StartCall). When
  // destroyed it ends the call and returns the connection (or drops it, if
  // it is no longer idle and healthy).
  class Lease {
   public:
    Lease(PostgresStore* store, std::unique_ptr<Connection> conn, bool reused,
          absl::Time deadline)
        : store_(store), conn_(std::move(conn)), reused_(reused) {
      conn_->StartCall(deadline);
    }
    Lease(Lease&& other) noexcept
        : store_(other.store_),
          conn_(std::move(other.conn_)),
          reused_(other.reused_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ == nullptr) return;
      conn_->EndCall();
      store_->Release(std::move(conn_));
    }
    Connection& conn() { return *conn_; }
    // Came out of the pool (rather than freshly opened for this call).
    bool reused() const { return reused_; }

   private:
    PostgresStore* store_;
    std::unique_ptr<Connection> conn_;
    bool reused_;
  };

  absl::Time Now() const { return TruncateToMicros(clock_->Now()); }

  // Load's answer for a session that its plain read found expired. A write
  // that read the time before this call did, and found the session live,
  // may still be committing it back to life: wait for any writer of the row
  // (share lock), then read the time and decide. Rare: only expired,
  // unpruned sessions get here.
  absl::StatusOr<SessionRecord> LoadLocked(Connection& c,
                                           absl::string_view token_hash) {
    if (absl::Status s = c.Begin("load"); !s.ok()) return s;
    absl::StatusOr<std::optional<SessionRecord>> found =
        SelectByHash(c, kSelectByHashForShare, token_hash);
    if (!found.ok()) return found.status();
    const absl::Time now = Now();
    if (absl::Status s = c.Commit("load"); !s.ok()) return s;
    if (!found->has_value() || !(*found)->IsLiveAt(now)) return NotFound();
    return **found;
  }

  // A delete in one transaction: `remove` deletes the rows (returning their
  // expiries), then the time is read (while the rows are held) and the live
  // ones are counted.
  absl::StatusOr<int64_t> Delete(
      absl::string_view what,
      absl::FunctionRef<absl::StatusOr<pqxx::result>(Connection&)> remove) {
    return Run<int64_t>(Kind::kTransaction, what,
                        [&](Connection& c) -> absl::StatusOr<int64_t> {
                          absl::StatusOr<pqxx::result> res = remove(c);
                          if (!res.ok()) return res.status();
                          return CountLive(*res, Now());
                        });
  }

  bool SlotAvailable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < pool_size_;
  }

  // A connection for one call: a pooled one that looks healthy or, with
  // `fresh` (a retry after a pooled connection died: its neighbours in the
  // pool likely died with it), a newly opened one.
  absl::StatusOr<Lease> Acquire(absl::Time call_deadline, bool fresh) {
    const absl::Time wait_deadline =
        std::min(call_deadline, absl::Now() + connect_timeout_);
    std::unique_ptr<Connection> conn;
    {
      absl::MutexLock lock(&mu_);
      if (!mu_.AwaitWithDeadline(
              absl::Condition(this, &PostgresStore::SlotAvailable),
              wait_deadline)) {
        return absl::UnavailableError(
            absl::StrCat("postgres: no connection of the pool (", pool_size_,
                         ") became free in time"));
      }
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else {
        ++open_;  // Reserve a slot; connect outside the lock.
      }
    }
    if (conn != nullptr) {
      if (!fresh && conn->LooksHealthy()) {
        return Lease(this, std::move(conn), true, call_deadline);
      }
      // Closed by the server (restart, administrator, idle timeout), or not
      // wanted: replace it, keeping its slot.
      conn.reset();
    }
    absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(
        connect_, std::min(call_deadline, absl::Now() + connect_timeout_),
        *watchdog_);
    if (!opened.ok()) {
      {
        absl::MutexLock lock(&mu_);
        --open_;
      }
      if (absl::IsFailedPrecondition(opened.status())) {
        // The database behind the DSN is no longer the UTF8 one the store
        // was opened on. FAILED_PRECONDITION is OpenPostgresStore's answer
        // to that; a call must not return it (it means something else to
        // the caller of Cycle, say).
        return absl::InternalError(opened.status().message());
      }
      return opened.status();
    }
    return Lease(this, *std::move(opened), false, call_deadline);
  }

  // Takes back a connection whose call has ended (not watched any more).
  void Release(std::unique_ptr<Connection> conn) {
    if (!conn->Idle()) {
      conn.reset();  // Closes it outside the lock.
      absl::MutexLock lock(&mu_);
      --open_;
      return;
    }
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(conn));
  }

  // Runs one call on a pooled connection; `fn` gets the connection, on which
  // every wait is bounded by the call's deadline. See Kind for retries after
  // a dead connection; deadlocks and serialization failures are retried up
  // to kMaxConflictRetries times.
  template <typename T>
  absl::StatusOr<T> Run(Kind kind, absl::string_view what,
                        absl::FunctionRef<absl::StatusOr<T>(Connection&)> fn) {
    const absl::Time deadline = absl::Now() + call_budget_;
    int conflicts = 0;
    bool reconnected = false;
    while (true) {
      absl::StatusOr<T> result = absl::UnknownError("not run");
      ErrorKind error = ErrorKind::kNone;
      bool reused = false;
      bool maybe_written = kind == Kind::kSingleWrite;
      {
        absl::StatusOr<Lease> lease = Acquire(deadline, reconnected);
        if (!lease.ok()) return lease.status();
        reused = lease->reused();
        Connection& c = lease->conn();
        c.ClearLastError();
        if (kind != Kind::kTransaction) {
          result = fn(c);
        } else if (absl::Status begun = c.Begin(what); !begun.ok()) {
          result = begun;
        } else {
          result = fn(c);
          if (result.ok()) {
            maybe_written = true;
            if (absl::Status committed = c.Commit(what); !committed.ok()) {
              result = committed;
            }
          }
        }
        error = c.last_error();
        // If this fails too, the connection is marked broken and Release
        // drops it.
        c.Rollback();
      }
      if (result.ok()) return result;
      if (error == ErrorKind::kRetryable) {
        const absl::Duration pause = ConflictBackoff(conflicts);
        if (conflicts < kMaxConflictRetries && absl::Now() + pause < deadline) {
          ++conflicts;
          absl::SleepFor(pause);
          continue;
        }
        return absl::UnavailableError(absl::StrCat(
            "postgres: ", what, ": gave up after ", conflicts + 1,
            " attempts ended in a deadlock or serialization failure; "
            "nothing was written: ",
            result.status().message()));
      }
      if (error == ErrorKind::kConnection && reused && !reconnected &&
          !maybe_written && absl::Now() < deadline) {
        reconnected = true;
        continue;
      }
      return result.status();
    }
  }

  // In a transaction about to make a session belong to `user_id`: takes
  // the user's advisory lock if the per-user cap applies.
  absl::Status LockUserIfCapped(Connection& c,
                                absl::string_view user_id) const {
    if (store_options_.max_sessions_per_user <= 0 || user_id.empty()) {
      return absl::OkStatus();
    }
    return c.Exec(Stmt(kLockUser), "lock user", Text(user_id)).status();
  }

  // The per-user cap, in the caller's transaction (which holds the user's
  // lock): keeps `r` and the max_sessions_per_user - 1 most recently active
  // other live sessions of r.user_id, deletes the rest.
  //
  // The user's lock keeps other writers from adding sessions to the user,
  // but not touches (and Cycles that keep the user) from moving a session's
  // last_active_at: those take only the row's lock, so that the hot path
  // pays nothing for the cap. A victim that changed after the statement's
  // snapshot is therefore not deleted (kEvict re-checks its last_active_at
  // under the row lock) and the choice is made again, so what is deleted is
  // always the least recently active at the moment it is deleted.
  absl::Status EnforceCap(Connection& c, const SessionRecord& r,
                          absl::Time now) const {
    if (store_options_.max_sessions_per_user <= 0 || r.user_id.empty()) {
      return absl::OkStatus();
    }
    constexpr absl::string_view kWhat = "evict over per-user cap";
    for (int round = 1;; ++round) {
      absl::StatusOr<pqxx::result> res = c.Exec(
          Stmt(kEvict), kWhat, Text(r.user_id), TimeToMicros(now), Text(r.id),
          static_cast<int64_t>(store_options_.max_sessions_per_user - 1));
      if (!res.ok()) return res.status();
      if (res->size() != 1 || res->columns() != 1) {
        return absl::InternalError(
            absl::StrCat("postgres: ", kWhat, ": unexpected result"));
      }
      if (FieldInt((*res)[0][0]) == 0) return absl::OkStatus();
      if (round == kMaxEvictRounds) {
        // The transaction is rolled back: nothing was written.
        return absl::UnavailableError(absl::StrCat(
            "postgres: ", kWhat, ": the user's sessions kept changing during ",
            round, " attempts; nothing was written"));
      }
    }
  }

  const ConnectOptions connect_;
  const Clock* const clock_;
  const StoreOptions store_options_;
  const int pool_size_;
  const absl::Duration connect_timeout_;
  const absl::Duration call_budget_;
  const int64_t prune_batch_size_;
  // Declared before the pool: outlives every connection.
  const std::unique_ptr<Watchdog> watchdog_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  // Connections in the pool, on loan, or being opened.
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<std::string> ReadPassword(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("postgres: cannot read password_file \"", path, "\""));
  }
  std::stringstream content;
  content << in.rdbuf();
  std::string password = content.str();
  if (!password.empty() && password.back() == '\n') password.pop_back();
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("postgres: password_file \"", path, "\" is empty"));
  }
  return password;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> OpenPostgresStore(
    const PostgresOptions& options, const Clock* clock,
    const StoreOptions& store_options) {
  if (clock == nullptr) {
    return absl::InvalidArgumentError("postgres: clock must not be null");
  }
  if (store_options.max_sessions_per_user < 0) {
    return absl::InvalidArgumentError(
        "postgres: max_sessions_per_user must not be negative");
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("postgres: pool_size must be positive");
  }
  if (options.connect_timeout < absl::Milliseconds(1) ||
      options.connect_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "postgres: connect_timeout must be positive and finite");
  }
  if (options.statement_timeout < absl::Milliseconds(1) ||
      options.statement_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "postgres: statement_timeout must be positive and finite");
  }
  if (options.prune_batch_size < 1) {
    return absl::InvalidArgumentError(
        "postgres: prune_batch_size must be positive");
  }

  ConnectOptions connect;
  connect.statement_timeout = options.statement_timeout;
  connect.statements = kStatements;
  std::string password;
  if (!options.password_file.empty()) {
    absl::StatusOr<std::string> read = ReadPassword(options.password_file);
    if (!read.ok()) return read.status();
    password = *std::move(read);
    connect.secret = password;
  }
  // Before the DSN, so that the DSN may override it.
  connect.params.emplace_back("application_name", "sessiond");
  if (!options.dsn.empty()) {
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> dsn =
        postgres_internal::ParseDsn(options.dsn);
    if (!dsn.ok()) {
      return absl::UnavailableError(postgres_internal::ScrubSecret(
          absl::StrCat("postgres: cannot connect: ", dsn.status().message()),
          connect.secret));
    }
    connect.params.insert(connect.params.end(), dsn->begin(), dsn->end());
  }
  // After the DSN: these override it (and Connection::Open adds
  // connect_timeout, derived from connect_timeout and the call's deadline).
  connect.params.emplace_back("client_encoding", "UTF8");
  connect.params.emplace_back("keepalives", "1");
  connect.params.emplace_back("keepalives_idle", absl::StrCat(kKeepalivesIdle));
  connect.params.emplace_back("keepalives_interval",
                              absl::StrCat(kKeepalivesInterval));
  connect.params.emplace_back("keepalives_count",
                              absl::StrCat(kKeepalivesCount));
  connect.params.emplace_back(
      "tcp_user_timeout",
      absl::StrCat(absl::ToInt64Milliseconds(options.connect_timeout +
                                             options.statement_timeout)));
  if (!password.empty()) connect.params.emplace_back("password", password);

  // Declared before the first connection, which it must outlive.
  auto watchdog = std::make_unique<Watchdog>();
  absl::StatusOr<std::unique_ptr<Connection>> first = Connection::Open(
      connect, absl::Now() + options.connect_timeout, *watchdog);
  if (!first.ok()) return first.status();
  if (absl::Status s =
          Migrate(**first, options.connect_timeout + options.statement_timeout);
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<SessionStore>(
      new PostgresStore(std::move(connect), options, clock, store_options,
                        std::move(watchdog), *std::move(first)));
}

}  // namespace sessiond::storage
