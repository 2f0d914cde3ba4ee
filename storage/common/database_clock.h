// DatabaseClock: the time of a shared database, as one replica measures it,
// so that every replica decides expiry by the same clock, whatever its own
// clock says.
#ifndef SESSIOND_STORAGE_COMMON_DATABASE_CLOCK_H_
#define SESSIOND_STORAGE_COMMON_DATABASE_CLOCK_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/clock.h"

namespace sessiond::storage {

// The local clock plus the offset last measured against the database: off
// from the database's clock by at most half the round trip of the last
// measurement, plus the local clock's drift since. Thread-safe.
class DatabaseClock : public Clock {
 public:
  // `local` must not be null and outlive the clock. The offset is zero until
  // the first Measure.
  explicit DatabaseClock(const Clock* local) : local_(local) {}

  absl::Time Now() const override;

  // Reads the database's time with `read` and sets the offset to it less the
  // local time halfway through the read. The offset stays after a read
  // slower than `max_round_trip` (whose midpoint says too little), and
  // after an error, which is returned.
  absl::Status Measure(absl::FunctionRef<absl::StatusOr<absl::Time>()> read,
                       absl::Duration max_round_trip = absl::Seconds(1));

  // The database's time less the local clock's, as last measured.
  absl::Duration offset() const;

 private:
  const Clock* const local_;
  mutable absl::Mutex mu_;
  absl::Duration offset_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_COMMON_DATABASE_CLOCK_H_
