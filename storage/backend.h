// StorageBackend: what a storage backend implements beneath the SessionStore
// front (session_store.h), and the rules it builds records by.
//
// The front checks every argument, answers the calls whose outcome the
// arguments alone decide, and filters the codes a backend returns; a
// backend only carries out each call as one atomic step. Each method's
// arguments are those the front lets through (stated per method); the
// backend reads now from its Clock, truncated to whole microseconds
// (TruncateToMicros), once the call is ordered against the other calls on
// the same sessions (after taking its locks), and decides liveness by
// SessionRecord::IsLiveAt(now). A backend that cannot read the time after
// its locks (one whose atomic step runs on a server) keeps the same
// guarantees another way, and says how in its header.
//
// The records a call writes are those the functions below make: a backend
// that keeps SessionRecords calls them; one that cannot (server-side
// scripts) does the same, and the conformance suite checks that it does.
#ifndef SESSIOND_STORAGE_BACKEND_H_
#define SESSIOND_STORAGE_BACKEND_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/observer.h"
#include "storage/session_record.h"

namespace sessiond::storage {

class StorageBackend {
 public:
  virtual ~StorageBackend() = default;

  // "memory", "sqlite", "postgres", "valkey".
  virtual absl::string_view name() const = 0;

  // Every `tenant` below is a valid tenant name (IsValidTenantName); a call
  // finds, changes and removes only sessions of that tenant. Ids and token
  // hashes are unique in the store across tenants.

  // `fresh` has a valid tenant, a storable id and user_id, a 32-byte token
  // hash, and positive timeouts truncated to microseconds; its times and
  // version are the caller's and replaced by NewSession. ALREADY_EXISTS if
  // a live session of any tenant holds its id or token hash; otherwise
  // removes expired holders, stores NewSession(fresh, now), applies
  // limits.max_sessions_per_user, and returns the stored record.
  // RESOURCE_EXHAUSTED, nothing stored, if the backend is out of room.
  virtual absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh,
                                               const TenantLimits& limits) = 0;

  // `token_hash` is 32 bytes. The tenant's live session with it, or
  // NOT_FOUND.
  virtual absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                             absl::string_view token_hash) = 0;

  // As Load, but first sets last_active_at to now if
  // TouchDue(stored.last_active_at, now, min_interval). Returns the record
  // as stored.
  virtual absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view tenant, absl::string_view token_hash,
      absl::Duration min_interval) = 0;

  // `token_hash` is 32 bytes; `update`'s timeouts, if set, are positive and
  // truncated to microseconds. NOT_FOUND if the tenant has no live session
  // with the hash; else writes ApplyUpdate(stored, update, now) (ABORTED or
  // OUT_OF_RANGE, nothing written, as it says).
  virtual absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                               absl::string_view token_hash,
                                               const SessionUpdate& update) = 0;

  // Both hashes are 32 bytes and differ; `cycle.user_id`, if set, is
  // storable. NOT_FOUND if the tenant has no live session with
  // old_token_hash; else ABORTED on a version mismatch; else ALREADY_EXISTS
  // if a live session of any tenant has the new hash; else removes an
  // expired holder of the new hash, writes ApplyCycle(stored, cycle, now)
  // and, if cycle.user_id is set, applies limits.max_sessions_per_user.
  virtual absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                              absl::string_view old_token_hash,
                                              const SessionCycle& cycle,
                                              const TenantLimits& limits) = 0;

  // Each removes the tenant's sessions it names, expired or not, and
  // returns how many of the removed sessions were live. `token_hash` is 32
  // bytes; `id`, `user_id` (non-empty) and `except_id` (empty: keep none)
  // are storable.
  virtual absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view tenant, absl::string_view token_hash) = 0;
  virtual absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                             absl::string_view id) = 0;
  virtual absl::StatusOr<int64_t> DeleteForUser(
      absl::string_view tenant, absl::string_view user_id,
      absl::string_view except_id) = 0;

  // The first live sessions of the tenant's `user_id` (non-empty, storable)
  // in listing order (ListsBefore), strictly after `after` if it is set (its
  // id storable, its time whole microseconds): at most `count` (> 0), and
  // past the second only while the sealed payloads of those before total
  // at most `max_bytes` (ListHasRoom). So a listing cut short by bytes ends
  // with a session the budget has no room for, which tells the caller that
  // more follow, and a listing never holds much more than `max_bytes`.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) = 0;

  // How many live sessions the tenant has.
  virtual absl::StatusOr<int64_t> CountLive(absl::string_view tenant) = 0;

  // Removes expired sessions, of `tenant` only if it is set; returns how
  // many it removed.
  virtual absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) = 0;

  // OK when the backend answers.
  virtual absl::Status Ping() = 0;

  // Its connections now; cheap, never waits on the database.
  virtual PoolStats pool_stats() const { return {}; }
};

// Whether a ListForUser listing that holds `held` sessions, whose sealed
// payloads total `held_bytes`, takes one more (by bytes; `count` aside).
inline bool ListHasRoom(size_t held, int64_t held_bytes, int64_t max_bytes) {
  return held < 2 || held_bytes <= max_bytes;
}

// The record Create stores: `fresh` with created_at = last_active_at = now
// and version 1.
inline SessionRecord NewSession(SessionRecord fresh, absl::Time now) {
  fresh.created_at = now;
  fresh.last_active_at = now;
  fresh.version = 1;
  return fresh;
}

// The last_active_at a write at `now` gives a session last active at
// `stored`: never earlier than before, so that a clock that steps back, or
// a replica whose clock is behind, never moves it back.
inline absl::Time ActiveAt(absl::Time stored, absl::Time now) {
  return std::max(stored, now);
}

// Whether LoadAndTouch at `now` writes: at least `min_interval` since the
// last activity, and now later than it (a touch never moves it back, and
// one at the same instant would change nothing).
inline bool TouchDue(absl::Time last_active_at, absl::Time now,
                     absl::Duration min_interval) {
  return now > last_active_at && now - last_active_at >= min_interval;
}

// ABORTED unless `expected` is unset or is `stored`, the version a session
// has: the compare-and-set of Update.
inline absl::Status CheckExpectedVersion(
    int64_t stored, const std::optional<int64_t>& expected) {
  if (!expected.has_value() || *expected == stored) return absl::OkStatus();
  return absl::AbortedError(
      absl::StrCat("session version is ", stored, ", expected ", *expected));
}

// OUT_OF_RANGE if `update` sets an absolute lifetime that ends the session
// created at `created_at` at or before `now`: no update may return (or
// store) a session that is expired already. (The front turns it into the
// caller's FAILED_PRECONDITION; backends use no other OUT_OF_RANGE.)
inline absl::Status CheckLifetimeOutlivesNow(absl::Time created_at,
                                             const SessionUpdate& update,
                                             absl::Time now) {
  if (!update.absolute_lifetime.has_value() ||
      created_at + *update.absolute_lifetime > now) {
    return absl::OkStatus();
  }
  return absl::OutOfRangeError("absolute lifetime already over");
}

// The record an Update at `now` makes of `stored`: ABORTED (nothing to
// write) if update.expected_version is set and is not stored.version;
// OUT_OF_RANGE (nothing to write) as CheckLifetimeOutlivesNow says;
// else the payload and the timeouts given replaced, last_active_at =
// ActiveAt(stored, now), and the version one higher. The user stays.
inline absl::StatusOr<SessionRecord> ApplyUpdate(SessionRecord stored,
                                                 const SessionUpdate& update,
                                                 absl::Time now) {
  if (absl::Status s =
          CheckExpectedVersion(stored.version, update.expected_version);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckLifetimeOutlivesNow(stored.created_at, update, now);
      !s.ok()) {
    return s;
  }
  if (update.sealed_payload.has_value()) {
    stored.sealed_payload = *update.sealed_payload;
  }
  if (update.idle_timeout.has_value()) {
    stored.idle_timeout = *update.idle_timeout;
  }
  if (update.absolute_lifetime.has_value()) {
    stored.absolute_lifetime = *update.absolute_lifetime;
  }
  stored.last_active_at = ActiveAt(stored.last_active_at, now);
  ++stored.version;
  return stored;
}

// The record a Cycle at `now` makes of `stored`: ABORTED (nothing to write)
// if cycle.expected_version is set and is not stored.version; else the new
// token hash, the user and payload replaced where set, last_active_at =
// ActiveAt(stored, now), and the version one higher.
inline absl::StatusOr<SessionRecord> ApplyCycle(SessionRecord stored,
                                                const SessionCycle& cycle,
                                                absl::Time now) {
  if (absl::Status s =
          CheckExpectedVersion(stored.version, cycle.expected_version);
      !s.ok()) {
    return s;
  }
  stored.token_hash = cycle.new_token_hash;
  if (cycle.user_id.has_value()) stored.user_id = *cycle.user_id;
  if (cycle.sealed_payload.has_value()) {
    stored.sealed_payload = *cycle.sealed_payload;
  }
  stored.last_active_at = ActiveAt(stored.last_active_at, now);
  ++stored.version;
  return stored;
}

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_BACKEND_H_
