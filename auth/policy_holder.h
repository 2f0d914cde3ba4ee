// PolicyHolder: the policy in force, replaced on reload without failing a
// call. Calls take Current() once and use that Policy to the end; a reload
// that fails keeps the policy in force.
#ifndef SESSIOND_AUTH_POLICY_HOLDER_H_
#define SESSIOND_AUTH_POLICY_HOLDER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "auth/policy.h"

namespace sessiond::auth {

// Thread-safe.
class PolicyHolder {
 public:
  // Holds Policy::Load(path); its error if that fails.
  static absl::StatusOr<std::unique_ptr<PolicyHolder>> Load(std::string path);

  // Holds `policy` for good (Policy::AllowAll() when there is no policy
  // file): Reload() does nothing and returns OK.
  static std::unique_ptr<PolicyHolder> Fixed(
      std::shared_ptr<const Policy> policy);

  PolicyHolder(const PolicyHolder&) = delete;
  PolicyHolder& operator=(const PolicyHolder&) = delete;

  // The policy in force; cheap (a reader lock and a reference count).
  std::shared_ptr<const Policy> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Reads the file again. On success the new policy is in force for every
  // later Current() and reloads() counts one; otherwise the policy in force
  // stays, reload_failures() counts one, and the error (naming the file and
  // line) is returned. Reloads run one at a time.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(reload_mu_, mu_);

  // Successful and failed Reload() calls so far.
  int64_t reloads() const { return reloads_.load(std::memory_order_relaxed); }
  int64_t reload_failures() const {
    return reload_failures_.load(std::memory_order_relaxed);
  }

 private:
  PolicyHolder(std::string path, std::shared_ptr<const Policy> policy)
      : path_(std::move(path)), policy_(std::move(policy)) {}

  const std::string path_;  // empty: Fixed()
  absl::Mutex reload_mu_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> reloads_{0};
  std::atomic<int64_t> reload_failures_{0};
};

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_POLICY_HOLDER_H_
