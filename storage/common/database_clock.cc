#include "storage/common/database_clock.h"

namespace sessiond::storage {

absl::Time DatabaseClock::Now() const { return local_->Now() + offset(); }

absl::Duration DatabaseClock::offset() const {
  absl::MutexLock lock(&mu_);
  return offset_;
}

absl::Status DatabaseClock::Measure(
    absl::FunctionRef<absl::StatusOr<absl::Time>()> read,
    absl::Duration max_round_trip) {
  const absl::Time before = local_->Now();
  absl::StatusOr<absl::Time> database = read();
  const absl::Time after = local_->Now();
  if (!database.ok()) return database.status();
  // A slow read says too little of when the database read its clock.
  if (after - before > max_round_trip || after < before) {
    return absl::OkStatus();
  }
  const absl::Time midpoint = before + (after - before) / 2;
  absl::MutexLock lock(&mu_);
  offset_ = *database - midpoint;
  return absl::OkStatus();
}

}  // namespace sessiond::storage
