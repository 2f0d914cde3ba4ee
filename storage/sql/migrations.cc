#include "storage/sql/migrations.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace sessiond::storage::sql {
namespace {

// Version 3's PostgreSQL steps: the indexes that lead with the tenant,
// which every per-tenant statement uses (statements.cc). Built without
// blocking writers. The user index of version 1 (user_id first) stays for
// now: replicas of before tenants, still running during a rolling upgrade,
// list, delete and evict a user's sessions by it (README.md).
constexpr OnlineIndex kTenantIndexes[] = {
    {"sessiond_sessions_by_tenant_user",
     "ON sessiond_sessions (tenant, user_id, last_active_at DESC, id DESC)"},
    {"sessiond_sessions_by_tenant_expiry",
     "ON sessiond_sessions (tenant, expires_at)"},
};

// The columns are those of the statement catalogue (statements.cc). Ids
// compare byte-wise in both dialects (COLLATE "C" in PostgreSQL, whatever
// the database's collation). Append only: a shipped migration is never
// edited (a database that has it would never see the change).
constexpr Migration kMigrations[] = {
    {1, "sessions table",
     R"sql(
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
    )sql",
     R"sql(
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
    // Every session belongs to a tenant; those stored before tenants, and
    // those that replicas of before tenants insert during a rolling upgrade
    // (their INSERTs name no tenant), to the default one (kDefaultTenant,
    // session_record.h). A constant default: PostgreSQL 11 and later add
    // the column without rewriting the table, SQLite without touching a
    // row. Ids and token hashes stay unique across tenants (the primary key
    // and the UNIQUE constraint of version 1).
    {2, "sessions tenant",
     R"sql(
      ALTER TABLE sessions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    )sql",
     R"sql(
      ALTER TABLE sessiond_sessions
        ADD COLUMN tenant text COLLATE "C" NOT NULL DEFAULT 'default';
    )sql"},
    // The per-tenant indexes: a user's sessions in listing order, and a
    // tenant's sessions by expiry (CountLive, PruneExpired of one tenant;
    // the expiry index of version 1 serves the prune of every tenant).
    {3, "tenant indexes",
     R"sql(
      CREATE INDEX sessions_by_tenant_user
        ON sessions (tenant, user_id, last_active_at DESC, id DESC);
      CREATE INDEX sessions_by_tenant_expiry ON sessions (tenant, expires_at);
    )sql",
     nullptr, kTenantIndexes},
};

static_assert(kMigrations[std::size(kMigrations) - 1].version == kSchemaVersion,
              "kSchemaVersion must be the last migration's version");

// FAILED_PRECONDITION unless `found` is a version this binary can migrate
// from.
absl::Status CheckKnown(int64_t found, int latest, absl::string_view database) {
  if (found > latest) {
    return absl::FailedPreconditionError(absl::StrCat(
        database, " has schema version ", found,
        ", but this sessiond knows versions up to ", latest,
        "; it was written by a newer sessiond. Upgrade sessiond or point it "
        "at another database."));
  }
  if (found < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(database, " has an invalid schema version ", found));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Span<const Migration> Migrations() { return kMigrations; }

absl::Status MigrateSchema(SchemaTarget& target,
                           absl::Span<const Migration> migrations,
                           absl::string_view database) {
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  absl::StatusOr<int64_t> current = target.ReadVersion();
  if (!current.ok()) return current.status();
  if (absl::Status s = CheckKnown(*current, latest, database); !s.ok()) {
    return s;
  }
  if (*current == latest) return absl::OkStatus();
  return target.WithMigrationLock([&](int64_t locked) -> absl::Status {
    if (absl::Status s = CheckKnown(locked, latest, database); !s.ok()) {
      return s;
    }
    for (const Migration& m : migrations) {
      if (m.version <= locked) continue;
      if (absl::Status s = target.Apply(m); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

}  // namespace sessiond::storage::sql
