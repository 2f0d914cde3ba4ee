// OpenBackend: the one place that turns a backend name and its settings into
// a SessionStore. Each backend is an extension behind session_store.h.
#ifndef SESSIOND_STORAGE_BACKENDS_H_
#define SESSIOND_STORAGE_BACKENDS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/clock.h"
#include "storage/postgres_store.h"
#include "storage/session_store.h"
#include "storage/valkey_store.h"

namespace sessiond::storage {

struct BackendConfig {
  // "sqlite", "memory", "postgres" or "valkey".
  std::string backend = "sqlite";
  // sqlite: the database file.
  std::string sqlite_path = "./sessiond.db";
  PostgresOptions postgres;
  ValkeyOptions valkey;

  // For logs: the backend and where it stores, with no secret in it.
  std::string Describe() const;
};

// The backend names OpenBackend knows.
inline constexpr const char* kBackendNames[] = {"sqlite", "memory", "postgres",
                                                "valkey"};

// INVALID_ARGUMENT for an unknown backend; otherwise what the backend's
// opener returns. `clock` must outlive the store.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenBackend(
    const BackendConfig& config, const Clock* clock,
    const StoreOptions& options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_BACKENDS_H_
