// The schema of the SQL backends: one ordered list of migrations, each with
// its SQLite and its PostgreSQL DDL, and the runner that brings a database
// up to date over a small interface each backend implements. README.md
// describes how a live database is migrated (no downtime, rolling
// upgrades).
#ifndef SESSIOND_STORAGE_SQL_MIGRATIONS_H_
#define SESSIOND_STORAGE_SQL_MIGRATIONS_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sessiond::storage::sql {

// A PostgreSQL index that a migration builds or drops without blocking the
// table's writers: CREATE / DROP INDEX CONCURRENTLY, each outside any
// transaction. A build that was interrupted (the process died, the
// statement timed out) leaves the index INVALID; the backend drops such an
// index and builds it again, so every step can be run again until it has
// succeeded once.
struct OnlineIndex {
  // The index (unqualified: in the table's schema, on the search path).
  const char* name;
  // What follows `CREATE INDEX CONCURRENTLY <name> `, e.g. "ON t (a, b)";
  // nullptr: the step drops the index if it exists.
  const char* definition;
};

struct Migration {
  // Moves the schema from version - 1 to version.
  int version;
  // Recorded beside the version where the backend keeps a history; no
  // quotes.
  const char* description;
  // Fixed DDL; never contains values. SQLite runs every pending migration
  // in one write transaction.
  const char* sqlite;
  // PostgreSQL DDL, run in one transaction with the record of the version
  // (all or nothing); nullptr for a migration of online index steps only.
  const char* postgres;
  // Exactly when `postgres` is nullptr: the PostgreSQL index steps, run in
  // order each on its own, after which the version is recorded. A migration
  // is one kind or the other, so that one that was interrupted can always
  // be run again whole.
  absl::Span<const OnlineIndex> postgres_online = {};
};

// The newest schema version, the last migration's.
inline constexpr int kSchemaVersion = 3;

// Versions 1 to kSchemaVersion, in order. Append only: never edit a
// migration that has shipped.
absl::Span<const Migration> Migrations();

// A database's schema as the migration runner sees it.
class SchemaTarget {
 public:
  virtual ~SchemaTarget() = default;

  // The recorded version, 0 for an empty database. Takes no lock and
  // writes nothing.
  virtual absl::StatusOr<int64_t> ReadVersion() = 0;

  // Runs `migrate` holding the lock every migrator of the database takes
  // (released when it returns, or if the process dies). `migrate` gets the
  // version recorded under the lock. Where the backend runs the whole of
  // `migrate` in one transaction (SQLite), it is committed if `migrate`
  // returns OK and rolled back otherwise; where each migration commits on
  // its own (PostgreSQL), the migrations applied before a failure stay.
  virtual absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) = 0;

  // Within WithMigrationLock: runs the migration's DDL and records its
  // version, the version only once all of the DDL has succeeded.
  virtual absl::Status Apply(const Migration& migration) = 0;
};

// Brings `target` to the last version of `migrations` (ordered, versions
// from 1 up). Takes no lock and writes nothing when the schema is current;
// otherwise, under the migration lock, applies the migrations newer than
// the version found there (another process may have migrated meanwhile).
// FAILED_PRECONDITION if the recorded version is newer than the last
// migration (written by a newer binary) or negative; messages start with
// `database` (e.g. `sqlite: database "/var/lib/sessiond.db"`).
absl::Status MigrateSchema(SchemaTarget& target,
                           absl::Span<const Migration> migrations,
                           absl::string_view database);

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_MIGRATIONS_H_
