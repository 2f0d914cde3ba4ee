#include "storage/common/socket_watchdog.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sessiond::storage::internal {

Watchdog::Watchdog() : thread_([this] { Loop(); }) {}

Watchdog::~Watchdog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  thread_.join();
}

uint64_t Watchdog::Arm(int fd, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const uint64_t ticket = next_ticket_++;
  watches_[ticket] = Watch{fd, deadline, false};
  if (deadline < next_wake_) wake_.Signal();
  return ticket;
}

bool Watchdog::Disarm(uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(ticket);
  if (it == watches_.end()) return false;
  const bool fired = it->second.fired;
  watches_.erase(it);
  return fired;
}

bool Watchdog::Fired(uint64_t ticket) const {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(ticket);
  return it != watches_.end() && it->second.fired;
}

void Watchdog::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    absl::Time next = absl::InfiniteFuture();
    for (auto& [ticket, watch] : watches_) {
      if (watch.fired) continue;
      if (watch.deadline <= now) {
        // Under the lock: Disarm() cannot return (and let the caller close
        // the descriptor) while this runs. shutdown(2) does not block.
        ::shutdown(watch.fd, SHUT_RDWR);
        watch.fired = true;
      } else {
        next = std::min(next, watch.deadline);
      }
    }
    next_wake_ = next;
    // Returns early when signalled (an earlier deadline, or stopping).
    wake_.WaitWithDeadline(&mu_, next);
  }
}

}  // namespace sessiond::storage::internal
