// SessionStore: the one interface every storage backend implements.
//
// A store keeps SessionRecords keyed three ways: by token hash (the secret
// lookup key), by public id, and by user. It never sees a token or any
// plaintext user data: the caller hashes tokens and seals payloads first.
//
// Rules every backend keeps (tests/storage/conformance.cc checks them all):
//  - Time is read from the injected Clock, truncated to whole microseconds,
//    once the call is ordered against the other calls on the same session
//    (after its locks are taken), so that no write goes back in time: a
//    session's last_active_at never decreases, and once any call has found a
//    session expired, no later call finds it live.
//  - A record is live while Clock::Now() < ExpiresAt(). An expired record
//    behaves exactly like a missing one in every call, pruned or not.
//  - `version` is 1 on create and grows by one on every Update and Cycle.
//    A touch is not a write: it changes last_active_at only.
//  - Whenever a write makes a session belong to user U (Create, Update or
//    Cycle that sets U), and max_sessions_per_user > 0, U's other live
//    sessions are evicted, least recently active first, until at most
//    max_sessions_per_user remain, all in the same atomic step. The session
//    being written is never evicted.
//  - Every call is atomic and safe to make from many threads (and, for
//    shared backends, from many processes) at once.
//  - Errors: NOT_FOUND (no live session), ABORTED (expected_version
//    mismatch; nothing written), INVALID_ARGUMENT (bad arguments, below),
//    UNAVAILABLE (backend unreachable, timed out, or overloaded, including
//    retries of deadlocks exhausted; a write may or may not have happened),
//    INTERNAL (anything else). NOT_FOUND takes precedence over ABORTED and
//    ALREADY_EXISTS.
//  - ids and user_ids are valid UTF-8 without NUL bytes (IsStorableText):
//    INVALID_ARGUMENT on writes otherwise, and lookups by such a value find
//    nothing. Token hashes and payloads are any bytes.
//  - INVALID_ARGUMENT: Create with an empty id, a token_hash that is not
//    exactly 32 bytes, or a non-positive timeout; Update that sets a
//    non-positive timeout; Cycle whose new hash is not 32 bytes or equals
//    the old one; ListForUser with limit <= 0; ListForUser and DeleteForUser
//    with an empty user_id (which would address every anonymous session).
//    Lookups with a token hash of the wrong size simply find nothing.
//  - Expired is missing: Create and Cycle may reuse the id or token hash of
//    an expired session. Cycle to the hash of a live session is
//    ALREADY_EXISTS and changes nothing.
//  - Timeouts are kept at microsecond precision, like times.
//  - Per-user cap ties: among equally recently active sessions, the one
//    ListForUser lists last (the smallest id) is evicted first.
#ifndef SESSIOND_STORAGE_SESSION_STORE_H_
#define SESSIOND_STORAGE_SESSION_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/session_record.h"

namespace sessiond::storage {

// Settings that hold for the whole store.
struct StoreOptions {
  // Cap on live sessions per non-empty user_id; 0 means no cap.
  int max_sessions_per_user = 0;
};

// Replaces the mutable parts of a session (SessionStore::Update).
struct SessionUpdate {
  std::string user_id;
  std::string sealed_payload;
  // nullopt leaves the current value.
  std::optional<absl::Duration> idle_timeout;
  std::optional<absl::Duration> absolute_lifetime;
  // If set, the update happens only if the stored version equals it;
  // otherwise ABORTED and nothing is written.
  std::optional<int64_t> expected_version;
};

// INVALID_ARGUMENT unless `record` can be created: a non-empty id, id and
// user_id storable text, a 32-byte token hash, positive timeouts.
inline absl::Status CheckCreateArguments(const SessionRecord& record) {
  if (record.id.empty()) {
    return absl::InvalidArgumentError("session id must not be empty");
  }
  if (absl::Status s = CheckStorableText(record.id, "session id"); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckStorableText(record.user_id, "user_id"); !s.ok()) {
    return s;
  }
  if (record.token_hash.size() != kTokenHashSize) {
    return absl::InvalidArgumentError("token hash must be 32 bytes");
  }
  return CheckTimeouts(record.idle_timeout, record.absolute_lifetime);
}

// INVALID_ARGUMENT unless `update` can be applied: timeouts, where given,
// positive, and user_id storable text.
inline absl::Status CheckUpdateArguments(const SessionUpdate& update) {
  if (update.idle_timeout.has_value() &&
      *update.idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must be positive");
  }
  if (update.absolute_lifetime.has_value() &&
      *update.absolute_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("absolute_lifetime must be positive");
  }
  return CheckStorableText(update.user_id, "user_id");
}

// INVALID_ARGUMENT unless a Cycle can move a session to `new_token_hash`
// (32 bytes, not the old one) and, if given, to `user_id` (storable text).
inline absl::Status CheckCycleArguments(
    absl::string_view old_token_hash, absl::string_view new_token_hash,
    const std::optional<std::string>& user_id) {
  if (new_token_hash.size() != kTokenHashSize) {
    return absl::InvalidArgumentError("new token hash must be 32 bytes");
  }
  if (new_token_hash == old_token_hash) {
    return absl::InvalidArgumentError(
        "new token hash must differ from the old one");
  }
  if (user_id.has_value()) return CheckStorableText(*user_id, "user_id");
  return absl::OkStatus();
}

// The record an Update makes of `stored`, for backends that hold
// SessionRecords: ABORTED (nothing to write) if update.expected_version is
// set and is not stored.version; else the user and payload replaced, any
// timeouts given replaced (truncated to microseconds), last_active_at set
// to `last_active_at`, and the version one higher.
inline absl::StatusOr<SessionRecord> ApplyUpdate(SessionRecord stored,
                                                 const SessionUpdate& update,
                                                 absl::Time last_active_at) {
  if (update.expected_version.has_value() &&
      *update.expected_version != stored.version) {
    return absl::AbortedError(absl::StrCat("session version is ",
                                           stored.version, ", expected ",
                                           *update.expected_version));
  }
  stored.user_id = update.user_id;
  stored.sealed_payload = update.sealed_payload;
  if (update.idle_timeout.has_value()) {
    stored.idle_timeout = TruncateDurationToMicros(*update.idle_timeout);
  }
  if (update.absolute_lifetime.has_value()) {
    stored.absolute_lifetime =
        TruncateDurationToMicros(*update.absolute_lifetime);
  }
  stored.last_active_at = last_active_at;
  ++stored.version;
  return stored;
}

// Position in a ListForUser listing: the last record of the previous page.
struct ListCursor {
  absl::Time last_active_at;
  std::string id;
};

struct SessionPage {
  std::vector<SessionRecord> sessions;
  // Set when more live sessions follow this page.
  std::optional<ListCursor> next;
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;

  // "memory", "sqlite", "postgres", "valkey".
  virtual absl::string_view backend_name() const = 0;

  // Stores a new session. The caller fills id, token_hash, user_id,
  // sealed_payload, idle_timeout and absolute_lifetime (other fields are
  // ignored); the store sets
  // created_at = last_active_at = now and version = 1, applies the per-user
  // cap, and returns the stored record. ALREADY_EXISTS if the id or token
  // hash is taken.
  virtual absl::StatusOr<SessionRecord> Create(const SessionRecord& record) = 0;

  // The live session with this token hash, unchanged.
  virtual absl::StatusOr<SessionRecord> Load(absl::string_view token_hash) = 0;

  // Like Load, but first sets last_active_at = now if
  // now - last_active_at >= min_interval (a throttled touch). Returns the
  // record as stored after the touch. Never changes the version.
  virtual absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view token_hash, absl::Duration min_interval) = 0;

  // Replaces user_id (empty makes the session anonymous) and
  // sealed_payload (and the timeouts that are set) of the live session with
  // this token hash; sets last_active_at = now and
  // increments version. Applies the per-user cap if the user is non-empty.
  virtual absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                               const SessionUpdate& update) = 0;

  // Atomically moves the live session from old_token_hash to new_token_hash:
  // afterwards the old hash finds nothing. Keeps id, payload and created_at;
  // sets last_active_at = now, increments version and, if user_id is set,
  // replaces the user (applying the per-user cap).
  virtual absl::StatusOr<SessionRecord> Cycle(
      absl::string_view old_token_hash, absl::string_view new_token_hash,
      const std::optional<std::string>& user_id) = 0;

  // Each returns how many live sessions it removed (0 is not an error).
  virtual absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view token_hash) = 0;
  virtual absl::StatusOr<int64_t> DeleteById(absl::string_view id) = 0;
  // Removes every session of `user_id` except the one whose id is
  // `except_id` (empty: keep none).
  virtual absl::StatusOr<int64_t> DeleteForUser(
      absl::string_view user_id, absl::string_view except_id) = 0;

  // Up to `limit` (> 0) live sessions of `user_id`, ordered by
  // last_active_at descending, then id descending; starting strictly after
  // `after` when it is set.
  virtual absl::StatusOr<SessionPage> ListForUser(
      absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after) = 0;

  // Removes expired sessions; returns how many it removed.
  virtual absl::StatusOr<int64_t> PruneExpired() = 0;

  // OK when the backend answers.
  virtual absl::Status Ping() = 0;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SESSION_STORE_H_
