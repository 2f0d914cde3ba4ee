// Access: for each call, who is calling, whether it may make the call, and
// the tenant it is scoped to, with that tenant's settings applied to the
// server's (TenantScope). Reads the policy file (auth/policy.h) and reloads
// it without failing a call; without a policy file, every caller is trusted
// in the default tenant.
#ifndef SESSIOND_SERVER_ACCESS_H_
#define SESSIOND_SERVER_ACCESS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "auth/policy.h"
#include "auth/policy_holder.h"
#include "grpcpp/server_context.h"
#include "server/session_handler.h"
#include "sessiond/v1/session.pb.h"

namespace sessiond {

// The scope of `tenant` under `settings` (null: none of its own) over the
// server's `options`: each setting the tenant gives replaces the server's.
TenantScope ScopeOf(absl::string_view tenant,
                    const auth::TenantSettings* settings,
                    const HandlerOptions& options);

// The permission a request needs: Delete's depends on its target; nullopt
// for a Delete with none (the handler rejects it as INVALID_ARGUMENT).
auth::Permission PermissionFor(const v1::LoadRequest&);
auth::Permission PermissionFor(const v1::SaveRequest&);
auth::Permission PermissionFor(const v1::CycleRequest&);
std::optional<auth::Permission> PermissionFor(const v1::DeleteRequest& request);
auth::Permission PermissionFor(const v1::ListForUserRequest&);
auth::Permission PermissionFor(const v1::PruneRequest&);
auth::Permission PermissionFor(const v1::HealthRequest&);

// Thread-safe.
class Access {
 public:
  // A call let in: its caller and scope, valid while the Admission lives
  // (it holds the policy that admitted it, whatever reloads happen).
  class Admission {
   public:
    const TenantScope& scope() const { return scope_; }
    const std::string& caller() const { return caller_->name; }

   private:
    friend class Access;
    std::shared_ptr<const auth::Policy> policy_;
    const auth::Caller* caller_ = nullptr;
    TenantScope scope_;
  };

  // No policy file: every caller is trusted in the default tenant.
  static std::unique_ptr<Access> TrustEveryone(const HandlerOptions& options);

  // The policy in `path`. INVALID_ARGUMENT naming the file and line for a
  // bad file, or naming the tenant and setting for settings the server
  // cannot apply (ValidateScope); the errno's code if it cannot be read.
  static absl::StatusOr<std::unique_ptr<Access>> FromPolicyFile(
      std::string path, const HandlerOptions& options);

  // Reads the policy file again: calls that start afterwards use it. On an
  // error the policy in force stays, and reload_failures() counts it.
  absl::Status Reload();
  int64_t reloads() const { return policy_->reloads(); }
  int64_t reload_failures() const { return policy_->reload_failures(); }

  // Whether the policy in force names callers by certificate or API key.
  bool HasCertificateCallers() const;
  bool HasApiKeyCallers() const;

  // The caller of `context`, if the policy in force names it and grants it
  // `permission` (nullopt: any). UNAUTHENTICATED or PERMISSION_DENIED
  // otherwise, with a message that names the caller and the RPC, never a
  // key.
  absl::StatusOr<Admission> Admit(
      const grpc::ServerContextBase& context,
      std::optional<auth::Permission> permission) const;

 private:
  Access(std::unique_ptr<auth::PolicyHolder> policy,
         const HandlerOptions& options)
      : policy_(std::move(policy)), options_(options) {}

  const std::unique_ptr<auth::PolicyHolder> policy_;
  const HandlerOptions options_;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_ACCESS_H_
