#include "storage/sql/migrations.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace sessiond::storage::sql {
namespace {

// The columns are those of the statement catalogue (statements.cc). Ids
// compare byte-wise in both dialects (COLLATE "C" in PostgreSQL, whatever
// the database's collation).
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
