// BackgroundPruner: removes expired sessions at a fixed interval on a thread
// of its own. Each run is bounded by a call timeout, like a call; what it
// did not reach is left for the next run. A failed prune is logged and the
// loop goes on; it never stops the server.
#ifndef SESSIOND_SERVER_PRUNER_H_
#define SESSIOND_SERVER_PRUNER_H_

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/session_handler.h"

namespace sessiond {

class BackgroundPruner {
 public:
  // Starts pruning every `interval` (> 0), each run for at most
  // `run_timeout`. `handler` must outlive this.
  BackgroundPruner(SessionHandler* handler, absl::Duration interval,
                   absl::Duration run_timeout);
  // Stops the loop (waiting for a prune in progress) and joins the thread.
  ~BackgroundPruner();

  // Asks the loop to stop after the prune in progress, without waiting.
  void RequestStop() { stop_.Notify(); }

  BackgroundPruner(const BackgroundPruner&) = delete;
  BackgroundPruner& operator=(const BackgroundPruner&) = delete;

 private:
  void Run();

  SessionHandler* const handler_;
  const absl::Duration interval_;
  const absl::Duration run_timeout_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_PRUNER_H_
