// What the Valkey backend's test binaries share: a redis-server started
// once per binary (a gtest environment), and store options for it with a
// key prefix of their own.
#ifndef SESSIOND_TESTS_STORAGE_VALKEY_VALKEY_TEST_SERVER_H_
#define SESSIOND_TESTS_STORAGE_VALKEY_VALKEY_TEST_SERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "storage/valkey/valkey_store.h"
#include "tests/testing/redis_server.h"

namespace sessiond::storage {

// A redis-server started once for the whole binary (a gtest environment).
class ServerEnvironment : public ::testing::Environment {
 public:
  // The running server, or null with *status saying why there is none.
  testing::RedisServer* Get(absl::Status* status) const {
    *status = server_ != nullptr ? absl::OkStatus() : status_;
    return server_.get();
  }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> server =
        testing::RedisServer::Start();
    if (server.ok()) {
      server_ = *std::move(server);
    } else {
      status_ = server.status();
    }
  }
  void TearDown() override { server_.reset(); }

 private:
  std::unique_ptr<testing::RedisServer> server_;
  absl::Status status_ = absl::FailedPreconditionError("server not started");
};

// A key prefix no other store in this binary uses.
inline std::string NewPrefix(absl::string_view what) {
  static std::atomic<int> counter{0};
  return absl::StrCat(what, ":", counter.fetch_add(1));
}

inline ValkeyOptions OptionsFor(const testing::RedisServer& server,
                                absl::string_view what) {
  ValkeyOptions o;
  o.host = server.host();
  o.port = server.port();
  o.key_prefix = NewPrefix(what);
  return o;
}

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_VALKEY_VALKEY_TEST_SERVER_H_
