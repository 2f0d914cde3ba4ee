#include "server/call_executor.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"

namespace sessiond {

CallExecutor::CallExecutor(int workers, int max_queued,
                           int64_t max_queued_bytes)
    : max_queued_(max_queued), max_queued_bytes_(max_queued_bytes) {
  {
    absl::MutexLock lock(&mu_);
    running_threads_ = workers + 1;
  }
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
  threads_.emplace_back([this] { ExpireOverdue(); });
}

CallExecutor::~CallExecutor() { Stop(absl::InfiniteFuture()); }

void CallExecutor::Submit(Call* call, absl::Time deadline, int64_t bytes) {
  Expiry why;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      why = Expiry::kStopping;
    } else if (static_cast<int>(queue_.size()) >= max_queued_ ||
               (!queue_.empty() && queued_bytes_ + bytes > max_queued_bytes_)) {
      why = Expiry::kQueueFull;
    } else {
      const uint64_t seq = next_seq_++;
      const bool earliest =
          deadlines_.empty() || deadline < deadlines_.begin()->first;
      queue_.emplace(seq, Waiting{call, deadline, bytes});
      queued_bytes_ += bytes;
      deadlines_.emplace(deadline, seq);
      work_cv_.Signal();
      if (earliest) overdue_cv_.Signal();
      return;
    }
  }
  call->Expire(why);
}

CallExecutor::Waiting CallExecutor::Take(uint64_t seq) {
  auto it = queue_.find(seq);
  const Waiting waiting = it->second;
  queue_.erase(it);
  deadlines_.erase({waiting.deadline, seq});
  queued_bytes_ -= waiting.bytes;
  return waiting;
}

void CallExecutor::Work() {
  while (true) {
    Waiting next;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) work_cv_.Wait(&mu_);
      if (stopping_) {
        --running_threads_;
        return;
      }
      next = Take(queue_.begin()->first);
    }
    if (absl::Now() >= next.deadline) {
      next.call->Expire(Expiry::kDeadline);
    } else {
      next.call->Run();
    }
  }
}

void CallExecutor::ExpireOverdue() {
  while (true) {
    std::vector<Call*> overdue;
    {
      absl::MutexLock lock(&mu_);
      while (overdue.empty()) {
        if (stopping_) {
          --running_threads_;
          return;
        }
        const absl::Time now = absl::Now();
        while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
          overdue.push_back(Take(deadlines_.begin()->second).call);
        }
        if (overdue.empty()) {
          overdue_cv_.WaitWithDeadline(&mu_, deadlines_.empty()
                                                 ? absl::InfiniteFuture()
                                                 : deadlines_.begin()->first);
        }
      }
    }
    for (Call* call : overdue) call->Expire(Expiry::kDeadline);
  }
}

bool CallExecutor::Stop(absl::Time deadline) {
  if (stopped_) return true;
  stopped_ = true;
  std::vector<Call*> waiting;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (const auto& [seq, w] : queue_) waiting.push_back(w.call);
    queue_.clear();
    deadlines_.clear();
    queued_bytes_ = 0;
    work_cv_.SignalAll();
    overdue_cv_.SignalAll();
  }
  for (Call* call : waiting) call->Expire(Expiry::kStopping);
  bool all_stopped;
  {
    absl::MutexLock lock(&mu_);
    all_stopped = mu_.AwaitWithDeadline(
        absl::Condition(
            +[](int* running) { return *running == 0; }, &running_threads_),
        deadline);
  }
  for (std::thread& thread : threads_) {
    if (all_stopped) {
      thread.join();
    } else {
      thread.detach();
    }
  }
  return all_stopped;
}

}  // namespace sessiond
