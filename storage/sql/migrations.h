// The schema of the SQL backends: one ordered list of migrations, each with
// its SQLite and its PostgreSQL DDL, and the runner that brings a database
// up to date over a small interface each backend implements.
#ifndef SESSIOND_STORAGE_SQL_MIGRATIONS_H_
#define SESSIOND_STORAGE_SQL_MIGRATIONS_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace sessiond::storage::sql {

struct Migration {
  // Moves the schema from version - 1 to version.
  int version;
  // Recorded beside the version where the backend keeps a history; no
  // quotes.
  const char* description;
  // Fixed DDL; never contains values.
  const char* sqlite;
  const char* postgres;
};

// The newest schema version, the last migration's.
inline constexpr int kSchemaVersion = 1;

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

  // Runs `migrate` in one transaction that holds the lock every migrator of
  // the database takes, committed if `migrate` returns OK and rolled back
  // otherwise. `migrate` gets the version recorded under the lock.
  virtual absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t version)> migrate) = 0;

  // Within WithMigrationLock: runs the migration's DDL and records its
  // version.
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
