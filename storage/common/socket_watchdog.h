// Watchdog: bounds blocking calls that a client library makes on a socket
// (libpqxx for PostgreSQL, hiredis for Valkey), neither of which has a
// deadline for a whole call.
//
// Socket options and server-side timeouts give up on a slow statement or a
// vanished peer, but not on a peer that is alive and stuck (say SIGSTOPped:
// its kernel still acknowledges every packet) or that trickles bytes. So
// while a call talks to the server it registers the connection's socket and
// its deadline here; when the deadline passes first, the watchdog's thread
// shuts the socket down (shutdown(2), both directions), which wakes the
// blocked read or write with an error: the call fails and the connection is
// dropped.
//
// The watchdog never closes a descriptor, and it only touches one between
// Arm() and the return of Disarm(): the caller keeps the descriptor open
// until then. Callers watch a descriptor of their own (a dup() of the
// library's), never the library's, which the library may close by itself
// when the connection fails and which could then be reused for an unrelated
// socket.
#ifndef SESSIOND_STORAGE_COMMON_SOCKET_WATCHDOG_H_
#define SESSIOND_STORAGE_COMMON_SOCKET_WATCHDOG_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sessiond::storage::internal {

class Watchdog {
 public:
  // Starts the watchdog's thread.
  Watchdog();
  // Stops and joins the thread. Nothing may be armed any more.
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // From now until Disarm(ticket), `fd` (a socket) is shut down as soon as
  // `deadline` passes. Returns the ticket (never 0).
  uint64_t Arm(int fd, absl::Time deadline);
  // Ends the watch. True if it fired (the socket has been shut down). Once it
  // returns, the watchdog never touches the descriptor again.
  bool Disarm(uint64_t ticket);
  // Whether the (still armed) watch has fired.
  bool Fired(uint64_t ticket) const;

 private:
  struct Watch {
    int fd;
    absl::Time deadline;
    bool fired;
  };

  void Loop();

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  absl::flat_hash_map<uint64_t, Watch> watches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  // When the thread wakes up next unless signalled.
  absl::Time next_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sessiond::storage::internal

#endif  // SESSIOND_STORAGE_COMMON_SOCKET_WATCHDOG_H_
