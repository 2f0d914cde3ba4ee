// Registers the "postgres" backend (storage/registry.h) with its --postgres_*
// flags.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/postgres/postgres_store.h"
#include "storage/registry.h"

namespace sessiond::storage {
namespace {

// True if a libpq DSN carries a password: "password=" in key=value form, or
// "user:password@" in a URI.
bool DsnHasPassword(absl::string_view dsn) {
  const std::string lower = absl::AsciiStrToLower(dsn);
  if (lower.find("password") != std::string::npos) return true;
  const size_t scheme = lower.find("://");
  if (scheme == std::string::npos) return false;
  const size_t at = lower.find('@', scheme);
  const size_t colon = lower.find(':', scheme + 3);
  return at != std::string::npos && colon != std::string::npos && colon < at;
}

absl::Status CheckDsn(absl::string_view dsn) {
  if (DsnHasPassword(dsn)) {
    return absl::InvalidArgumentError(
        "must not contain a password (it would show in process listings and "
        "logs); put it in --postgres_password_file");
  }
  return absl::OkStatus();
}

BackendSpec<PostgresOptions> PostgresSpec() {
  BackendSpec<PostgresOptions> spec;
  spec.name = "postgres";
  spec.flags
      .String("postgres_dsn",
              "postgres: libpq connection string or URI, without a password",
              &PostgresOptions::dsn, CheckDsn)
      .String("postgres_password_file", "postgres: file holding the password",
              &PostgresOptions::password_file)
      .Int("postgres_pool_size", "postgres: connections in the pool",
           &PostgresOptions::pool_size, 1, 1000)
      .Duration("postgres_statement_timeout",
                "postgres: server-side bound on each statement",
                &PostgresOptions::statement_timeout, absl::Milliseconds(100),
                absl::Minutes(10));
  spec.validate = [](const PostgresOptions& options) {
    if (options.dsn.empty()) {
      return absl::InvalidArgumentError(
          "--postgres_dsn is required with --backend=postgres");
    }
    return absl::OkStatus();
  };
  // The DSN holds no password (CheckDsn), only where to connect.
  spec.describe = [](const PostgresOptions& options) {
    return absl::StrCat("postgres (", options.dsn, ", pool ", options.pool_size,
                        ")");
  };
  // Replicas share the database: they decide expiry by its clock.
  spec.open = [](PostgresOptions options, const Clock* clock,
                 const StoreOptions& store_options) {
    options.follow_database_clock = true;
    return OpenPostgresStore(options, clock, store_options);
  };
  return spec;
}

[[maybe_unused]] const bool kRegistered = RegisterBackend(PostgresSpec());

}  // namespace
}  // namespace sessiond::storage
