// CallDeadline: when the storage calls that this thread makes must be done.
//
// The server opens a ScopedCallDeadline around each RPC (the earlier of the
// caller's deadline and --call_timeout from the call's arrival); every
// backend gives up by CallDeadline(), with UNAVAILABLE, on every wait it
// makes for the call: for a pooled connection, a connect, a lock, a
// statement or a command, and between the steps of a multi-step call.
// Backends still apply their own per-step timeouts within it.
//
// Deadlines are real time (absl::Now()), whatever Clock the store reads
// session times from.
#ifndef SESSIOND_STORAGE_CALL_DEADLINE_H_
#define SESSIOND_STORAGE_CALL_DEADLINE_H_

#include "absl/time/time.h"

namespace sessiond::storage {

// The earliest deadline of the ScopedCallDeadlines alive on this thread;
// absl::InfiniteFuture() if there is none.
absl::Time CallDeadline();

// Sets CallDeadline() on this thread to the earlier of `deadline` and the
// one already in force, for the life of this object.
class ScopedCallDeadline {
 public:
  explicit ScopedCallDeadline(absl::Time deadline);
  ~ScopedCallDeadline();
  ScopedCallDeadline(const ScopedCallDeadline&) = delete;
  ScopedCallDeadline& operator=(const ScopedCallDeadline&) = delete;

 private:
  const absl::Time previous_;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_CALL_DEADLINE_H_
