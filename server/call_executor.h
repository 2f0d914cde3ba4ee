// CallExecutor: runs calls on a fixed set of worker threads, in the order
// they were submitted, each one either started before its deadline or
// expired at it, so that a call waiting for a worker never waits longer
// than it may, however long the running calls take.
//
// The gRPC server hands each call to it, so that the threads that poll the
// completion queues never block on a backend: while a database hangs, calls
// beyond the workers still get an answer at their deadline.
#ifndef SESSIOND_SERVER_CALL_EXECUTOR_H_
#define SESSIOND_SERVER_CALL_EXECUTOR_H_

#include <cstdint>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sessiond {

class CallExecutor {
 public:
  // Why a call was not run.
  enum class Expiry {
    kDeadline,   // no worker was free before its deadline
    kQueueFull,  // max_queued calls, or max_queued_bytes, were waiting
    kStopping,   // the executor is stopping
  };

  // A submitted call: exactly one of Run and Expire is called, once.
  class Call {
   public:
    virtual ~Call() = default;
    // On a worker thread, before the call's deadline.
    virtual void Run() = 0;
    // Instead of Run, on whichever thread found it expired (the submitting
    // thread for kQueueFull). Must not block.
    virtual void Expire(Expiry why) = 0;
  };

  // Starts `workers` (> 0) threads. At most `max_queued` (> 0) calls, of
  // at most `max_queued_bytes` (> 0) in all, wait for a worker at any time;
  // one call of any size may wait when none does.
  CallExecutor(int workers, int max_queued, int64_t max_queued_bytes);
  // Stop(absl::InfiniteFuture()) if Stop was not called.
  ~CallExecutor();
  CallExecutor(const CallExecutor&) = delete;
  CallExecutor& operator=(const CallExecutor&) = delete;

  // Runs `call`, which holds `bytes` while it waits, on a worker if one is
  // free before `deadline`; expires it otherwise. `call` must stay alive
  // until then.
  void Submit(Call* call, absl::Time deadline, int64_t bytes);

  // Expires the calls still waiting (and any submitted later), lets the
  // running ones finish until `deadline`, and joins the threads. Returns
  // false if some calls were still running at `deadline`: their threads are
  // detached and still use what those calls use, so the caller should end
  // the process rather than free it.
  bool Stop(absl::Time deadline);

 private:
  struct Waiting {
    Call* call;
    absl::Time deadline;
    int64_t bytes;
  };

  void Work();
  void ExpireOverdue();
  // Removes the call with this sequence number from both indexes.
  Waiting Take(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_queued_;
  const int64_t max_queued_bytes_;
  absl::Mutex mu_;
  absl::CondVar work_cv_;     // a call is waiting, or stopping_
  absl::CondVar overdue_cv_;  // the earliest deadline moved up, or stopping_
  // Waiting calls by arrival (sequence number), and by deadline.
  std::map<uint64_t, Waiting> queue_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, uint64_t>> deadlines_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_threads_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;  // the workers and ExpireOverdue's
  bool stopped_ = false;              // Touched only by Stop's caller.
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_CALL_EXECUTOR_H_
