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
    absl::StatusOr<v1::PruneResponse> result = handler_->Prune({});
    if (!result.ok()) {
      LogError("background prune failed (will retry in %s): %s",
               absl::FormatDuration(interval_), result.status().ToString());
    } else if (result->pruned() > 0) {
      LogInfo("background prune removed %d expired sessions", result->pruned());
    }
  }
}

}  // namespace sessiond
