// PolicyHolder: the policy in force, replaced on reload without failing a
// call. Calls take Current() once and use that Policy to the end; a reload
// that fails keeps the policy in force.
#ifndef SESSIOND_AUTH_POLICY_HOLDER_H_
#define SESSIOND_AUTH_POLICY_HOLDER_H_

#include <atomic>
#include <cstdint>
#include <functional>
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
  // What the server checks of a policy beyond the file's own rules (e.g.
  // tenant settings against its flags): an error rejects the policy.
  using Check = std::function<absl::Status(const Policy&)>;

  // Holds Policy::Load(path), if `check` (when set) accepts it; the error
  // otherwise. Every Reload() applies the same check.
  static absl::StatusOr<std::unique_ptr<PolicyHolder>> Load(std::string path,
                                                            Check check = {});

  // Holds `policy` for good (Policy::AllowAll() when there is no policy
  // file): Reload() does nothing and returns OK.
  static std::unique_ptr<PolicyHolder> Fixed(
      std::shared_ptr<const Policy> policy);

  PolicyHolder(const PolicyHolder&) = delete;
  PolicyHolder& operator=(const PolicyHolder&) = delete;

  // The policy in force; cheap (a reader lock and a reference count).
  std::shared_ptr<const Policy> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Reads the file again. On success (parsed and checked) the new policy is
  // in force for every
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
  PolicyHolder(std::string path, Check check,
               std::shared_ptr<const Policy> policy)
      : path_(std::move(path)),
        check_(std::move(check)),
        policy_(std::move(policy)) {}

  // Policy::Load(path_), if check_ accepts it.
  absl::StatusOr<std::shared_ptr<const Policy>> LoadChecked() const;

  const std::string path_;  // empty: Fixed()
  const Check check_;
  absl::Mutex reload_mu_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> reloads_{0};
  std::atomic<int64_t> reload_failures_{0};
};

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_POLICY_HOLDER_H_
