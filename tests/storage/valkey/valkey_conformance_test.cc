// The shared suites on the Valkey backend: the conformance suite every
// backend passes (tests/storage/conformance.h), and the suites of backends
// shared by several processes (tests/storage/shared_backend_suite.h).
// valkey_store_test.cc has what only this backend has.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_store.h"
#include "storage/valkey/valkey_store.h"
#include "tests/storage/conformance.h"
#include "tests/storage/shared_backend_suite.h"
#include "tests/storage/valkey/valkey_test_server.h"
#include "tests/testing/redis_server.h"

namespace sessiond::storage {
namespace {

using ::sessiond::testing::RedisReply;
using ::sessiond::testing::RedisServer;

// Serves the conformance suite.
ServerEnvironment* const kSharedServer = static_cast<ServerEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment));

// A fresh store on the flushed shared server.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenOnSharedServer(
    const Clock* clock, const StoreOptions& options) {
  absl::Status status;
  RedisServer* server = kSharedServer->Get(&status);
  if (server == nullptr) return status;
  absl::StatusOr<RedisReply> flushed = server->Command({"FLUSHALL"});
  if (!flushed.ok()) return flushed.status();
  return OpenValkeyStore(OptionsFor(*server, "conformance"), clock, options);
}

// The shared-backend suites, on a server of their own (OutageTest stops,
// kills and pauses it).

ServerEnvironment* const kFaultServer = static_cast<ServerEnvironment*>(
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment));

SharedBackend ValkeyBackendHooks() {
  // The key prefix of the running test's data.
  static std::string* const prefix = new std::string;
  auto server = [](absl::Status* status) { return kFaultServer->Get(status); };
  auto control = [server](absl::Status (RedisServer::*action)()) {
    return [server, action]() -> absl::Status {
      absl::Status status;
      RedisServer* s = server(&status);
      if (s == nullptr) return status;
      return (s->*action)();
    };
  };
  SharedBackend b;
  b.name = "Valkey";
  // connect_timeout + command_timeout, and slack for a loaded machine.
  b.bound = absl::Seconds(2);
  b.prune_batch_size = 50;
  b.reset = [server] {
    absl::Status status;
    if (server(&status) == nullptr) return status;
    *prefix = NewPrefix("shared");
    return absl::OkStatus();
  };
  auto open = [server](bool follow_database_clock) {
    return [server, follow_database_clock](const Clock* clock,
                                           const StoreOptions& options)
               -> absl::StatusOr<std::unique_ptr<SessionStore>> {
      absl::Status status;
      RedisServer* s = server(&status);
      if (s == nullptr) return status;
      ValkeyOptions o = OptionsFor(*s, "shared");
      o.key_prefix = *prefix;
      o.connect_timeout = absl::Milliseconds(500);
      o.command_timeout = absl::Milliseconds(500);
      o.pool_size = 4;
      o.prune_batch_size = 50;
      o.follow_database_clock = follow_database_clock;
      return OpenValkeyStore(o, clock, options);
    };
  };
  b.open = open(false);
  b.open_by_database_clock = open(true);
  b.stop = control(&RedisServer::Stop);
  b.kill = control(&RedisServer::Kill);
  b.start = control(&RedisServer::Restart);
  b.pause = control(&RedisServer::Pause);
  b.resume = control(&RedisServer::Resume);
  return b;
}
}  // namespace

// The shared-backend suites, on the fault server.
INSTANTIATE_TEST_SUITE_P(Valkey, SharedStoreTest,
                         ::testing::Values(ValkeyBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Valkey, DatabaseClockTest,
                         ::testing::Values(ValkeyBackendHooks()),
                         SharedBackendName());
INSTANTIATE_TEST_SUITE_P(Valkey, OutageTest,
                         ::testing::Values(ValkeyBackendHooks()),
                         SharedBackendName());

// The conformance suite, each store on the flushed shared server.
INSTANTIATE_TEST_SUITE_P(Valkey, SessionStoreConformanceTest,
                         ::testing::Values(StoreFactory{"Valkey",
                                                        &OpenOnSharedServer}),
                         StoreFactoryName());

}  // namespace sessiond::storage
