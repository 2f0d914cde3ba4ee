// SessionRecord: one session as storage keeps it, plus the rules on it that
// every backend shares (expiry, listing order, time precision).
#ifndef SESSIOND_STORAGE_SESSION_RECORD_H_
#define SESSIOND_STORAGE_SESSION_RECORD_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::storage {

struct SessionRecord {
  // Public identifier (URL-safe text).
  std::string id;
  // SHA-256 of the secret token, 32 raw bytes. The token itself is never
  // stored.
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
    return a.id == b.id && a.token_hash == b.token_hash &&
           a.user_id == b.user_id && a.sealed_payload == b.sealed_payload &&
           a.created_at == b.created_at &&
           a.last_active_at == b.last_active_at &&
           a.idle_timeout == b.idle_timeout &&
           a.absolute_lifetime == b.absolute_lifetime && a.version == b.version;
  }
};

// Listing order of ListForUser: most recently active first, then by id
// descending so that the order is total.
inline bool ListsBefore(absl::Time a_active, const std::string& a_id,
                        absl::Time b_active, const std::string& b_id) {
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

// Whether `s` may be a stored id or user_id (session_store.h): strict UTF-8
// (no overlong forms, surrogates or code points past U+10FFFF) without NUL
// bytes, which is also exactly what a PostgreSQL text value can hold. Every
// backend checks it the same way: writes reject other text
// (INVALID_ARGUMENT); lookups by such an id or user find nothing.
inline bool IsStorableText(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c == 0) return false;
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

// INVALID_ARGUMENT naming `what` unless IsStorableText(value).
inline absl::Status CheckStorableText(absl::string_view value,
                                      absl::string_view what) {
  if (IsStorableText(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be valid UTF-8 without NUL bytes"));
}

// Token hashes are SHA-256 digests, raw.
inline constexpr size_t kTokenHashSize = 32;

// INVALID_ARGUMENT unless both timeouts are positive.
inline absl::Status CheckTimeouts(absl::Duration idle,
                                  absl::Duration absolute) {
  if (idle <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must be positive");
  }
  if (absolute <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("absolute_lifetime must be positive");
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT for an empty user_id in DeleteForUser and ListForUser,
// which would otherwise address every anonymous session.
inline absl::Status CheckUserIdGiven(absl::string_view user_id) {
  if (user_id.empty()) {
    return absl::InvalidArgumentError("user_id must not be empty");
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT unless ListForUser's page size is positive.
inline absl::Status CheckPageLimit(int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("limit must be positive");
  return absl::OkStatus();
}

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SESSION_RECORD_H_
