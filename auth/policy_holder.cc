#include "auth/policy_holder.h"

#include <utility>

namespace sessiond::auth {

absl::StatusOr<std::unique_ptr<PolicyHolder>> PolicyHolder::Load(
    std::string path) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = Policy::Load(path);
  if (!policy.ok()) return policy.status();
  return std::unique_ptr<PolicyHolder>(
      new PolicyHolder(std::move(path), *std::move(policy)));
}

std::unique_ptr<PolicyHolder> PolicyHolder::Fixed(
    std::shared_ptr<const Policy> policy) {
  return std::unique_ptr<PolicyHolder>(new PolicyHolder("", std::move(policy)));
}

std::shared_ptr<const Policy> PolicyHolder::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return policy_;
}

absl::Status PolicyHolder::Reload() {
  if (path_.empty()) return absl::OkStatus();
  absl::MutexLock reload_lock(&reload_mu_);
  absl::StatusOr<std::shared_ptr<const Policy>> policy = Policy::Load(path_);
  if (!policy.ok()) {
    reload_failures_.fetch_add(1, std::memory_order_relaxed);
    return policy.status();
  }
  std::shared_ptr<const Policy> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(policy_, *std::move(policy));
  }
  // `old` is released here, outside mu_, if no call still holds it.
  reloads_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace sessiond::auth
