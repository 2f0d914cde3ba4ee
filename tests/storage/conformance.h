// SessionStoreConformanceTest: the value-parameterized GoogleTest suite that
// every SessionStore backend must pass unchanged. It checks each rule of
// storage/session_store.h with a ManualClock (it never sleeps).
//
// A backend's test file instantiates it once:
//
//   namespace sessiond::storage {
//   INSTANTIATE_TEST_SUITE_P(
//       Memory, SessionStoreConformanceTest,
//       ::testing::Values(StoreFactory{
//           "Memory",
//           [](const Clock* clock, const StoreOptions& options)
//               -> absl::StatusOr<std::unique_ptr<SessionStore>> {
//             return OpenMemoryStore(clock, options);
//           }}),
//       StoreFactoryName());
//   }  // namespace sessiond::storage
//
// and links "//tests/storage:conformance" (alwayslink) and gtest_main.
//
// The rules it checks, including the fine print (error precedence, which
// arguments are invalid, cap ties, touch threshold, tenant isolation), are
// stated in storage/session_store.h. Most tests work in one tenant,
// kTenant; the tenant tests add others, the default tenant among them.
#ifndef SESSIOND_TESTS_STORAGE_CONFORMANCE_H_
#define SESSIOND_TESTS_STORAGE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_record.h"
#include "storage/session_store.h"
#include "tests/storage/numbered_record.h"

namespace sessiond::storage {

struct StoreFactory {
  // Used as the test-name suffix; letters, digits and '_' only.
  std::string name;
  // Makes a fresh, empty store that reads time from `clock`. `clock`
  // outlives the store.
  std::function<absl::StatusOr<std::unique_ptr<SessionStore>>(
      const Clock* clock, const StoreOptions& options)>
      make;
};

void PrintTo(const StoreFactory& factory, std::ostream* os);
// Readable failure messages (token hash and payload as escaped bytes).
void PrintTo(const SessionRecord& record, std::ostream* os);

// Name generator for INSTANTIATE_TEST_SUITE_P.
struct StoreFactoryName {
  std::string operator()(
      const ::testing::TestParamInfo<StoreFactory>& info) const {
    return info.param.name;
  }
};

class SessionStoreConformanceTest
    : public ::testing::TestWithParam<StoreFactory> {
 protected:
  // The suite's clock starts here: whole seconds plus 123456789 ns, so that
  // every reading has a sub-microsecond part the store must truncate.
  static absl::Time StartTime();
  static constexpr absl::Duration kIdle = absl::Minutes(30);
  static constexpr absl::Duration kLifetime = absl::Hours(24);
  // The tenant of most tests (not the default one, so that a backend's
  // tenant-qualified names and keys are used throughout), and a second one
  // for the tenant tests.
  static constexpr absl::string_view kTenant = "acme";
  static constexpr absl::string_view kOther = kDefaultTenant;

  SessionStoreConformanceTest() : clock_(StartTime()) {}

  void SetUp() override;
  void TearDown() override;

  // Replaces store_ with a fresh store made with `options`.
  void ResetStore(const StoreOptions& options);

  // Now as the store must see it.
  absl::Time StoreNow() const { return TruncateToMicros(clock_.Now()); }

  // A distinct 32-byte token hash per n, containing 0x00 and 0xff bytes.
  static std::string TokenHash(int n);

  // A record of kTenant.
  static SessionRecord NewRecord(const std::string& id, int hash,
                                 const std::string& user_id = "",
                                 const std::string& payload = "payload",
                                 absl::Duration idle = kIdle,
                                 absl::Duration lifetime = kLifetime);
  // `record` in `tenant`.
  static SessionRecord InTenant(absl::string_view tenant, SessionRecord record);

  // Creates NewRecord(...) with limits_ and returns what the store
  // returned; fails the test if Create fails.
  SessionRecord MustCreate(const std::string& id, int hash,
                           const std::string& user_id = "",
                           absl::Duration idle = kIdle,
                           absl::Duration lifetime = kLifetime);
  // The same in `tenant`.
  SessionRecord MustCreateIn(absl::string_view tenant, const std::string& id,
                             int hash, const std::string& user_id = "",
                             absl::Duration idle = kIdle,
                             absl::Duration lifetime = kLifetime);

  // Ids of ListForUser(tenant, user, 1000, nullopt), in order.
  std::vector<std::string> ListIds(const std::string& user) {
    return ListIdsIn(kTenant, user);
  }
  std::vector<std::string> ListIdsIn(absl::string_view tenant,
                                     const std::string& user);

  // True if a live session of the tenant has this token hash (Load is OK).
  bool Exists(int hash) { return ExistsIn(kTenant, hash); }
  bool ExistsIn(absl::string_view tenant, int hash);

  // CountLive(tenant); fails the test (and returns -1) if it fails.
  int64_t Live(absl::string_view tenant = kTenant);

  // The limits every Create and Cycle of the suite's helpers passes; the
  // per-user cap tests set them.
  TenantLimits limits_;
  ManualClock clock_;
  std::unique_ptr<SessionStore> store_;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_CONFORMANCE_H_
