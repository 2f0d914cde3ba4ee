#include "auth/policy_holder.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sessiond::auth {

absl::StatusOr<std::unique_ptr<PolicyHolder>> PolicyHolder::Load(
    std::string path, Check check) {
  std::unique_ptr<PolicyHolder> holder(
      new PolicyHolder(std::move(path), std::move(check), nullptr));
  absl::StatusOr<std::shared_ptr<const Policy>> policy = holder->LoadChecked();
  if (!policy.ok()) return policy.status();
  {
    absl::MutexLock lock(&holder->mu_);
    holder->policy_ = *std::move(policy);
  }
  return holder;
}

std::unique_ptr<PolicyHolder> PolicyHolder::Fixed(
    std::shared_ptr<const Policy> policy) {
  return std::unique_ptr<PolicyHolder>(
      new PolicyHolder("", {}, std::move(policy)));
}

absl::StatusOr<std::shared_ptr<const Policy>> PolicyHolder::LoadChecked()
    const {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = Policy::Load(path_);
  if (!policy.ok() || !check_) return policy;
  if (absl::Status s = check_(**policy); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path_, ": ", s.message()));
  }
  return policy;
}

std::shared_ptr<const Policy> PolicyHolder::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return policy_;
}

absl::Status PolicyHolder::Reload() {
  if (path_.empty()) return absl::OkStatus();
  absl::MutexLock reload_lock(&reload_mu_);
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadChecked();
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
