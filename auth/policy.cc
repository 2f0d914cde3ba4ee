#include "auth/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "auth/internal/yaml_reader.h"
#include "crypto/token.h"
#include "storage/session_record.h"

namespace sessiond::auth {
namespace {

using internal::Context;
using internal::Entry;
using internal::Quote;

constexpr size_t kMaxPolicyFileBytes = 1 << 20;
constexpr size_t kSha256HexLength = 64;

constexpr std::array<absl::string_view, kPermissionCount> kPermissionNames = {
    "Load",          "Save",        "Cycle", "DeleteByToken", "DeleteById",
    "DeleteForUser", "ListForUser", "Prune", "Health",
};

// The key of each IdentityKind in the file, in enum order.
constexpr std::array<absl::string_view, 4> kIdentityKeys = {
    "uri_san", "dns_san", "common_name", "api_key_sha256"};

// Tenant names are storage's rule; caller names follow the same one, so
// that both go into key names and log lines as they are.
bool IsValidName(absl::string_view name) {
  return storage::IsValidTenantName(name);
}

bool HasSpaceOrControl(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isspace(c) || absl::ascii_iscntrl(c);
  });
}

// Permissions named by one word of an allow list ("Delete": three).
std::bitset<kPermissionCount> PermissionsNamed(absl::string_view word) {
  std::bitset<kPermissionCount> bits;
  if (word == "Delete") {
    bits.set(static_cast<size_t>(Permission::kDeleteByToken));
    bits.set(static_cast<size_t>(Permission::kDeleteById));
    bits.set(static_cast<size_t>(Permission::kDeleteForUser));
    return bits;
  }
  for (size_t i = 0; i < kPermissionCount; ++i) {
    if (kPermissionNames[i] == word) bits.set(i);
  }
  return bits;
}

// The key of an identity as stored in Policy::by_identity_, or an error
// message saying what the value must be.
absl::StatusOr<std::string> IdentityKey(IdentityKind kind,
                                        absl::string_view value) {
  if (kind == IdentityKind::kApiKeySha256) {
    if (value.size() != kSha256HexLength ||
        !std::all_of(value.begin(), value.end(), absl::ascii_isxdigit)) {
      return absl::InvalidArgumentError(
          "must be 64 hexadecimal digits (the SHA-256 of the key, e.g. from "
          "`printf %s KEY | sha256sum`)");
    }
    return absl::HexStringToBytes(value);
  }
  if (value.empty() || HasSpaceOrControl(value)) {
    return absl::InvalidArgumentError(
        "must be non-empty, without spaces or control characters");
  }
  if (kind == IdentityKind::kDnsSan) return absl::AsciiStrToLower(value);
  return std::string(value);
}

}  // namespace

absl::string_view PermissionName(Permission permission) {
  const size_t i = static_cast<size_t>(permission);
  return i < kPermissionCount ? kPermissionNames[i] : "unknown";
}

// Parses a document into a Policy; one error, the first in the file.
class PolicyBuilder {
 public:
  explicit PolicyBuilder(absl::string_view source) : context_(source) {}

  absl::StatusOr<std::shared_ptr<const Policy>> Build(absl::string_view text) {
    absl::StatusOr<internal::YamlNode> root =
        internal::ParseOneDocument(text, context_);
    if (!root.ok()) return root.status();
    const int root_line = std::max(1, root->line);
    absl::StatusOr<std::vector<Entry>> entries =
        internal::MapEntries(context_, *root, root_line, "the policy",
                             {"version", "tenants", "callers"});
    if (!entries.ok()) return entries.status();
    const Entry* version = nullptr;
    const Entry* tenants = nullptr;
    const Entry* callers = nullptr;
    for (const Entry& entry : *entries) {
      if (entry.key == "version") version = &entry;
      if (entry.key == "tenants") tenants = &entry;
      if (entry.key == "callers") callers = &entry;
    }
    if (version == nullptr) {
      return context_.Error(root_line, "missing \"version\" (must be 1)");
    }
    absl::StatusOr<int64_t> number = internal::ReadInt(
        context_, *version, 0, std::numeric_limits<int64_t>::max());
    if (!number.ok()) return context_.Error(version->line, "version must be 1");
    if (*number != 1) {
      return context_.Error(version->line,
                            absl::StrCat("unsupported version ", *number,
                                         " (this sessiond reads version 1)"));
    }
    if (tenants == nullptr) {
      return context_.Error(root_line, "missing \"tenants\"");
    }
    if (absl::Status s = ReadTenants(*tenants); !s.ok()) return s;
    if (callers == nullptr) {
      return context_.Error(root_line, "missing \"callers\"");
    }
    if (absl::Status s = ReadCallers(*callers); !s.ok()) return s;
    return std::shared_ptr<const Policy>(std::move(policy_));
  }

 private:
  absl::Status ReadTenants(const Entry& tenants) {
    absl::StatusOr<std::vector<Entry>> entries = internal::MapEntries(
        context_, tenants.value, tenants.line, "tenants", {}, "tenant");
    if (!entries.ok()) return entries.status();
    if (entries->empty()) {
      return context_.Error(tenants.line, "tenants: declare at least one");
    }
    for (const Entry& tenant : *entries) {
      if (!IsValidName(tenant.key)) {
        return context_.Error(
            tenant.key_line,
            absl::StrCat("tenant name ", Quote(tenant.key),
                         " must be 1 to 64 of A-Z a-z 0-9 . _ -"));
      }
      absl::StatusOr<TenantSettings> settings = ReadTenant(tenant);
      if (!settings.ok()) return settings.status();
      policy_->tenants_.emplace(tenant.key, *std::move(settings));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<TenantSettings> ReadTenant(const Entry& tenant) {
    const Context context =
        context_.With(absl::StrCat("tenant ", Quote(tenant.key), ": "));
    TenantSettings settings;
    if (tenant.value.IsNull()) return settings;  // "shop:" alone
    absl::StatusOr<std::vector<Entry>> entries = internal::MapEntries(
        context, tenant.value, tenant.line, "its settings",
        {"default_idle_timeout", "max_idle_timeout",
         "default_absolute_lifetime", "max_absolute_lifetime",
         "max_sessions_per_user", "max_payload_bytes", "max_live_sessions"});
    if (!entries.ok()) return entries.status();
    // Lines of the durations, for the default <= max checks.
    absl::flat_hash_map<std::string, int> line_of;
    for (const Entry& entry : *entries) {
      line_of[entry.key] = entry.line;
      std::optional<absl::Duration>* duration = nullptr;
      if (entry.key == "default_idle_timeout") {
        duration = &settings.default_idle_timeout;
      } else if (entry.key == "max_idle_timeout") {
        duration = &settings.max_idle_timeout;
      } else if (entry.key == "default_absolute_lifetime") {
        duration = &settings.default_absolute_lifetime;
      } else if (entry.key == "max_absolute_lifetime") {
        duration = &settings.max_absolute_lifetime;
      }
      if (duration != nullptr) {
        absl::StatusOr<absl::Duration> d =
            internal::ReadDuration(context, entry);
        if (!d.ok()) return d.status();
        *duration = *d;
        continue;
      }
      const int64_t min = entry.key == "max_payload_bytes" ? 1 : 0;
      const int64_t max = entry.key == "max_sessions_per_user"
                              ? std::numeric_limits<int>::max()
                              : std::numeric_limits<int64_t>::max();
      absl::StatusOr<int64_t> n = internal::ReadInt(context, entry, min, max);
      if (!n.ok()) return n.status();
      if (entry.key == "max_sessions_per_user") {
        settings.max_sessions_per_user = static_cast<int>(*n);
      } else if (entry.key == "max_payload_bytes") {
        settings.max_payload_bytes = *n;
      } else {
        settings.max_live_sessions = *n;
      }
    }
    if (settings.default_idle_timeout && settings.max_idle_timeout &&
        *settings.default_idle_timeout > *settings.max_idle_timeout) {
      return context.Error(
          line_of["default_idle_timeout"],
          "default_idle_timeout is longer than max_idle_timeout");
    }
    if (settings.default_absolute_lifetime && settings.max_absolute_lifetime &&
        *settings.default_absolute_lifetime > *settings.max_absolute_lifetime) {
      return context.Error(
          line_of["default_absolute_lifetime"],
          "default_absolute_lifetime is longer than max_absolute_lifetime");
    }
    return settings;
  }

  absl::Status ReadCallers(const Entry& callers) {
    if (!callers.value.IsSequence()) {
      return context_.Error(callers.line,
                            "callers must be a list (\"- name: ...\")");
    }
    if (callers.value.size() == 0) {
      return context_.Error(callers.line, "callers: declare at least one");
    }
    size_t index = 0;
    for (const internal::YamlNode& caller : callers.value) {
      ++index;
      const int line = caller.line > 0 ? caller.line : callers.line;
      if (absl::Status s = ReadCaller(caller, line, index); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status ReadCaller(const internal::YamlNode& node, int line,
                          size_t index) {
    const Context unnamed =
        context_.With(absl::StrCat("caller #", index, ": "));
    absl::StatusOr<std::vector<Entry>> entries =
        internal::MapEntries(unnamed, node, line, "a caller",
                             {"name", "tenant", "uri_san", "dns_san",
                              "common_name", "api_key_sha256", "allow"});
    if (!entries.ok()) return entries.status();
    const Entry* name = nullptr;
    for (const Entry& entry : *entries) {
      if (entry.key == "name") name = &entry;
    }
    if (name == nullptr) return unnamed.Error(line, "missing \"name\"");
    absl::StatusOr<std::string> name_text =
        internal::ReadString(unnamed, *name);
    if (!name_text.ok()) return name_text.status();
    if (!IsValidName(*name_text)) {
      return unnamed.Error(
          name->line, absl::StrCat("name ", Quote(*name_text),
                                   " must be 1 to 64 of A-Z a-z 0-9 . _ -"));
    }
    const auto [first, inserted] =
        caller_lines_.emplace(*name_text, name->line);
    if (!inserted) {
      return unnamed.Error(
          name->line, absl::StrCat("duplicate caller name ", Quote(*name_text),
                                   " (first on line ", first->second, ")"));
    }

    const Context context =
        context_.With(absl::StrCat("caller ", Quote(*name_text), ": "));
    Caller caller;
    caller.name = *name_text;
    const Entry* tenant = nullptr;
    const Entry* identity = nullptr;
    IdentityKind kind = IdentityKind::kUriSan;
    const Entry* allow = nullptr;
    for (const Entry& entry : *entries) {
      if (entry.key == "tenant") tenant = &entry;
      if (entry.key == "allow") allow = &entry;
      for (size_t k = 0; k < kIdentityKeys.size(); ++k) {
        if (entry.key != kIdentityKeys[k]) continue;
        if (identity != nullptr) {
          return context.Error(
              entry.key_line,
              absl::StrCat("has both ", identity->key, " and ", entry.key,
                           "; a caller has exactly one identity"));
        }
        identity = &entry;
        kind = static_cast<IdentityKind>(k);
      }
    }

    if (tenant == nullptr) return context.Error(line, "missing \"tenant\"");
    absl::StatusOr<std::string> tenant_name =
        internal::ReadString(context, *tenant);
    if (!tenant_name.ok()) return tenant_name.status();
    if (!policy_->tenants_.contains(*tenant_name)) {
      return context.Error(tenant->line,
                           absl::StrCat("unknown tenant ", Quote(*tenant_name),
                                        " (declare it under tenants)"));
    }
    caller.tenant = *tenant_name;

    if (identity == nullptr) {
      return context.Error(line,
                           "missing an identity: one of uri_san, dns_san, "
                           "common_name, api_key_sha256");
    }
    absl::StatusOr<std::string> identity_text =
        internal::ReadString(context, *identity);
    if (!identity_text.ok()) return identity_text.status();
    absl::StatusOr<std::string> key = IdentityKey(kind, *identity_text);
    if (!key.ok()) {
      return context.Error(
          identity->line,
          absl::StrCat(identity->key, " ", key.status().message()));
    }

    if (allow == nullptr) {
      return context.Error(line,
                           "missing \"allow\" (the RPCs it may call, e.g. "
                           "[Load, Save])");
    }
    absl::StatusOr<std::bitset<kPermissionCount>> permissions =
        ReadAllow(context, *allow);
    if (!permissions.ok()) return permissions.status();
    caller.permissions = *permissions;

    // Last, so that the caller is complete when its identity is taken.
    auto& by_identity = policy_->by_identity_[static_cast<size_t>(kind)];
    const auto [taken, added] =
        by_identity.emplace(*std::move(key), policy_->callers_.size());
    if (!added) {
      const Caller& other = policy_->callers_[taken->second];
      return context.Error(
          identity->line,
          absl::StrCat(identity->key, " ", Quote(*identity_text),
                       " is already the identity of caller ", Quote(other.name),
                       " (line ", identity_lines_[taken->second], ")"));
    }
    policy_->callers_.push_back(std::move(caller));
    identity_lines_.push_back(identity->line);
    return absl::OkStatus();
  }

  absl::StatusOr<std::bitset<kPermissionCount>> ReadAllow(
      const Context& context, const Entry& allow) {
    if (!allow.value.IsSequence()) {
      return context.Error(
          allow.line,
          absl::StrCat(
              "allow must be a list like [Load, "
              "Save], not ",
              allow.value.IsScalar() ? Quote(allow.value.Scalar()) : "that"));
    }
    if (allow.value.size() == 0) {
      return context.Error(allow.line,
                           "allow is empty: a caller must be allowed at least "
                           "one RPC");
    }
    std::bitset<kPermissionCount> permissions;
    for (const internal::YamlNode& item : allow.value) {
      const int line = item.line > 0 ? item.line : allow.line;
      if (!item.IsScalar()) {
        return context.Error(line, "allow lists permission names only");
      }
      const std::bitset<kPermissionCount> named =
          PermissionsNamed(item.Scalar());
      if (named.none()) {
        return context.Error(
            line, absl::StrCat("unknown permission ", Quote(item.Scalar())));
      }
      permissions |= named;
    }
    return permissions;
  }

  Context context_;
  std::unique_ptr<Policy> policy_{new Policy()};
  // Caller name -> line of its name.
  absl::flat_hash_map<std::string, int> caller_lines_;
  // Per caller (as indexed in policy_->callers_): line of its identity.
  std::vector<int> identity_lines_;
};

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Parse(
    absl::string_view yaml_text, absl::string_view source) {
  try {
    return PolicyBuilder(source).Build(yaml_text);
  } catch (const std::exception& e) {  // std::bad_alloc
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": cannot read the policy: ", e.what()));
  }
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Load(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot open policy file ", path));
  }
  std::string text;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(
          error, absl::StrCat("cannot read policy file ", path));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxPolicyFileBytes) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("policy file ", path, " is larger than ",
                       kMaxPolicyFileBytes, " bytes"));
    }
  }
  ::close(fd);
  return Parse(text, path);
}

std::shared_ptr<const Policy> Policy::AllowAll() {
  std::shared_ptr<Policy> policy(new Policy());
  policy->allows_everyone_ = true;
  policy->tenants_.emplace("default", TenantSettings{});
  Caller caller;
  caller.name = "default";
  caller.tenant = "default";
  caller.permissions.set();
  policy->callers_.push_back(std::move(caller));
  return policy;
}

const TenantSettings* Policy::FindTenant(absl::string_view name) const {
  const auto it = tenants_.find(name);
  return it == tenants_.end() ? nullptr : &it->second;
}

const Caller* Policy::FindCaller(IdentityKind kind,
                                 absl::string_view value) const {
  const auto& by_identity = by_identity_[static_cast<size_t>(kind)];
  std::string lowered;
  if (kind == IdentityKind::kDnsSan) {
    lowered = absl::AsciiStrToLower(value);
    value = lowered;
  }
  const auto it = by_identity.find(value);
  if (it == by_identity.end()) return nullptr;
  if (kind == IdentityKind::kApiKeySha256 &&
      !crypto::ConstantTimeEquals(it->first, value)) {
    return nullptr;
  }
  return &callers_[it->second];
}

bool Policy::HasCallers(IdentityKind kind) const {
  return !by_identity_[static_cast<size_t>(kind)].empty();
}

}  // namespace sessiond::auth
