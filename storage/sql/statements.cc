#include "storage/sql/statements.h"

#include <array>

namespace sessiond::storage::sql {
namespace {

struct Entry {
  SqlStatement statement;
  const char* name;
  const char* sqlite;
  const char* postgres;
};

// The columns of a session record, in the order RecordFromRow (rows.h)
// reads them.
#define SESSIOND_SQL_RECORD_COLUMNS                                       \
  "tenant, id, token_hash, user_id, sealed, created_at, last_active_at, " \
  "idle_timeout_us, absolute_lifetime_us, version"

// A ListForUser read of `table` (`where` selects the user's live rows
// after the cursor): the first `limit` records in listing order, and past
// the second only while the sealed sizes (`size`) of those before total at
// most `max_bytes`. The rows come in no set order (an outer ORDER BY would
// cost SQLite a sort); the caller puts them in listing order.
#define SESSIOND_SQL_LIST(table, size, where, limit, max_bytes)      \
  "SELECT " SESSIOND_SQL_RECORD_COLUMNS                              \
  " FROM (SELECT " SESSIOND_SQL_RECORD_COLUMNS                       \
  ", row_number() OVER w AS n, sum(" size ") OVER w - " size         \
  " AS before FROM " table " WHERE " where                           \
  " WINDOW w AS (ORDER BY last_active_at DESC, id DESC ROWS BETWEEN" \
  " UNBOUNDED PRECEDING AND CURRENT ROW)"                            \
  " ORDER BY last_active_at DESC, id DESC LIMIT " limit              \
  ") AS listed"                                                      \
  " WHERE n <= 2 OR before <= " max_bytes

// The sessions table: `sessions` in SQLite, `sessiond_sessions` in
// PostgreSQL (a database other applications may share); its columns are
// the same (migrations.cc). PostgreSQL parameters carry explicit casts, so
// that their types never depend on inference. Values are always bound,
// never spliced into the text. A statement scoped to a tenant takes it as
// $1 and names it first in its WHERE, which the indexes lead with
// (migrations.cc: (tenant, user_id, last_active_at, id) and (tenant,
// expires_at)); lookups by token hash or id use the global unique indexes
// and check the tenant on the one row they find. In SQLite, whose planner
// has no statistics, `+expires_at` keeps a user's statements off the
// (tenant, expires_at) index, which would otherwise tie with the user index
// and read every live session of the tenant, then sort them.
constexpr std::array<Entry, kNumStatements> kCatalogue = {{
    // $1 tenant, $2 user_id. Serialises, across processes, the writers that
    // may have to evict this user's sessions; released at commit or
    // rollback. The advisory lock's two-int key space, apart from the
    // migration lock's one-bigint key. The default tenant's users keep the
    // key of schema version 1 (the user id alone), so that during a rolling
    // upgrade the replicas of before tenants, which serve only the default
    // tenant, still serialise with these; other tenants' users get keys of
    // their own ("tenant:user"; a tenant name has no ':'). A collision only
    // serialises more.
    {SqlStatement::kLockUser, "lock_user", nullptr,
     "SELECT pg_advisory_xact_lock(x'73657373'::int, hashtext(CASE WHEN"
     " $1::text = 'default' THEN $2::text ELSE $1::text || ':' || $2::text"
     " END))"},
    // $1 tenant, $2 token_hash. The tenant's record, live or expired: the
    // caller decides with its own time.
    {SqlStatement::kSelectByHash, "select_by_hash",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessions WHERE tenant = ?1 AND token_hash = ?2",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessiond_sessions WHERE tenant = $1::text"
     " AND token_hash = $2::bytea"},
    // As kSelectByHash, and waits for a writer of the row to finish, then
    // keeps writers out until the transaction ends. In SQLite the write
    // transaction has done both. Another tenant's row is neither returned
    // nor locked.
    {SqlStatement::kSelectByHashForShare, "select_by_hash_for_share",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessions WHERE tenant = ?1 AND token_hash = ?2",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessiond_sessions WHERE tenant = $1::text"
     " AND token_hash = $2::bytea FOR SHARE"},
    // As kSelectByHashForShare, keeping readers that lock out as well.
    {SqlStatement::kSelectByHashForUpdate, "select_by_hash_for_update",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessions WHERE tenant = ?1 AND token_hash = ?2",
     "SELECT " SESSIOND_SQL_RECORD_COLUMNS
     " FROM sessiond_sessions WHERE tenant = $1::text"
     " AND token_hash = $2::bytea FOR UPDATE"},
    // $1 id, $2 token_hash, $3 now. Of every tenant: ids and token hashes
    // are unique across tenants, and an expired row is as good as missing,
    // so it must not block a new one.
    {SqlStatement::kDeleteExpiredConflicts, "delete_expired_conflicts",
     "DELETE FROM sessions WHERE (id = ?1 OR token_hash = ?2)"
     " AND expires_at <= ?3",
     "DELETE FROM sessiond_sessions WHERE (id = $1::text OR token_hash ="
     " $2::bytea) AND expires_at <= $3::bigint"},
    // $1 token_hash, $2 now. Of every tenant, as above.
    {SqlStatement::kDeleteExpiredByHash, "delete_expired_by_hash",
     "DELETE FROM sessions WHERE token_hash = ?1 AND expires_at <= ?2",
     "DELETE FROM sessiond_sessions WHERE token_hash = $1::bytea"
     " AND expires_at <= $2::bigint"},
    // The record's columns, then expires_at.
    {SqlStatement::kInsert, "insert",
     "INSERT INTO sessions (" SESSIOND_SQL_RECORD_COLUMNS
     ", expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
     "INSERT INTO sessiond_sessions (" SESSIOND_SQL_RECORD_COLUMNS
     ", expires_at) VALUES ($1::text, $2::text, $3::bytea, $4::text,"
     " $5::bytea, $6::bigint, $7::bigint, $8::bigint, $9::bigint,"
     " $10::bigint, $11::bigint)"},
    // $1 tenant, $2 id, $3 new last_active_at, $4 new expires_at; on a
    // locked row.
    {SqlStatement::kTouch, "touch",
     "UPDATE sessions SET last_active_at = ?3, expires_at = ?4"
     " WHERE tenant = ?1 AND id = ?2",
     "UPDATE sessiond_sessions SET last_active_at = $3::bigint,"
     " expires_at = $4::bigint WHERE tenant = $1::text AND id = $2::text"},
    // $1 tenant, $2 id, $3 expected (current) version, then the new values:
    // token_hash, user_id, sealed, last_active_at, idle_timeout_us,
    // absolute_lifetime_us, version, expires_at.
    {SqlStatement::kRewrite, "rewrite",
     "UPDATE sessions SET token_hash = ?4, user_id = ?5, sealed = ?6,"
     " last_active_at = ?7, idle_timeout_us = ?8, absolute_lifetime_us = ?9,"
     " version = ?10, expires_at = ?11"
     " WHERE tenant = ?1 AND id = ?2 AND version = ?3",
     "UPDATE sessiond_sessions SET token_hash = $4::bytea,"
     " user_id = $5::text, sealed = $6::bytea, last_active_at = $7::bigint,"
     " idle_timeout_us = $8::bigint, absolute_lifetime_us = $9::bigint,"
     " version = $10::bigint, expires_at = $11::bigint"
     " WHERE tenant = $1::text AND id = $2::text AND version = $3::bigint"},
    // $1 tenant, $2 user_id, $3 now, $4 id to keep, $5 how many others to
    // keep. Keeps the most recently active (listing order), deletes the
    // rest. PostgreSQL returns one row: how many of the victims it chose
    // were not deleted because they changed (or went) before it could lock
    // them. The DELETE's conditions are re-checked on the row's latest
    // version, so a victim that was touched meanwhile (it may no longer be
    // among the least recently active), moved to another user, or was
    // deleted, is skipped, and the caller runs the statement again (with a
    // new snapshot, which sees the change). SQLite returns no row: under its
    // write lock no row changes.
    {SqlStatement::kEvictOverCap, "evict_over_cap",
     "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
     " WHERE tenant = ?1 AND user_id = ?2 AND +expires_at > ?3 AND id <> ?4"
     " ORDER BY last_active_at DESC, id DESC LIMIT -1 OFFSET ?5)",
     "WITH victims AS (SELECT id, last_active_at FROM sessiond_sessions"
     " WHERE tenant = $1::text AND user_id = $2::text"
     " AND expires_at > $3::bigint AND id <> $4::text"
     " ORDER BY last_active_at DESC, id DESC OFFSET $5::bigint),"
     " evicted AS (DELETE FROM sessiond_sessions s USING victims v"
     " WHERE s.id = v.id AND s.last_active_at = v.last_active_at"
     " AND s.tenant = $1::text AND s.user_id = $2::text"
     " AND s.expires_at > $3::bigint RETURNING 1)"
     " SELECT (SELECT count(*) FROM victims) - (SELECT count(*) FROM evicted)"},
    // The deletes remove the tenant's rows whether expired or not (an
    // expired row is dead anyway) and return each row's expires_at, so that
    // the caller counts the live ones with a time read once the rows are
    // locked. $1 tenant, $2 token_hash.
    {SqlStatement::kDeleteByHash, "delete_by_hash",
     "DELETE FROM sessions WHERE tenant = ?1 AND token_hash = ?2"
     " RETURNING expires_at",
     "DELETE FROM sessiond_sessions WHERE tenant = $1::text"
     " AND token_hash = $2::bytea RETURNING expires_at"},
    // $1 tenant, $2 id.
    {SqlStatement::kDeleteById, "delete_by_id",
     "DELETE FROM sessions WHERE tenant = ?1 AND id = ?2 RETURNING expires_at",
     "DELETE FROM sessiond_sessions WHERE tenant = $1::text AND id = $2::text"
     " RETURNING expires_at"},
    // $1 tenant, $2 user_id, $3 except id ('' keeps none; no stored id is
    // empty).
    {SqlStatement::kDeleteForUser, "delete_for_user",
     "DELETE FROM sessions WHERE tenant = ?1 AND user_id = ?2 AND id <> ?3"
     " RETURNING expires_at",
     "DELETE FROM sessiond_sessions WHERE tenant = $1::text"
     " AND user_id = $2::text AND id <> $3::text RETURNING expires_at"},
    // $1 tenant, $2 user_id, $3 now, $4 limit, $5 max bytes. The records
    // of a listing cut as ListHasRoom (backend.h) says: the database sums
    // the sealed sizes (the window) and sends only the records that fit and
    // the first that does not.
    {SqlStatement::kListFirst, "list_first",
     SESSIOND_SQL_LIST("sessions", "length(sealed)",
                       "tenant = ?1 AND user_id = ?2 AND +expires_at > ?3",
                       "?4", "?5"),
     SESSIOND_SQL_LIST("sessiond_sessions", "octet_length(sealed)",
                       "tenant = $1::text AND user_id = $2::text"
                       " AND expires_at > $3::bigint",
                       "$4::bigint", "$5::bigint")},
    // As kListFirst, strictly after ($6 last_active_at, $7 id).
    {SqlStatement::kListAfter, "list_after",
     SESSIOND_SQL_LIST("sessions", "length(sealed)",
                       "tenant = ?1 AND user_id = ?2 AND +expires_at > ?3"
                       " AND (last_active_at < ?6"
                       " OR (last_active_at = ?6 AND id < ?7))",
                       "?4", "?5"),
     SESSIOND_SQL_LIST("sessiond_sessions", "octet_length(sealed)",
                       "tenant = $1::text AND user_id = $2::text"
                       " AND expires_at > $3::bigint"
                       " AND (last_active_at, id) < ($6::bigint, $7::text)",
                       "$4::bigint", "$5::bigint")},
    // $1 tenant, $2 now. How many of the tenant's rows are live at now: a
    // range of the (tenant, expires_at) index, read from the index alone.
    {SqlStatement::kCountLive, "count_live",
     "SELECT count(*) FROM sessions WHERE tenant = ?1 AND expires_at > ?2",
     "SELECT count(*) FROM sessiond_sessions WHERE tenant = $1::text"
     " AND expires_at > $2::bigint"},
    // $1 now, $2 batch size. Of every tenant (the expires_at index).
    // PostgreSQL skips rows another transaction holds: a concurrent pruner
    // deletes them, or a writer that holds one may be bringing it back to
    // life, or the next prune does.
    {SqlStatement::kPruneBatch, "prune_batch",
     "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions"
     " WHERE expires_at <= ?1 LIMIT ?2)",
     "DELETE FROM sessiond_sessions WHERE ctid = ANY(ARRAY("
     "SELECT ctid FROM sessiond_sessions WHERE expires_at <= $1::bigint"
     " LIMIT $2::bigint FOR UPDATE SKIP LOCKED))"
     " AND expires_at <= $1::bigint"},
    // $1 tenant, $2 now, $3 batch size. As kPruneBatch, of one tenant (the
    // (tenant, expires_at) index).
    {SqlStatement::kPruneTenantBatch, "prune_tenant_batch",
     "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions"
     " WHERE tenant = ?1 AND expires_at <= ?2 LIMIT ?3)",
     "DELETE FROM sessiond_sessions WHERE ctid = ANY(ARRAY("
     "SELECT ctid FROM sessiond_sessions WHERE tenant = $1::text"
     " AND expires_at <= $2::bigint LIMIT $3::bigint FOR UPDATE SKIP LOCKED))"
     " AND tenant = $1::text AND expires_at <= $2::bigint"},
    // The database's time, in microseconds since the epoch; SQLite reads
    // the schema too, so that it touches the file.
    {SqlStatement::kPing, "ping",
     "SELECT (SELECT count(*) FROM sqlite_schema) * 0"
     " + CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
     "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"},
}};

#undef SESSIOND_SQL_RECORD_COLUMNS

constexpr bool InOrder() {
  for (int i = 0; i < kNumStatements; ++i) {
    if (static_cast<int>(kCatalogue[i].statement) != i) return false;
  }
  return true;
}
static_assert(InOrder(), "kCatalogue must follow SqlStatement");

const Entry& Find(SqlStatement statement) {
  return kCatalogue[static_cast<int>(statement)];
}

}  // namespace

absl::string_view DialectName(SqlDialect dialect) {
  return dialect == SqlDialect::kSqlite ? "sqlite" : "postgres";
}

absl::string_view StatementName(SqlStatement statement) {
  return Find(statement).name;
}

const char* StatementText(SqlStatement statement, SqlDialect dialect) {
  const Entry& e = Find(statement);
  return dialect == SqlDialect::kSqlite ? e.sqlite : e.postgres;
}

}  // namespace sessiond::storage::sql
