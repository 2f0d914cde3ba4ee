// ConnectionPool: up to a fixed number of connections to one database, each
// lent to one call at a time, opened on demand, and dropped once they are
// no longer fit for use.
//
// `Conn` provides:
//   bool Reusable() const;   // after a call: fit to go back to the pool
//   bool StillAlive() const; // before a call: an idle connection that the
//                            // peer has not closed meanwhile
#ifndef SESSIOND_STORAGE_COMMON_CONNECTION_POOL_H_
#define SESSIOND_STORAGE_COMMON_CONNECTION_POOL_H_

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "storage/observer.h"

namespace sessiond::storage {

template <typename Conn>
class ConnectionPool {
 public:
  // Opens a new connection, giving up at `deadline`.
  using Opener =
      std::function<absl::StatusOr<std::unique_ptr<Conn>>(absl::Time deadline)>;

  // A connection on loan for one call; back to the pool when destroyed (or
  // closed, if it is no longer Reusable()).
  class Lease {
   public:
    Lease(Lease&& other) noexcept
        : pool_(other.pool_),
          conn_(std::move(other.conn_)),
          reused_(other.reused_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ != nullptr) pool_->Release(std::move(conn_));
    }
    Conn& operator*() const { return *conn_; }
    Conn* operator->() const { return conn_.get(); }
    // Came out of the pool, rather than opened for this call.
    bool reused() const { return reused_; }

   private:
    friend class ConnectionPool;
    Lease(ConnectionPool* pool, std::unique_ptr<Conn> conn, bool reused)
        : pool_(pool), conn_(std::move(conn)), reused_(reused) {}

    ConnectionPool* pool_;
    std::unique_ptr<Conn> conn_;
    bool reused_;
  };

  // `name` prefixes error messages ("postgres", "valkey"). `max_open` > 0.
  // Opening one connection may take up to `open_timeout`.
  ConnectionPool(std::string name, int max_open, absl::Duration open_timeout,
                 Opener open)
      : name_(std::move(name)),
        max_open_(max_open),
        open_timeout_(open_timeout),
        open_(std::move(open)) {}

  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Closes the idle connections. Every Lease must be gone by then.
  ~ConnectionPool() {
    absl::MutexLock lock(&mu_);
    idle_.clear();
  }

  // A connection for a call that must be done by `call_deadline`: an idle
  // one that is StillAlive() (one that is not is closed and replaced), or,
  // if none is idle and fewer than max_open are open, a new one, opened by
  // the earlier of call_deadline and open_timeout from when it starts. With
  // `fresh`, an idle connection is closed and a new one opened in its place
  // (a retry after a pooled connection died: its neighbours likely died
  // with it). UNAVAILABLE if no connection is free by `wait_deadline`; the
  // opener's error if it fails.
  absl::StatusOr<Lease> Acquire(absl::Time wait_deadline,
                                absl::Time call_deadline, bool fresh = false) {
    std::unique_ptr<Conn> conn;
    {
      absl::MutexLock lock(&mu_);
      if (!mu_.AwaitWithDeadline(
              absl::Condition(this, &ConnectionPool::CanLend), wait_deadline)) {
        return absl::UnavailableError(absl::StrCat(
            name_, ": ",
            max_open_ == 1 ? std::string("the connection")
                           : absl::StrCat("all ", max_open_, " connections"),
            " stayed busy; gave up waiting"));
      }
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else {
        ++open_count_;  // Reserve the slot; open outside the lock.
      }
    }
    if (conn != nullptr) {
      if (!fresh && conn->StillAlive()) {
        return Lease(this, std::move(conn), /*reused=*/true);
      }
      // Keep the slot: close this one and open another in its place.
      conn.reset();
    }
    absl::StatusOr<std::unique_ptr<Conn>> opened =
        open_(std::min(call_deadline, absl::Now() + open_timeout_));
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      --open_count_;
      return opened.status();
    }
    return Lease(this, *std::move(opened), /*reused=*/false);
  }

  // How many connections are open and lent out now.
  PoolStats Stats() const {
    absl::MutexLock lock(&mu_);
    return PoolStats{open_count_, max_open_,
                     open_count_ - static_cast<int>(idle_.size())};
  }

  // Adds a connection opened by the caller (say, the one that checked the
  // settings at start-up) as idle; it counts against max_open.
  void AddIdle(std::unique_ptr<Conn> conn) {
    absl::MutexLock lock(&mu_);
    ++open_count_;
    idle_.push_back(std::move(conn));
  }

 private:
  bool CanLend() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_count_ < max_open_;
  }

  void Release(std::unique_ptr<Conn> conn) {
    if (!conn->Reusable()) {
      conn.reset();  // Closes it outside the lock.
      absl::MutexLock lock(&mu_);
      --open_count_;
      return;
    }
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(conn));
  }

  const std::string name_;
  const int max_open_;
  const absl::Duration open_timeout_;
  const Opener open_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(mu_);
  // Idle, on loan, or being opened.
  int open_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_COMMON_CONNECTION_POOL_H_
