#include "server/pruner.h"

#include "server/log.h"

namespace sessiond {

BackgroundPruner::BackgroundPruner(SessionHandler* handler,
                                   absl::Duration interval)
    : handler_(handler), interval_(interval), thread_([this] { Run(); }) {}

BackgroundPruner::~BackgroundPruner() {
  stop_.Notify();
  thread_.join();
}

void BackgroundPruner::Run() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
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
