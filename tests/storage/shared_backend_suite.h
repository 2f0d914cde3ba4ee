// The suites that every backend shared by several sessiond processes
// (SQLite's file, PostgreSQL, Valkey) passes, through hooks its test
// provides: several stores over one data set, a lock held behind the
// store's back, and a server that stops, crashes or hangs.
//
//   SharedStoreTest  two stores over the same data: compare-and-set, the
//                    per-user cap and the live-session cap (per tenant)
//                    hold across them; pruning, of one tenant or of all,
//                    goes in batches, counts exactly, and stores pruning at
//                    once remove each session once.
//   LockWaitTest     a write that waits for a lock longer than its bound
//                    fails with UNAVAILABLE and writes nothing; one that
//                    gets the lock reads the time only then.
//   StoredExpiryTest the expiry a backend keeps beside each session (its
//                    expiry index) follows every write, int64 max for
//                    infinite.
//   DatabaseClockTest a store that follows the database's clock decides
//                    expiry by it, whatever the local clock says, and
//                    measures it again when pinged.
//   OutageTest       while the server is stopped or hung every call fails
//                    with UNAVAILABLE within its bound; the same store works
//                    again when the server is back; acknowledged writes
//                    survive a restart and a crash.
//
// A backend's test instantiates the suites whose hooks it has, e.g.
//   INSTANTIATE_TEST_SUITE_P(Postgres, OutageTest,
//                            ::testing::Values(PostgresHooks()),
//                            SharedBackendName());
// and links "//tests/storage:shared_backend_suite" (alwayslink).
#ifndef SESSIOND_TESTS_STORAGE_SHARED_BACKEND_SUITE_H_
#define SESSIOND_TESTS_STORAGE_SHARED_BACKEND_SUITE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

struct SharedBackend {
  // Used as the test-name suffix; letters, digits and '_' only.
  std::string name;

  // Makes fresh, empty data for the test about to run (a new file,
  // database or key prefix), and starts what it needs.
  std::function<absl::Status()> reset;
  // A store over the data of the last reset, as another sessiond process
  // would open it. Every call gives up within `bound`, and PruneExpired
  // deletes at most `prune_batch_size` sessions per batch.
  std::function<absl::StatusOr<std::unique_ptr<SessionStore>>(
      const Clock* clock, const StoreOptions& options)>
      open;
  absl::Duration bound;
  int prune_batch_size = 0;

  // DatabaseClockTest: as `open`, deciding expiry by the database's clock
  // (the server's setting) instead of by `clock`.
  std::function<absl::StatusOr<std::unique_ptr<SessionStore>>(
      const Clock* clock, const StoreOptions& options)>
      open_by_database_clock;

  // LockWaitTest: holds, until the returned object is destroyed, a lock
  // that a write of the session with `token_hash` must wait for.
  std::function<absl::StatusOr<std::shared_ptr<void>>(
      absl::string_view token_hash)>
      hold_lock;
  // LockWaitTest: returns true once a call of a store is waiting for the
  // lock held, false if none is within 10 s. A backend that cannot see
  // that waits long enough for a call to get there.
  std::function<bool()> await_lock_waiter;

  // StoredExpiryTest: the expiry the backend keeps beside a session (for
  // its indexes and pruning), in Unix microseconds, read behind the store's
  // back.
  std::function<absl::StatusOr<int64_t>(const SessionRecord& session)>
      stored_expires_at;

  // OutageTest: the server. stop: a clean shutdown; kill: a crash (SIGKILL);
  // start: start it again (same data); pause and resume: SIGSTOP and
  // SIGCONT (a hung server whose kernel still accepts connections).
  std::function<absl::Status()> stop, kill, start, pause, resume;
};

void PrintTo(const SharedBackend& backend, std::ostream* os);

struct SharedBackendName {
  std::string operator()(
      const ::testing::TestParamInfo<SharedBackend>& info) const {
    return info.param.name;
  }
};

class SharedBackendTest : public ::testing::TestWithParam<SharedBackend> {
 protected:
  void SetUp() override;

  // A store over this test's data; fails the test (and returns null) if it
  // cannot be opened.
  std::unique_ptr<SessionStore> Open(const StoreOptions& options = {});

  ManualClock clock_;
};

class SharedStoreTest : public SharedBackendTest {};
class LockWaitTest : public SharedBackendTest {};
class StoredExpiryTest : public SharedBackendTest {};
class DatabaseClockTest : public SharedBackendTest {};
class OutageTest : public SharedBackendTest {
 protected:
  // Starts the server again if a test left it stopped or paused.
  void TearDown() override;
  bool stopped_ = false;
  bool paused_ = false;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_SHARED_BACKEND_SUITE_H_
