// BackgroundPruner: removes expired sessions at a fixed interval on a thread
// of its own. A failed prune is logged and the loop goes on; it never stops
// the server.
#ifndef SESSIOND_SERVER_PRUNER_H_
#define SESSIOND_SERVER_PRUNER_H_

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/session_handler.h"

namespace sessiond {

class BackgroundPruner {
 public:
  // Starts pruning every `interval` (> 0). `handler` must outlive this.
  BackgroundPruner(SessionHandler* handler, absl::Duration interval);
  // Stops the loop (waiting for a prune in progress) and joins the thread.
  ~BackgroundPruner();

  BackgroundPruner(const BackgroundPruner&) = delete;
  BackgroundPruner& operator=(const BackgroundPruner&) = delete;

 private:
  void Run();

  SessionHandler* const handler_;
  const absl::Duration interval_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_PRUNER_H_
