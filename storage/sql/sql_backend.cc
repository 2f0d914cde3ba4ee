#include "storage/sql/sql_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace sessiond::storage::sql {
namespace {

// Eviction for the per-user cap chooses its victims again when some changed
// before it could delete them, at most this many times in all.
constexpr int kMaxEvictRounds = 8;

absl::Status NotFound() {
  return absl::NotFoundError("no live session with this token hash");
}

// Stores what `result` holds in `out`; returns its status.
template <typename T>
absl::Status Keep(absl::StatusOr<T> result, T& out) {
  if (!result.ok()) return result.status();
  out = *std::move(result);
  return absl::OkStatus();
}

// `found` if it is live at `now`; NOT_FOUND otherwise.
absl::StatusOr<SessionRecord> LiveOrNotFound(std::optional<SessionRecord> found,
                                             absl::Time now) {
  if (!found.has_value() || !found->IsLiveAt(now)) return NotFound();
  return *std::move(found);
}

}  // namespace

SqlBackend::SqlBackend(const Clock* clock, int64_t prune_batch_size,
                       TimeSource time_source)
    : database_clock_(time_source == TimeSource::kDatabase
                          ? std::make_unique<DatabaseClock>(clock)
                          : nullptr),
      clock_(database_clock_ != nullptr ? database_clock_.get() : clock),
      prune_batch_size_(prune_batch_size) {}

absl::Status SqlBackend::MeasureDatabaseClock() {
  if (database_clock_ == nullptr) return absl::OkStatus();
  return RunCall("measure the clock", CallKind::kIdempotent,
                 [&](SqlSession& session) {
                   return session.Read([&](SqlTransaction& tx) {
                     return database_clock_->Measure([&] { return tx.Ping(); });
                   });
                 });
}

absl::Time SqlBackend::Now() const { return TruncateToMicros(clock_->Now()); }

absl::Status SqlBackend::RunTransaction(
    absl::string_view what,
    absl::FunctionRef<absl::Status(SqlTransaction&)> body) {
  return RunCall(what, CallKind::kWrite,
                 [&](SqlSession& session) { return session.Transact(body); });
}

namespace {

// Whether `limits` cap the sessions of `user_id`.
bool Capped(const TenantLimits& limits, absl::string_view user_id) {
  return limits.max_sessions_per_user > 0 && !user_id.empty();
}

}  // namespace

absl::Status SqlBackend::LockUserIfCapped(SqlTransaction& tx,
                                          const TenantLimits& limits,
                                          absl::string_view tenant,
                                          absl::string_view user_id) {
  if (!Capped(limits, user_id)) return absl::OkStatus();
  return tx.LockUser(tenant, user_id);
}

absl::Status SqlBackend::EvictOverCap(SqlTransaction& tx,
                                      const TenantLimits& limits,
                                      const SessionRecord& written,
                                      absl::Time now) const {
  if (!Capped(limits, written.user_id)) return absl::OkStatus();
  for (int round = 1;; ++round) {
    absl::StatusOr<int64_t> skipped =
        tx.EvictOverCap(written.tenant, written.user_id, now, written.id,
                        limits.max_sessions_per_user - 1);
    if (!skipped.ok()) return skipped.status();
    if (*skipped == 0) return absl::OkStatus();
    if (round == kMaxEvictRounds) {
      // The transaction is rolled back: nothing was written.
      return absl::UnavailableError(
          absl::StrCat(name(),
                       ": evict over per-user cap: the user's sessions kept "
                       "changing during ",
                       round, " attempts; nothing was written"));
    }
  }
}

absl::StatusOr<SessionRecord> SqlBackend::SelectLiveForUpdate(
    SqlTransaction& tx, absl::string_view tenant, absl::string_view token_hash,
    absl::Time* now) const {
  absl::StatusOr<std::optional<SessionRecord>> found =
      tx.SelectByHash(tenant, token_hash, RowLock::kUpdate);
  if (!found.ok()) return found.status();
  *now = Now();
  return LiveOrNotFound(*std::move(found), *now);
}

absl::StatusOr<SessionRecord> SqlBackend::Create(const SessionRecord& fresh,
                                                 const TenantLimits& limits) {
  SessionRecord stored;
  absl::Status status =
      RunTransaction("create", [&](SqlTransaction& tx) -> absl::Status {
        if (absl::Status s =
                LockUserIfCapped(tx, limits, fresh.tenant, fresh.user_id);
            !s.ok()) {
          return s;
        }
        const absl::Time now = Now();
        stored = NewSession(fresh, now);
        // Of any tenant: ids and token hashes are unique across tenants.
        if (absl::Status s =
                tx.DeleteExpiredConflicts(stored.id, stored.token_hash, now);
            !s.ok()) {
          return s;
        }
        if (absl::Status s = tx.Insert(stored); !s.ok()) {
          if (absl::IsAlreadyExists(s)) {
            return absl::AlreadyExistsError(
                "a live session with this id or token hash already exists");
          }
          return s;
        }
        return EvictOverCap(tx, limits, stored, now);
      });
  if (!status.ok()) return status;
  return stored;
}

absl::StatusOr<SessionRecord> SqlBackend::Load(absl::string_view tenant,
                                               absl::string_view token_hash) {
  std::optional<SessionRecord> found;
  absl::Time now;
  absl::Status status =
      RunCall("load", CallKind::kIdempotent, [&](SqlSession& session) {
        // The common case: one read, no lock.
        absl::Status read = session.Read([&](SqlTransaction& tx) {
          now = Now();
          return Keep(tx.SelectByHash(tenant, token_hash, RowLock::kNone),
                      found);
        });
        if (!read.ok() || !found.has_value() || found->IsLiveAt(now)) {
          return read;
        }
        // Expired in a snapshot is not final: a write that found the
        // session live may be committing it back to life. Decide once any
        // such writer is done. Rare: only expired, unpruned sessions get
        // here.
        return session.Transact([&](SqlTransaction& tx) {
          absl::Status s =
              Keep(tx.SelectByHash(tenant, token_hash, RowLock::kShare), found);
          now = Now();
          return s;
        });
      });
  if (!status.ok()) return status;
  return LiveOrNotFound(std::move(found), now);
}

absl::StatusOr<SessionRecord> SqlBackend::LoadAndTouch(
    absl::string_view tenant, absl::string_view token_hash,
    absl::Duration min_interval) {
  std::optional<SessionRecord> found;
  absl::Time now;
  // A touch only moves last_active_at forward to now: repeating it is
  // harmless.
  absl::Status status = RunCall(
      "load and touch", CallKind::kIdempotent, [&](SqlSession& session) {
        // Most calls fall inside the interval: one read, no lock.
        absl::Status read = session.Read([&](SqlTransaction& tx) {
          now = Now();
          return Keep(tx.SelectByHash(tenant, token_hash, RowLock::kNone),
                      found);
        });
        if (!read.ok() || !found.has_value()) return read;
        if (found->IsLiveAt(now) &&
            !TouchDue(found->last_active_at, now, min_interval)) {
          return absl::OkStatus();
        }
        // To touch, or expired in this snapshot (not final, see Load):
        // both are decided holding the row.
        return session.Transact([&](SqlTransaction& tx) -> absl::Status {
          if (absl::Status s = Keep(
                  tx.SelectByHash(tenant, token_hash, RowLock::kUpdate), found);
              !s.ok()) {
            return s;
          }
          now = Now();
          if (!found.has_value() || !found->IsLiveAt(now)) return NotFound();
          if (!TouchDue(found->last_active_at, now, min_interval)) {
            return absl::OkStatus();
          }
          found->last_active_at = now;
          return tx.Touch(*found);
        });
      });
  if (!status.ok()) return status;
  return LiveOrNotFound(std::move(found), now);
}

absl::StatusOr<SessionRecord> SqlBackend::Update(absl::string_view tenant,
                                                 absl::string_view token_hash,
                                                 const SessionUpdate& update) {
  SessionRecord written;
  absl::Status status =
      RunTransaction("update", [&](SqlTransaction& tx) -> absl::Status {
        // No user lock and no eviction: an update never changes the user.
        absl::Time now;
        absl::StatusOr<SessionRecord> stored =
            SelectLiveForUpdate(tx, tenant, token_hash, &now);
        if (!stored.ok()) return stored.status();
        const int64_t old_version = stored->version;
        if (absl::Status s =
                Keep(ApplyUpdate(*std::move(stored), update, now), written);
            !s.ok()) {
          return s;
        }
        return tx.Rewrite(written, old_version);
      });
  if (!status.ok()) return status;
  return written;
}

absl::StatusOr<SessionRecord> SqlBackend::Cycle(
    absl::string_view tenant, absl::string_view old_token_hash,
    const SessionCycle& cycle, const TenantLimits& limits) {
  SessionRecord written;
  absl::Status status =
      RunTransaction("cycle", [&](SqlTransaction& tx) -> absl::Status {
        if (cycle.user_id.has_value()) {
          if (absl::Status s =
                  LockUserIfCapped(tx, limits, tenant, *cycle.user_id);
              !s.ok()) {
            return s;
          }
        }
        // Locked: of concurrent Cycles of one session exactly one finds it
        // under the old hash.
        absl::Time now;
        absl::StatusOr<SessionRecord> stored =
            SelectLiveForUpdate(tx, tenant, old_token_hash, &now);
        if (!stored.ok()) return stored.status();  // NOT_FOUND first
        const int64_t old_version = stored->version;
        // Then ABORTED, before anything is written.
        if (absl::Status s =
                Keep(ApplyCycle(*std::move(stored), cycle, now), written);
            !s.ok()) {
          return s;
        }
        // Of any tenant: an expired holder of the new hash must not block
        // it, and a live one (of any tenant) makes the rewrite
        // ALREADY_EXISTS.
        if (absl::Status s = tx.DeleteExpiredByHash(cycle.new_token_hash, now);
            !s.ok()) {
          return s;
        }
        if (absl::Status s = tx.Rewrite(written, old_version); !s.ok()) {
          if (absl::IsAlreadyExists(s)) {
            return absl::AlreadyExistsError(
                "new token hash belongs to another live session");
          }
          return s;
        }
        if (!cycle.user_id.has_value()) return absl::OkStatus();
        return EvictOverCap(tx, limits, written, now);
      });
  if (!status.ok()) return status;
  return written;
}

absl::StatusOr<int64_t> SqlBackend::DeleteCountingLive(
    absl::string_view what,
    absl::FunctionRef<absl::StatusOr<std::vector<absl::Time>>(SqlTransaction&)>
        remove) {
  int64_t live = 0;
  absl::Status status =
      RunTransaction(what, [&](SqlTransaction& tx) -> absl::Status {
        absl::StatusOr<std::vector<absl::Time>> expiries = remove(tx);
        if (!expiries.ok()) return expiries.status();
        const absl::Time now = Now();
        live = 0;
        for (absl::Time expires_at : *expiries) {
          if (now < expires_at) ++live;
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return live;
}

absl::StatusOr<int64_t> SqlBackend::DeleteByTokenHash(
    absl::string_view tenant, absl::string_view token_hash) {
  return DeleteCountingLive("delete by token hash", [&](SqlTransaction& tx) {
    return tx.DeleteByHash(tenant, token_hash);
  });
}

absl::StatusOr<int64_t> SqlBackend::DeleteById(absl::string_view tenant,
                                               absl::string_view id) {
  return DeleteCountingLive("delete by id", [&](SqlTransaction& tx) {
    return tx.DeleteById(tenant, id);
  });
}

absl::StatusOr<int64_t> SqlBackend::DeleteForUser(absl::string_view tenant,
                                                  absl::string_view user_id,
                                                  absl::string_view except_id) {
  return DeleteCountingLive("delete for user", [&](SqlTransaction& tx) {
    return tx.DeleteForUser(tenant, user_id, except_id);
  });
}

absl::StatusOr<std::vector<SessionRecord>> SqlBackend::ListForUser(
    absl::string_view tenant, absl::string_view user_id, int count,
    int64_t max_bytes, const std::optional<ListCursor>& after) {
  std::vector<SessionRecord> records;
  absl::Status status =
      RunCall("list for user", CallKind::kIdempotent, [&](SqlSession& session) {
        return session.Read([&](SqlTransaction& tx) {
          return Keep(
              tx.ListForUser(tenant, user_id, Now(), count, max_bytes, after),
              records);
        });
      });
  if (!status.ok()) return status;
  return records;
}

absl::StatusOr<int64_t> SqlBackend::CountLive(absl::string_view tenant) {
  int64_t count = 0;
  absl::Status status =
      RunCall("count live", CallKind::kIdempotent, [&](SqlSession& session) {
        return session.Read([&](SqlTransaction& tx) {
          return Keep(tx.CountLive(tenant, Now()), count);
        });
      });
  if (!status.ok()) return status;
  return count;
}

absl::StatusOr<int64_t> SqlBackend::PruneExpired(
    std::optional<absl::string_view> tenant) {
  if (absl::Status s = MeasureDatabaseClock(); !s.ok()) return s;
  int64_t total = 0;
  while (true) {
    // One short write per batch, each by its own now; other writers get in
    // between.
    int64_t pruned = 0;
    absl::Status status =
        RunCall("prune expired", CallKind::kWrite, [&](SqlSession& session) {
          return session.WriteAlone([&](SqlTransaction& tx) {
            return Keep(tx.PruneBatch(tenant, Now(), prune_batch_size_),
                        pruned);
          });
        });
    if (!status.ok()) return status;
    total += pruned;
    if (pruned < prune_batch_size_) return total;
  }
}

absl::Status SqlBackend::Ping() {
  if (database_clock_ != nullptr) return MeasureDatabaseClock();
  return RunCall("ping", CallKind::kIdempotent, [](SqlSession& session) {
    return session.Read([](SqlTransaction& tx) { return tx.Ping().status(); });
  });
}

}  // namespace sessiond::storage::sql
