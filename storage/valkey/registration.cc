// Registers the "valkey" backend (storage/registry.h) with its --valkey_*
// flags.
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flags/flags.h"
#include "storage/registry.h"
#include "storage/valkey/valkey_store.h"

namespace sessiond::storage {
namespace {

// host:port, port from 1 to 65535.
absl::Status SetAddress(absl::string_view value, ValkeyOptions* options) {
  const size_t colon = value.rfind(':');
  absl::StatusOr<int64_t> port = absl::InvalidArgumentError("no port");
  if (colon != absl::string_view::npos && colon != 0) {
    port = flags::ParseInt(value.substr(colon + 1), 1, 65535);
  }
  if (!port.ok()) return absl::InvalidArgumentError("must be host:port");
  options->host = std::string(value.substr(0, colon));
  options->port = static_cast<int>(*port);
  return absl::OkStatus();
}

// One bound for both connecting and each command.
absl::Status SetTimeout(absl::string_view value, ValkeyOptions* options) {
  absl::StatusOr<absl::Duration> timeout =
      flags::ParseDuration(value, absl::Milliseconds(10), absl::Minutes(1));
  if (!timeout.ok()) return timeout.status();
  options->connect_timeout = *timeout;
  options->command_timeout = *timeout;
  return absl::OkStatus();
}

absl::Status CheckKeyPrefix(absl::string_view prefix) {
  if (!IsValidKeyPrefix(prefix)) {
    return absl::InvalidArgumentError("must be non-empty, without { or }");
  }
  return absl::OkStatus();
}

BackendSpec<ValkeyOptions> ValkeySpec() {
  BackendSpec<ValkeyOptions> spec;
  spec.name = "valkey";
  spec.flags
      .Custom(
          "valkey_address", "valkey: host:port",
          [](const ValkeyOptions& o) {
            return absl::StrCat(o.host, ":", o.port);
          },
          SetAddress)
      .Int("valkey_database", "valkey: database number (SELECT)",
           &ValkeyOptions::database, 0, 1000)
      .String("valkey_username", "valkey: ACL user name for AUTH",
              &ValkeyOptions::username)
      .String("valkey_password_file", "valkey: file holding the AUTH password",
              &ValkeyOptions::password_file)
      .String("valkey_key_prefix",
              "valkey: prefix (and cluster hash tag) of every key",
              &ValkeyOptions::key_prefix, CheckKeyPrefix)
      .Int("valkey_pool_size", "valkey: connections in the pool",
           &ValkeyOptions::pool_size, 1, 1000)
      .Custom(
          "valkey_timeout", "valkey: bound on connecting and on each command",
          [](const ValkeyOptions& o) {
            return flags::DurationToText(o.command_timeout);
          },
          SetTimeout);
  // --valkey_username without --valkey_password_file: OpenValkeyStore
  // refuses it.
  spec.describe = [](const ValkeyOptions& options) {
    return absl::StrCat("valkey (", options.host, ":", options.port, ", db ",
                        options.database, ", prefix ", options.key_prefix,
                        ", pool ", options.pool_size, ")");
  };
  // Replicas share the server: they decide expiry by its clock.
  spec.open = [](ValkeyOptions options, const Clock* clock,
                 const StoreOptions& store_options) {
    options.follow_database_clock = true;
    return OpenValkeyStore(options, clock, store_options);
  };
  return spec;
}

[[maybe_unused]] const bool kRegistered = RegisterBackend(ValkeySpec());

}  // namespace
}  // namespace sessiond::storage
