#include "storage/backends.h"

#include "absl/strings/str_cat.h"
#include "storage/memory_store.h"
#include "storage/sqlite_store.h"

namespace sessiond::storage {

std::string BackendConfig::Describe() const {
  if (backend == "sqlite") return absl::StrCat("sqlite (", sqlite_path, ")");
  if (backend == "postgres") {
    // The DSN holds no password (config refuses one), only where to connect.
    return absl::StrCat("postgres (", postgres.dsn, ", pool ",
                        postgres.pool_size, ")");
  }
  if (backend == "valkey") {
    return absl::StrCat("valkey (", valkey.host, ":", valkey.port, ", db ",
                        valkey.database, ", prefix ", valkey.key_prefix,
                        ", pool ", valkey.pool_size, ")");
  }
  return backend;
}

absl::StatusOr<std::unique_ptr<SessionStore>> OpenBackend(
    const BackendConfig& config, const Clock* clock,
    const StoreOptions& options) {
  if (config.backend == "memory") return NewMemoryStore(clock, options);
  if (config.backend == "sqlite") {
    return OpenSqliteStore(config.sqlite_path, clock, options);
  }
  if (config.backend == "postgres") {
    return OpenPostgresStore(config.postgres, clock, options);
  }
  if (config.backend == "valkey") {
    return OpenValkeyStore(config.valkey, clock, options);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend \"", config.backend,
                   "\" (expected sqlite, memory, postgres or valkey)"));
}

}  // namespace sessiond::storage
