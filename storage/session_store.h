// SessionStore: the storage contract, carried out once. The front below
// checks arguments, answers what they alone decide, and keeps each call to
// the codes listed here; a StorageBackend (backend.h) beneath it does each
// call as one atomic step.
//
// A store keeps SessionRecords keyed three ways: by token hash (the secret
// lookup key), by public id, and by user. It never sees a token or any
// plaintext user data: the caller hashes tokens and seals payloads first.
//
// Rules every backend keeps (tests/storage/conformance.cc checks them all):
//  - Time is read from the injected Clock, truncated to whole microseconds,
//    once the call is ordered against the other calls on the same session
//    (after its locks are taken), so that no write goes back in time: a
//    session's last_active_at never decreases (not even when the clock
//    steps back, or another replica's clock is behind), and once any call
//    has found a session expired, no later call finds it live.
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
//    ALREADY_EXISTS. Each call returns only the codes its comment names
//    besides INVALID_ARGUMENT, UNAVAILABLE and INTERNAL: ABORTED only from
//    Update, ALREADY_EXISTS only from Create and Cycle, NOT_FOUND only from
//    the calls on one session by token hash; any other code a backend gives
//    becomes INTERNAL.
//  - ids and user_ids are valid UTF-8 without NUL bytes (IsStorableText):
//    INVALID_ARGUMENT on writes otherwise, and lookups by such a value find
//    nothing. Token hashes and payloads are any bytes.
//  - INVALID_ARGUMENT: Create with an empty id, a token_hash that is not
//    exactly 32 bytes, or a non-positive timeout; Update that sets a
//    non-positive timeout; Cycle whose new hash is not 32 bytes or equals
//    the old one; ListForUser with limit <= 0, or after a cursor whose id
//    is not storable text (no page ever ends at one); ListForUser and
//    DeleteForUser with an empty user_id (which would address every
//    anonymous session). Lookups with a token hash of the wrong size simply
//    find nothing. INVALID_ARGUMENT takes precedence over every other code.
//  - Expired is missing: Create and Cycle may reuse the id or token hash of
//    an expired session. Cycle to the hash of a live session is
//    ALREADY_EXISTS and changes nothing.
//  - Timeouts are kept at microsecond precision, like times.
//  - Per-user cap ties: among equally recently active sessions, the one
//    ListForUser lists last (the smallest id) is evicted first.
#ifndef SESSIOND_STORAGE_SESSION_STORE_H_
#define SESSIOND_STORAGE_SESSION_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/backend.h"
#include "storage/clock.h"
#include "storage/session_record.h"

namespace sessiond::storage {

struct SessionPage {
  std::vector<SessionRecord> sessions;
  // Set when more live sessions follow this page.
  std::optional<ListCursor> next;
};

class SessionStore final {
 public:
  // INVALID_ARGUMENT for a null clock or a negative max_sessions_per_user;
  // otherwise the front over what `open_backend` returns (or its error).
  // Backends' Open functions call this; `clock` must outlive the store.
  static absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const Clock* clock, const StoreOptions& options,
      absl::FunctionRef<absl::StatusOr<std::unique_ptr<StorageBackend>>()>
          open_backend);

  explicit SessionStore(std::unique_ptr<StorageBackend> backend);

  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  // "memory", "sqlite", "postgres", "valkey".
  absl::string_view backend_name() const { return backend_->name(); }

  // Stores a new session. The caller fills id, token_hash, user_id,
  // sealed_payload, idle_timeout and absolute_lifetime (other fields are
  // ignored); the store sets
  // created_at = last_active_at = now and version = 1, applies the per-user
  // cap, and returns the stored record. ALREADY_EXISTS if the id or token
  // hash is taken.
  absl::StatusOr<SessionRecord> Create(const SessionRecord& record);

  // The live session with this token hash, unchanged; NOT_FOUND if none.
  absl::StatusOr<SessionRecord> Load(absl::string_view token_hash);

  // Like Load, but first sets last_active_at = now if
  // now - last_active_at >= min_interval (a throttled touch) and now is
  // later than last_active_at. Returns the record as stored after the
  // touch. Never changes the version.
  absl::StatusOr<SessionRecord> LoadAndTouch(absl::string_view token_hash,
                                             absl::Duration min_interval);

  // Replaces user_id (empty makes the session anonymous) and
  // sealed_payload (and the timeouts that are set) of the live session with
  // this token hash; sets last_active_at to now (never earlier than it was)
  // and increments version.
  // Applies the per-user cap if the user is non-empty. NOT_FOUND if no
  // live session has the hash; ABORTED on an expected_version mismatch.
  absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                       const SessionUpdate& update);

  // Atomically moves the live session from old_token_hash to new_token_hash:
  // afterwards the old hash finds nothing. Keeps id, payload and created_at;
  // sets last_active_at to now (never earlier than it was), increments
  // version and, if user_id is set,
  // replaces the user (applying the per-user cap). NOT_FOUND if no live
  // session has the old hash; ALREADY_EXISTS if a live one has the new.
  absl::StatusOr<SessionRecord> Cycle(
      absl::string_view old_token_hash, absl::string_view new_token_hash,
      const std::optional<std::string>& user_id);

  // Each returns how many live sessions it removed (0 is not an error).
  absl::StatusOr<int64_t> DeleteByTokenHash(absl::string_view token_hash);
  absl::StatusOr<int64_t> DeleteById(absl::string_view id);
  // Removes every session of `user_id` except the one whose id is
  // `except_id` (empty: keep none).
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view user_id,
                                        absl::string_view except_id);

  // Up to `limit` (> 0) live sessions of `user_id`, ordered by
  // last_active_at descending, then id descending; starting strictly after
  // `after` when it is set.
  absl::StatusOr<SessionPage> ListForUser(
      absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after);

  // Removes expired sessions; returns how many it removed.
  absl::StatusOr<int64_t> PruneExpired();

  // OK when the backend answers.
  absl::Status Ping();

 private:
  const std::unique_ptr<StorageBackend> backend_;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SESSION_STORE_H_
