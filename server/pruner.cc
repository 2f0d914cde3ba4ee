#include "server/pruner.h"

#include "absl/time/clock.h"
#include "server/log.h"
#include "storage/call_deadline.h"

namespace sessiond {

BackgroundPruner::BackgroundPruner(SessionHandler* handler,
                                   absl::Duration interval,
                                   absl::Duration run_timeout)
    : handler_(handler),
      interval_(interval),
      run_timeout_(run_timeout),
      thread_([this] { Run(); }) {}

BackgroundPruner::~BackgroundPruner() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  thread_.join();
}

void BackgroundPruner::Run() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
    const storage::ScopedCallDeadline bound(absl::Now() + run_timeout_);
    absl::StatusOr<int64_t> pruned = handler_->PruneAll();
    if (!pruned.ok()) {
      LogError("background prune failed (will retry in %s): %s",
               absl::FormatDuration(interval_), pruned.status().ToString());
    } else if (*pruned > 0) {
      LogInfo("background prune removed %d expired sessions", *pruned);
    }
  }
}

}  // namespace sessiond
