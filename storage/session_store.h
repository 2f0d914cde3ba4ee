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
//  - Tenants: every session belongs to one tenant, and every call names
//    one. A call finds, changes, counts and removes only that tenant's
//    sessions: to another tenant a session is exactly like a missing one.
//    User ids are per tenant (user U of tenant A is not user U of B). Ids
//    and token hashes are unique across tenants (both are random), so a
//    Create or Cycle onto one held by a live session of another tenant is
//    ALREADY_EXISTS. A tenant name that IsValidTenantName rejects is
//    INVALID_ARGUMENT in every call.
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
//  - Whenever a write makes a session belong to user U (Create, or Cycle
//    that sets U), and the TenantLimits it is given have
//    max_sessions_per_user > 0, U's other live sessions are evicted, least
//    recently active first, until at most max_sessions_per_user remain, all
//    in the same atomic step. The session being written is never evicted.
//    Update never changes the user.
//  - Create is RESOURCE_EXHAUSTED, and writes nothing, when the tenant
//    already has max_live_sessions (> 0) live sessions. The count it checks
//    is at most StoreOptions::live_count_max_age old, plus the creates and
//    deletes made through this store since it was read; so with several
//    processes, or sessions expiring meanwhile, the cap holds within what
//    they did in that time.
//  - Every call is atomic and safe to make from many threads (and, for
//    shared backends, from many processes) at once.
//  - Errors: NOT_FOUND (no live session), ABORTED (expected_version
//    mismatch; nothing written), INVALID_ARGUMENT (bad arguments, below),
//    UNAVAILABLE (backend unreachable, timed out, or overloaded, including
//    retries of deadlocks exhausted; a write may or may not have happened),
//    INTERNAL (anything else). NOT_FOUND takes precedence over ABORTED, and
//    ABORTED over ALREADY_EXISTS. Each call returns only the codes its
//    comment names besides INVALID_ARGUMENT, UNAVAILABLE and INTERNAL:
//    ABORTED only from Update and Cycle, ALREADY_EXISTS only from Create
//    and Cycle, RESOURCE_EXHAUSTED only from Create, Update and Cycle,
//    NOT_FOUND only from the calls on one session by token hash; any other
//    code a backend gives becomes INTERNAL.
//  - ids and user_ids are valid UTF-8 without NUL bytes (IsStorableText):
//    INVALID_ARGUMENT on writes otherwise, and lookups by such a value find
//    nothing. Token hashes and payloads are any bytes.
//  - INVALID_ARGUMENT: any call with an invalid tenant name; Create with an
//    empty id, a token_hash that is not
//    exactly 32 bytes, or a non-positive timeout; Update that sets a
//    non-positive timeout; Cycle whose new hash is not 32 bytes or equals
//    the old one; ListForUser with limit <= 0 or max_bytes <= 0, or after
//    a cursor whose id is not storable text (no page ever ends at one);
//    ListForUser and DeleteForUser with an empty user_id (which would
//    address every anonymous session). Lookups with a token hash of the
//    wrong size simply find nothing. INVALID_ARGUMENT takes precedence over
//    every other code.
//  - Expired is missing: Create and Cycle may reuse the id or token hash of
//    an expired session. Cycle to the hash of a live session is
//    ALREADY_EXISTS and changes nothing.
//  - Timeouts are kept at microsecond precision, like times.
//  - Per-user cap ties: among equally recently active sessions, the one
//    ListForUser lists last (the smallest id) is evicted first.
#ifndef SESSIOND_STORAGE_SESSION_STORE_H_
#define SESSIOND_STORAGE_SESSION_STORE_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
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
  // INVALID_ARGUMENT for a null clock or a negative live_count_max_age;
  // otherwise the front over what `open_backend` returns (or its error).
  // Backends' Open functions call this; `clock` must outlive the store.
  static absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const Clock* clock, const StoreOptions& options,
      absl::FunctionRef<absl::StatusOr<std::unique_ptr<StorageBackend>>()>
          open_backend);

  SessionStore(const Clock* clock, const StoreOptions& options,
               std::unique_ptr<StorageBackend> backend);

  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  // "memory", "sqlite", "postgres", "valkey".
  absl::string_view backend_name() const { return backend_->name(); }

  // Stores a new session. The caller fills tenant, id, token_hash,
  // user_id, sealed_payload, idle_timeout and absolute_lifetime (other
  // fields are ignored); the store sets created_at = last_active_at = now
  // and version = 1, applies the per-user cap, and returns the stored
  // record. ALREADY_EXISTS if the id or token hash is taken;
  // RESOURCE_EXHAUSTED if the tenant is at limits.max_live_sessions, or the
  // backend is out of room (the memory backend's max_bytes).
  absl::StatusOr<SessionRecord> Create(const SessionRecord& record,
                                       const TenantLimits& limits);

  // The tenant's live session with this token hash, unchanged; NOT_FOUND
  // if none.
  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash);

  // Like Load, but first sets last_active_at = now if
  // now - last_active_at >= min_interval (a throttled touch) and now is
  // later than last_active_at. Returns the record as stored after the
  // touch. Never changes the version.
  absl::StatusOr<SessionRecord> LoadAndTouch(absl::string_view tenant,
                                             absl::string_view token_hash,
                                             absl::Duration min_interval);

  // Replaces the sealed payload and the timeouts that `update` sets of the
  // tenant's live session with this token hash; sets last_active_at to now
  // (never earlier than it was) and increments version. Never changes the
  // user. NOT_FOUND if no live session has the hash; ABORTED on an
  // expected_version mismatch; FAILED_PRECONDITION, nothing written, if the
  // absolute lifetime set would end the session at or before now;
  // RESOURCE_EXHAUSTED, nothing written, if a larger payload finds the
  // backend out of room.
  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update);

  // Atomically moves the tenant's live session from old_token_hash to
  // cycle.new_token_hash: afterwards the old hash finds nothing. Keeps id
  // and created_at; replaces the user (applying the per-user cap) and the
  // payload where `cycle` sets them; sets last_active_at to now (never
  // earlier than it was) and increments version. NOT_FOUND if no live
  // session has the old hash; ABORTED on an expected_version mismatch;
  // ALREADY_EXISTS if a live one has the new; RESOURCE_EXHAUSTED, nothing
  // written, if a larger payload finds the backend out of room.
  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits);

  // Each returns how many live sessions it removed (0 is not an error).
  absl::StatusOr<int64_t> DeleteByTokenHash(absl::string_view tenant,
                                            absl::string_view token_hash);
  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id);
  // Removes every session of `user_id` except the one whose id is
  // `except_id` (empty: keep none).
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id);

  // Up to `limit` (> 0) live sessions of the tenant's `user_id`, ordered by
  // last_active_at descending, then id descending; starting strictly after
  // `after` when it is set. The page also stops before its sealed payloads
  // would total more than `max_bytes`, but always holds one session if any
  // follow; `next` is set exactly when more follow. The backend never reads
  // much more than the page it returns.
  absl::StatusOr<SessionPage> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after,
      int64_t max_bytes = std::numeric_limits<int64_t>::max());

  // How many live sessions the tenant has, read now.
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant);

  // Removes expired sessions of one tenant, or of all; returns how many it
  // removed.
  absl::StatusOr<int64_t> PruneExpired(absl::string_view tenant);
  absl::StatusOr<int64_t> PruneAllExpired();

  // OK when the backend answers.
  absl::Status Ping();

  // The backend's connections now (observer.h); never waits.
  PoolStats pool_stats() const { return backend_->pool_stats(); }

 private:
  // What Create knows of a tenant's live sessions.
  struct LiveCount {
    int64_t count = 0;
    absl::Time read_at;
    // Since read_at, evictions (which the backends do not count) may have
    // removed sessions that `count` still holds.
    bool may_overcount = false;
  };

  // RESOURCE_EXHAUSTED if the tenant is at `cap` by its LiveCount (read
  // anew when older than live_count_max_age, or before a refusal when it
  // may overcount).
  absl::Status CheckLiveCap(absl::string_view tenant, int64_t cap);
  // Adds `delta` to the tenant's LiveCount, if one is kept; with
  // `may_have_evicted`, marks it as possibly over the true count.
  void AdjustLiveCount(absl::string_view tenant, int64_t delta,
                       bool may_have_evicted = false);

  const Clock* const clock_;
  const StoreOptions options_;
  const std::unique_ptr<StorageBackend> backend_;
  absl::Mutex live_counts_mu_;
  absl::flat_hash_map<std::string, LiveCount> live_counts_
      ABSL_GUARDED_BY(live_counts_mu_);
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SESSION_STORE_H_
