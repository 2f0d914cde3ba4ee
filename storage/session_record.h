// SessionRecord: one session as storage keeps it, the values the storage
// calls take (SessionUpdate, ListCursor, StoreOptions), and the rules on
// them that every backend shares (expiry, listing order, time precision,
// storable text).
#ifndef SESSIOND_STORAGE_SESSION_RECORD_H_
#define SESSIOND_STORAGE_SESSION_RECORD_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::storage {

class OperationObserver;  // observer.h

struct SessionRecord {
  // The tenant the session belongs to (IsValidTenantName). Every call is
  // scoped to one tenant: no call of another tenant finds the session.
  std::string tenant;
  // Public identifier (URL-safe text), unique in the store across tenants.
  std::string id;
  // SHA-256 of the secret token, 32 raw bytes, unique in the store across
  // tenants. The token itself is never stored.
  std::string token_hash;
  // Empty until the session is associated with a user.
  std::string user_id;
  // User data and metadata, sealed by the caller; opaque here.
  std::string sealed_payload;
  absl::Time created_at;
  absl::Time last_active_at;
  // Sliding: the session expires this long after its last activity.
  absl::Duration idle_timeout;
  // Fixed: the session expires this long after creation, however active.
  absl::Duration absolute_lifetime;
  int64_t version = 0;

  // The earlier of the two expiry clocks.
  absl::Time ExpiresAt() const {
    return std::min(last_active_at + idle_timeout,
                    created_at + absolute_lifetime);
  }
  bool IsLiveAt(absl::Time now) const { return now < ExpiresAt(); }

  friend bool operator==(const SessionRecord& a, const SessionRecord& b) {
    return a.tenant == b.tenant && a.id == b.id &&
           a.token_hash == b.token_hash && a.user_id == b.user_id &&
           a.sealed_payload == b.sealed_payload &&
           a.created_at == b.created_at &&
           a.last_active_at == b.last_active_at &&
           a.idle_timeout == b.idle_timeout &&
           a.absolute_lifetime == b.absolute_lifetime && a.version == b.version;
  }
};

// Listing order of ListForUser: most recently active first, then by id
// descending so that the order is total.
inline bool ListsBefore(absl::Time a_active, absl::string_view a_id,
                        absl::Time b_active, absl::string_view b_id) {
  if (a_active != b_active) return a_active > b_active;
  return a_id > b_id;
}

// Stores keep times at microsecond precision so that every backend returns
// exactly what another would.
inline absl::Time TruncateToMicros(absl::Time t) {
  return absl::FromUnixMicros(absl::ToUnixMicros(t));
}

// Timeouts likewise: the sub-microsecond part is dropped (toward zero).
// Infinite durations, and finite ones too long for int64 microseconds
// (about 292,000 years), come back infinite.
inline absl::Duration TruncateDurationToMicros(absl::Duration d) {
  const int64_t us = absl::ToInt64Microseconds(d);  // saturates
  if (us == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteDuration();
  }
  if (us == std::numeric_limits<int64_t>::min()) {
    return -absl::InfiniteDuration();
  }
  return absl::Microseconds(us);
}

// How stores that keep numbers write a duration: whole microseconds, with
// int64 max standing for an infinite duration. Lossless both ways for
// durations truncated with TruncateDurationToMicros.
inline int64_t DurationToMicros(absl::Duration d) {
  return absl::ToInt64Microseconds(d);  // saturates
}
inline absl::Duration MicrosToDuration(int64_t us) {
  if (us == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(us);
}

// Whether `s` is strict UTF-8: no overlong forms, surrogates or code points
// past U+10FFFF.
inline bool IsUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte, 0xc0/0xc1, or past 0xf4
    }
    if (len > n - i) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Whether `s` may be a stored id or user_id (session_store.h): UTF-8 without
// NUL bytes, which is also exactly what a PostgreSQL text value can hold.
// The SessionStore front applies it for every backend: writes reject other
// text (INVALID_ARGUMENT); lookups by such an id or user find nothing.
inline bool IsStorableText(absl::string_view s) {
  return s.find('\0') == absl::string_view::npos && IsUtf8(s);
}

// Token hashes are SHA-256 digests, raw.
inline constexpr size_t kTokenHashSize = 32;

// The tenant of every session when the server runs without a policy, and
// of every session stored before tenants existed.
inline constexpr absl::string_view kDefaultTenant = "default";

// Whether `name` may name a tenant: 1 to 64 characters of [A-Za-z0-9._-],
// so that it can be part of a key name or a log line as it is.
inline bool IsValidTenantName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Settings of the SessionStore front that hold for the whole store.
struct StoreOptions {
  // How old the count of a tenant's live sessions may be when Create checks
  // TenantLimits::max_live_sessions against it (session_store.h).
  absl::Duration live_count_max_age = absl::Seconds(5);
  // If set, told of every backend operation (observer.h); must outlive the
  // store.
  OperationObserver* observer = nullptr;
};

// A tenant's caps, given with each write that they bound; 0 means no cap.
struct TenantLimits {
  // Live sessions per non-empty user_id (Create, and Cycle that sets a
  // user).
  int max_sessions_per_user = 0;
  // Live sessions of the tenant (Create).
  int64_t max_live_sessions = 0;
};

// Replaces the mutable parts of a session (SessionStore::Update). An update
// never changes the session's user: that is Cycle's, with a new token.
struct SessionUpdate {
  // nullopt leaves the current value.
  std::optional<std::string> sealed_payload;
  std::optional<absl::Duration> idle_timeout;
  std::optional<absl::Duration> absolute_lifetime;
  // If set, the update happens only if the stored version equals it;
  // otherwise ABORTED and nothing is written.
  std::optional<int64_t> expected_version;
};

// What SessionStore::Cycle does besides moving the session to a new token.
struct SessionCycle {
  // 32 bytes, different from the old hash.
  std::string new_token_hash;
  // If set, the session's user becomes this (login).
  std::optional<std::string> user_id;
  // If set, replaces the sealed payload (resealed for the new user).
  std::optional<std::string> sealed_payload;
  // If set, the cycle happens only if the stored version equals it;
  // otherwise ABORTED and nothing is written.
  std::optional<int64_t> expected_version;
};

// Position in a ListForUser listing: the last record of the previous page.
struct ListCursor {
  absl::Time last_active_at;
  std::string id;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SESSION_RECORD_H_
