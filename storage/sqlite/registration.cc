// Registers the "sqlite" backend (storage/registry.h) with its flag
// --db_path.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "storage/registry.h"
#include "storage/sqlite/sqlite_store.h"

namespace sessiond::storage {
namespace {

BackendSpec<SqliteOptions> SqliteSpec() {
  BackendSpec<SqliteOptions> spec;
  spec.name = "sqlite";
  spec.flags.String("db_path", "SQLite database file", &SqliteOptions::path);
  spec.validate = [](const SqliteOptions& options) {
    if (options.path.empty()) {
      return absl::InvalidArgumentError(
          "--db_path: must not be empty with --backend=sqlite");
    }
    return absl::OkStatus();
  };
  spec.describe = [](const SqliteOptions& options) {
    return absl::StrCat("sqlite (", options.path, ")");
  };
  spec.open = OpenSqliteStore;
  return spec;
}

[[maybe_unused]] const bool kRegistered = RegisterBackend(SqliteSpec());

}  // namespace
}  // namespace sessiond::storage
