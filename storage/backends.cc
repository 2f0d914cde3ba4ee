#include "storage/backends.h"

#include "absl/strings/str_cat.h"
#include "storage/memory_store.h"
#include "storage/sqlite_store.h"

namespace sessiond::storage {

std::string BackendConfig::Describe() const {
  if (backend == "sqlite") return absl::StrCat("sqlite (", sqlite_path, ")");
  return backend;
}

absl::StatusOr<std::unique_ptr<SessionStore>> OpenBackend(
    const BackendConfig& config, const Clock* clock,
    const StoreOptions& options) {
  if (config.backend == "memory") return NewMemoryStore(clock, options);
  if (config.backend == "sqlite") {
    return OpenSqliteStore(config.sqlite_path, clock, options);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backend \"", config.backend, "\" (expected sqlite or memory)"));
}

}  // namespace sessiond::storage
