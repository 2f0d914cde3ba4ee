// Policy: who may call sessiond, which tenant each caller belongs to, and
// which RPCs each may make. Read from a YAML file (the format, with every
// field explained: deploy/policy.example.yaml):
//
//   version: 1
//   tenants:
//     shop: {max_sessions_per_user: 10}
//   callers:
//     - name: shop-web
//       tenant: shop
//       uri_san: spiffe://example.org/ns/shop/sa/web
//       allow: [Load, Save, Cycle, DeleteByToken]
//
// A Policy is immutable and thread-safe; share it as
// std::shared_ptr<const Policy> (PolicyHolder swaps it on reload). Pointers
// it returns (Caller, TenantSettings) live as long as the Policy.
#ifndef SESSIOND_AUTH_POLICY_H_
#define SESSIOND_AUTH_POLICY_H_

#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::auth {

// What a caller may do: one per RPC, and one per form of Delete. In the
// file, "Delete" stands for the three Delete forms.
enum class Permission {
  kLoad,
  kSave,
  kCycle,
  kDeleteByToken,
  kDeleteById,
  kDeleteForUser,
  kListForUser,
  kPrune,
  kHealth,
};
inline constexpr size_t kPermissionCount = 9;

// The name the file uses: "Load", "DeleteByToken", ...
absl::string_view PermissionName(Permission permission);

// A tenant's limits. Unset fields: the server's flag applies.
struct TenantSettings {
  std::optional<absl::Duration> default_idle_timeout;
  std::optional<absl::Duration> max_idle_timeout;
  std::optional<absl::Duration> default_absolute_lifetime;
  std::optional<absl::Duration> max_absolute_lifetime;
  // 0: no cap.
  std::optional<int> max_sessions_per_user;
  std::optional<int64_t> max_payload_bytes;
  // 0: no cap.
  std::optional<int64_t> max_live_sessions;
};

// How a caller is recognized: the one identity key it has in the file.
enum class IdentityKind { kUriSan, kDnsSan, kCommonName, kApiKeySha256 };

struct Caller {
  // Unique in its policy; safe to log (1..64 of [A-Za-z0-9._-]).
  std::string name;
  // A tenant of the same policy: FindTenant(tenant) is never null.
  std::string tenant;
  std::bitset<kPermissionCount> permissions;

  bool Allows(Permission p) const {
    return permissions.test(static_cast<size_t>(p));
  }
};

class Policy {
 public:
  // Reads a version 1 policy. INVALID_ARGUMENT for anything that is not one
  // exactly (syntax, unknown or missing keys, wrong types, bad values); the
  // message starts with "source:line: ". Never throws.
  static absl::StatusOr<std::shared_ptr<const Policy>> Parse(
      absl::string_view yaml_text, absl::string_view source);

  // Parse()s the file at `path` (at most 1 MiB); messages name the path.
  // The errno's code if it cannot be read.
  static absl::StatusOr<std::shared_ptr<const Policy>> Load(
      const std::string& path);

  // The policy in force without a policy file: one tenant, "default", with
  // no settings, and one caller, "default", allowed everything, which every
  // peer is (allows_everyone()).
  static std::shared_ptr<const Policy> AllowAll();

  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // True only for AllowAll().
  bool allows_everyone() const { return allows_everyone_; }

  // The tenant named `name`, or nullptr.
  const TenantSettings* FindTenant(absl::string_view name) const;

  // Every caller, in file order.
  const std::vector<Caller>& callers() const { return callers_; }

  // The caller whose identity of `kind` is `value`, or nullptr. DNS names
  // compare ASCII case-insensitively, everything else exactly. For
  // kApiKeySha256, `value` is the raw 32-byte SHA-256 of the key, confirmed
  // in constant time. Never matches anything for AllowAll().
  const Caller* FindCaller(IdentityKind kind, absl::string_view value) const;

  // Whether any caller has an identity of `kind`.
  bool HasCallers(IdentityKind kind) const;

 private:
  friend class PolicyBuilder;
  Policy() = default;

  bool allows_everyone_ = false;
  absl::flat_hash_map<std::string, TenantSettings> tenants_;
  std::vector<Caller> callers_;
  // Per IdentityKind: identity (lowercased DNS name, raw digest) -> index
  // into callers_.
  std::array<absl::flat_hash_map<std::string, size_t>, 4> by_identity_;
};

}  // namespace sessiond::auth

#endif  // SESSIOND_AUTH_POLICY_H_
