#include "server/access.h"

#include <utility>

#include "auth/authenticator.h"
#include "auth/grpc_identity.h"

namespace sessiond {

TenantScope ScopeOf(absl::string_view tenant,
                    const auth::TenantSettings* settings,
                    const HandlerOptions& options) {
  TenantScope scope = DefaultScope(tenant, options);
  if (settings == nullptr) return scope;
  auto apply = [](const auto& setting, auto& value) {
    if (setting.has_value()) value = *setting;
  };
  apply(settings->default_idle_timeout, scope.default_idle_timeout);
  apply(settings->max_idle_timeout, scope.max_idle_timeout);
  apply(settings->default_absolute_lifetime, scope.default_absolute_lifetime);
  apply(settings->max_absolute_lifetime, scope.max_absolute_lifetime);
  apply(settings->max_payload_bytes, scope.max_payload_bytes);
  apply(settings->max_sessions_per_user, scope.limits.max_sessions_per_user);
  apply(settings->max_live_sessions, scope.limits.max_live_sessions);
  return scope;
}

auth::Permission PermissionFor(const v1::LoadRequest&) {
  return auth::Permission::kLoad;
}
auth::Permission PermissionFor(const v1::SaveRequest&) {
  return auth::Permission::kSave;
}
auth::Permission PermissionFor(const v1::CycleRequest&) {
  return auth::Permission::kCycle;
}
std::optional<auth::Permission> PermissionFor(
    const v1::DeleteRequest& request) {
  switch (request.target_case()) {
    case v1::DeleteRequest::kToken:
      return auth::Permission::kDeleteByToken;
    case v1::DeleteRequest::kId:
      return auth::Permission::kDeleteById;
    case v1::DeleteRequest::kUserId:
      return auth::Permission::kDeleteForUser;
    case v1::DeleteRequest::TARGET_NOT_SET:
      break;
  }
  return std::nullopt;
}
auth::Permission PermissionFor(const v1::ListForUserRequest&) {
  return auth::Permission::kListForUser;
}
auth::Permission PermissionFor(const v1::PruneRequest&) {
  return auth::Permission::kPrune;
}
auth::Permission PermissionFor(const v1::HealthRequest&) {
  return auth::Permission::kHealth;
}

std::unique_ptr<Access> Access::TrustEveryone(const HandlerOptions& options) {
  return std::unique_ptr<Access>(
      new Access(auth::PolicyHolder::Fixed(auth::Policy::AllowAll()), options));
}

absl::StatusOr<std::unique_ptr<Access>> Access::FromPolicyFile(
    std::string path, const HandlerOptions& options) {
  // Every tenant's settings must make a scope the handler can serve.
  auto check = [options](const auth::Policy& policy) -> absl::Status {
    for (const auth::Caller& caller : policy.callers()) {
      absl::Status s = ValidateScope(
          ScopeOf(caller.tenant, policy.FindTenant(caller.tenant), options),
          options);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::unique_ptr<auth::PolicyHolder>> holder =
      auth::PolicyHolder::Load(std::move(path), check);
  if (!holder.ok()) return holder.status();
  return std::unique_ptr<Access>(new Access(*std::move(holder), options));
}

absl::Status Access::Reload() { return policy_->Reload(); }

bool Access::HasCertificateCallers() const {
  const std::shared_ptr<const auth::Policy> policy = policy_->Current();
  return policy->HasCallers(auth::IdentityKind::kUriSan) ||
         policy->HasCallers(auth::IdentityKind::kDnsSan) ||
         policy->HasCallers(auth::IdentityKind::kCommonName);
}

bool Access::HasApiKeyCallers() const {
  return policy_->Current()->HasCallers(auth::IdentityKind::kApiKeySha256);
}

absl::StatusOr<Access::Admission> Access::Admit(
    const grpc::ServerContextBase& context,
    std::optional<auth::Permission> permission) const {
  Admission admission;
  admission.policy_ = policy_->Current();
  absl::StatusOr<const auth::Caller*> caller =
      auth::Authenticate(*admission.policy_, auth::PeerIdentityOf(context));
  if (!caller.ok()) return caller.status();
  if (permission.has_value()) {
    if (absl::Status s = auth::Authorize(**caller, *permission); !s.ok()) {
      return s;
    }
  }
  admission.caller_ = *caller;
  admission.scope_ =
      ScopeOf((*caller)->tenant,
              admission.policy_->FindTenant((*caller)->tenant), options_);
  return admission;
}

}  // namespace sessiond
