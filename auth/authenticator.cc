#include "auth/authenticator.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/internal/quote.h"
#include "crypto/token.h"

namespace sessiond::auth {
namespace {

using internal::Quote;

// The one caller that `names` of `kind` name; nullptr if none does.
absl::StatusOr<const Caller*> MatchOne(const Policy& policy, IdentityKind kind,
                                       absl::string_view what,
                                       const std::vector<std::string>& names) {
  const Caller* found = nullptr;
  const std::string* found_by = nullptr;
  for (const std::string& name : names) {
    const Caller* caller = policy.FindCaller(kind, name);
    if (caller == nullptr) continue;
    if (found != nullptr && found != caller) {
      return absl::UnauthenticatedError(absl::StrCat(
          "ambiguous client certificate: ", what, " ", Quote(*found_by),
          " is caller ", Quote(found->name), ", ", what, " ", Quote(name),
          " is caller ", Quote(caller->name)));
    }
    found = caller;
    found_by = &name;
  }
  return found;
}

}  // namespace

absl::StatusOr<const Caller*> Authenticate(const Policy& policy,
                                           const PeerIdentity& peer) {
  if (policy.allows_everyone()) return &policy.callers().front();

  absl::StatusOr<const Caller*> by_uri =
      MatchOne(policy, IdentityKind::kUriSan, "URI SAN", peer.uri_sans);
  if (!by_uri.ok() || *by_uri != nullptr) return by_uri;
  absl::StatusOr<const Caller*> by_dns =
      MatchOne(policy, IdentityKind::kDnsSan, "DNS SAN", peer.dns_sans);
  if (!by_dns.ok() || *by_dns != nullptr) return by_dns;
  const bool use_cn = policy.HasCallers(IdentityKind::kCommonName);
  if (use_cn && peer.common_name.has_value()) {
    const Caller* caller =
        policy.FindCaller(IdentityKind::kCommonName, *peer.common_name);
    if (caller != nullptr) return caller;
  }
  if (peer.bearer_token.has_value()) {
    // An API key is hashed as a session token is: SHA-256, raw.
    const Caller* caller = policy.FindCaller(
        IdentityKind::kApiKeySha256, crypto::HashToken(*peer.bearer_token));
    if (caller != nullptr) return caller;
  }

  // Nothing matched: say what was presented (never the token itself).
  std::vector<std::string> presented;
  if (!peer.uri_sans.empty()) {
    presented.push_back(absl::StrCat("URI SAN ", Quote(peer.uri_sans.front()),
                                     peer.uri_sans.size() > 1 ? " ..." : ""));
  }
  if (!peer.dns_sans.empty()) {
    presented.push_back(absl::StrCat("DNS SAN ", Quote(peer.dns_sans.front()),
                                     peer.dns_sans.size() > 1 ? " ..." : ""));
  }
  if (use_cn && peer.common_name.has_value()) {
    presented.push_back(absl::StrCat("CN ", Quote(*peer.common_name)));
  }
  if (peer.bearer_token.has_value()) presented.push_back("an API key");
  if (presented.empty()) {
    return absl::UnauthenticatedError(
        "no client identity: present a client certificate or an API key "
        "(authorization: Bearer KEY)");
  }
  return absl::UnauthenticatedError(absl::StrCat(
      "unknown caller: no caller matches ", absl::StrJoin(presented, ", ")));
}

absl::Status Authorize(const Caller& caller, Permission permission) {
  if (caller.Allows(permission)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("caller ", Quote(caller.name),
                                                  " may not call ",
                                                  PermissionName(permission)));
}

}  // namespace sessiond::auth
