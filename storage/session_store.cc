#include "storage/session_store.h"

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/internal/observed_backend.h"

namespace sessiond::storage {
namespace {

using absl::StatusCode;

absl::Status NotFound() {
  return absl::NotFoundError("no live session with this token hash");
}

// The codes every call may return besides its own (session_store.h).
constexpr StatusCode kAlwaysAllowed[] = {
    StatusCode::kOk, StatusCode::kInvalidArgument, StatusCode::kUnavailable,
    StatusCode::kInternal};

// `status` if its code is one that `call` may return (those of
// kAlwaysAllowed and `own`); otherwise INTERNAL naming the code and keeping
// the message, so that no code reaches a caller with a meaning the contract
// does not give it.
absl::Status Allowed(const StorageBackend& backend, absl::string_view call,
                     absl::Status status,
                     std::initializer_list<StatusCode> own) {
  for (StatusCode code : kAlwaysAllowed) {
    if (status.code() == code) return status;
  }
  for (StatusCode code : own) {
    // One wording for "no live session", whichever backend found none.
    if (code == StatusCode::kNotFound && absl::IsNotFound(status)) {
      return NotFound();
    }
    if (status.code() == code) return status;
  }
  return absl::InternalError(absl::StrCat(
      backend.name(), ": ", call, ": ", absl::StatusCodeToString(status.code()),
      ": ", status.message()));
}

template <typename T>
absl::StatusOr<T> Allowed(const StorageBackend& backend, absl::string_view call,
                          absl::StatusOr<T> result,
                          std::initializer_list<StatusCode> own) {
  if (result.ok()) return result;
  return Allowed(backend, call, std::move(result).status(), own);
}

// INVALID_ARGUMENT naming `what` unless IsStorableText(value).
absl::Status CheckStorableText(absl::string_view value,
                               absl::string_view what) {
  if (IsStorableText(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be valid UTF-8 without NUL bytes"));
}

// Timeouts are kept in whole microseconds, so one must be at least 1 µs.
absl::Status CheckPositive(absl::Duration d, absl::string_view what) {
  if (TruncateDurationToMicros(d) > absl::ZeroDuration()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be at least 1 microsecond"));
}

absl::Status CheckTenant(absl::string_view tenant) {
  if (IsValidTenantName(tenant)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "tenant must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
}

absl::Status CheckLimits(const TenantLimits& limits) {
  if (limits.max_sessions_per_user < 0 || limits.max_live_sessions < 0) {
    return absl::InvalidArgumentError("tenant limits must not be negative");
  }
  return absl::OkStatus();
}

absl::Status CheckCreateArguments(const SessionRecord& record,
                                  const TenantLimits& limits) {
  if (absl::Status s = CheckTenant(record.tenant); !s.ok()) return s;
  if (absl::Status s = CheckLimits(limits); !s.ok()) return s;
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
  if (absl::Status s = CheckPositive(record.idle_timeout, "idle_timeout");
      !s.ok()) {
    return s;
  }
  return CheckPositive(record.absolute_lifetime, "absolute_lifetime");
}

absl::Status CheckUpdateArguments(const SessionUpdate& update) {
  if (update.idle_timeout.has_value()) {
    if (absl::Status s = CheckPositive(*update.idle_timeout, "idle_timeout");
        !s.ok()) {
      return s;
    }
  }
  if (update.absolute_lifetime.has_value()) {
    return CheckPositive(*update.absolute_lifetime, "absolute_lifetime");
  }
  return absl::OkStatus();
}

absl::Status CheckCycleArguments(absl::string_view old_token_hash,
                                 const SessionCycle& cycle,
                                 const TenantLimits& limits) {
  if (absl::Status s = CheckLimits(limits); !s.ok()) return s;
  if (cycle.new_token_hash.size() != kTokenHashSize) {
    return absl::InvalidArgumentError("new token hash must be 32 bytes");
  }
  if (cycle.new_token_hash == old_token_hash) {
    return absl::InvalidArgumentError(
        "new token hash must differ from the old one");
  }
  if (cycle.user_id.has_value()) {
    return CheckStorableText(*cycle.user_id, "user_id");
  }
  return absl::OkStatus();
}

std::optional<absl::Duration> Truncated(
    const std::optional<absl::Duration>& d) {
  if (!d.has_value()) return d;
  return TruncateDurationToMicros(*d);
}

// DeleteForUser and ListForUser address one user: an empty user_id would
// address every anonymous session.
absl::Status CheckUserIdGiven(absl::string_view user_id) {
  if (user_id.empty()) {
    return absl::InvalidArgumentError("user_id must not be empty");
  }
  return absl::OkStatus();
}

// A backend that lists more than StorageBackend::ListForUser allows has
// read what the bound on its reads was meant to keep out.
absl::Status CheckListingWithin(const std::vector<SessionRecord>& listed,
                                int count, int64_t max_bytes) {
  int64_t held_bytes = 0;
  for (size_t held = 0; held < listed.size(); ++held) {
    if (held == static_cast<size_t>(count) ||
        !ListHasRoom(held, held_bytes, max_bytes)) {
      return absl::InternalError(
          "storage: list for user: the backend listed past its bound");
    }
    held_bytes += static_cast<int64_t>(listed[held].sealed_payload.size());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> SessionStore::Open(
    const Clock* clock, const StoreOptions& options,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<StorageBackend>>()>
        open_backend) {
  if (clock == nullptr) {
    return absl::InvalidArgumentError("storage: clock must not be null");
  }
  if (options.live_count_max_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "storage: live_count_max_age must not be negative");
  }
  absl::StatusOr<std::unique_ptr<StorageBackend>> backend = open_backend();
  if (!backend.ok()) return backend.status();
  return std::make_unique<SessionStore>(clock, options, *std::move(backend));
}

SessionStore::SessionStore(const Clock* clock, const StoreOptions& options,
                           std::unique_ptr<StorageBackend> backend)
    : clock_(clock),
      options_(options),
      backend_(options.observer == nullptr
                   ? std::move(backend)
                   : internal::Observe(std::move(backend), options.observer)) {}

absl::StatusOr<SessionRecord> SessionStore::Create(const SessionRecord& record,
                                                   const TenantLimits& limits) {
  if (absl::Status s = CheckCreateArguments(record, limits); !s.ok()) {
    return s;
  }
  if (limits.max_live_sessions > 0) {
    if (absl::Status s = CheckLiveCap(record.tenant, limits.max_live_sessions);
        !s.ok()) {
      return s;
    }
  }
  // Backends ignore the fields NewSession sets; only the timeouts need
  // normalizing, and most callers pass whole microseconds already.
  const absl::Duration idle = TruncateDurationToMicros(record.idle_timeout);
  const absl::Duration lifetime =
      TruncateDurationToMicros(record.absolute_lifetime);
  absl::StatusOr<SessionRecord> created;
  if (idle == record.idle_timeout && lifetime == record.absolute_lifetime) {
    created = backend_->Create(record, limits);
  } else {
    SessionRecord fresh = record;
    fresh.idle_timeout = idle;
    fresh.absolute_lifetime = lifetime;
    created = backend_->Create(fresh, limits);
  }
  if (created.ok()) {
    // A capped create may also have evicted some of the user's sessions.
    AdjustLiveCount(
        record.tenant, 1,
        limits.max_sessions_per_user > 0 && !record.user_id.empty());
  }
  return Allowed(*backend_, "create", std::move(created),
                 {StatusCode::kAlreadyExists, StatusCode::kResourceExhausted});
}

absl::StatusOr<SessionRecord> SessionStore::Load(absl::string_view tenant,
                                                 absl::string_view token_hash) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (token_hash.size() != kTokenHashSize) return NotFound();
  return Allowed(*backend_, "load", backend_->Load(tenant, token_hash),
                 {StatusCode::kNotFound});
}

absl::StatusOr<SessionRecord> SessionStore::LoadAndTouch(
    absl::string_view tenant, absl::string_view token_hash,
    absl::Duration min_interval) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (token_hash.size() != kTokenHashSize) return NotFound();
  return Allowed(*backend_, "load and touch",
                 backend_->LoadAndTouch(tenant, token_hash, min_interval),
                 {StatusCode::kNotFound});
}

absl::StatusOr<SessionRecord> SessionStore::Update(
    absl::string_view tenant, absl::string_view token_hash,
    const SessionUpdate& update) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckUpdateArguments(update); !s.ok()) return s;
  if (token_hash.size() != kTokenHashSize) return NotFound();
  const std::optional<absl::Duration> idle = Truncated(update.idle_timeout);
  const std::optional<absl::Duration> lifetime =
      Truncated(update.absolute_lifetime);
  absl::StatusOr<SessionRecord> updated;
  if (idle == update.idle_timeout && lifetime == update.absolute_lifetime) {
    updated = backend_->Update(tenant, token_hash, update);
  } else {
    SessionUpdate normalized = update;
    normalized.idle_timeout = idle;
    normalized.absolute_lifetime = lifetime;
    updated = backend_->Update(tenant, token_hash, normalized);
  }
  if (absl::IsOutOfRange(updated.status())) {
    return absl::FailedPreconditionError(
        "absolute_lifetime: shorter than the session's age, so it would end "
        "the session now (Delete ends a session)");
  }
  return Allowed(*backend_, "update", std::move(updated),
                 {StatusCode::kNotFound, StatusCode::kAborted,
                  StatusCode::kResourceExhausted});
}

absl::StatusOr<SessionRecord> SessionStore::Cycle(
    absl::string_view tenant, absl::string_view old_token_hash,
    const SessionCycle& cycle, const TenantLimits& limits) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckCycleArguments(old_token_hash, cycle, limits);
      !s.ok()) {
    return s;
  }
  if (old_token_hash.size() != kTokenHashSize) return NotFound();
  absl::StatusOr<SessionRecord> cycled =
      backend_->Cycle(tenant, old_token_hash, cycle, limits);
  // Moving a session to a capped user may evict that user's oldest ones.
  if (cycled.ok() && cycle.user_id.has_value() &&
      limits.max_sessions_per_user > 0) {
    AdjustLiveCount(tenant, 0, /*may_have_evicted=*/true);
  }
  return Allowed(*backend_, "cycle", std::move(cycled),
                 {StatusCode::kNotFound, StatusCode::kAborted,
                  StatusCode::kAlreadyExists, StatusCode::kResourceExhausted});
}

absl::StatusOr<int64_t> SessionStore::DeleteByTokenHash(
    absl::string_view tenant, absl::string_view token_hash) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (token_hash.size() != kTokenHashSize) return 0;
  absl::StatusOr<int64_t> removed =
      Allowed(*backend_, "delete by token hash",
              backend_->DeleteByTokenHash(tenant, token_hash), {});
  if (removed.ok()) AdjustLiveCount(tenant, -*removed);
  return removed;
}

absl::StatusOr<int64_t> SessionStore::DeleteById(absl::string_view tenant,
                                                 absl::string_view id) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (!IsStorableText(id)) return 0;  // no stored id is like it
  absl::StatusOr<int64_t> removed =
      Allowed(*backend_, "delete by id", backend_->DeleteById(tenant, id), {});
  if (removed.ok()) AdjustLiveCount(tenant, -*removed);
  return removed;
}

absl::StatusOr<int64_t> SessionStore::DeleteForUser(
    absl::string_view tenant, absl::string_view user_id,
    absl::string_view except_id) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
  if (!IsStorableText(user_id)) return 0;  // no stored user is like it
  // An except_id that no stored id can equal protects nothing.
  if (!IsStorableText(except_id)) except_id = absl::string_view();
  absl::StatusOr<int64_t> removed =
      Allowed(*backend_, "delete for user",
              backend_->DeleteForUser(tenant, user_id, except_id), {});
  if (removed.ok()) AdjustLiveCount(tenant, -*removed);
  return removed;
}

absl::StatusOr<SessionPage> SessionStore::ListForUser(
    absl::string_view tenant, absl::string_view user_id, int limit,
    const std::optional<ListCursor>& after, int64_t max_bytes) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
  if (limit <= 0) return absl::InvalidArgumentError("limit must be positive");
  if (max_bytes <= 0) {
    return absl::InvalidArgumentError("max_bytes must be positive");
  }
  if (after.has_value()) {
    if (absl::Status s = CheckStorableText(after->id, "cursor id"); !s.ok()) {
      return s;
    }
  }
  if (!IsStorableText(user_id)) return SessionPage();  // no such user
  // Stored times are whole microseconds, so a cursor between two of them
  // is the same position as the later one with an id before every id.
  std::optional<ListCursor> position = after;
  if (position.has_value() &&
      TruncateToMicros(position->last_active_at) != position->last_active_at) {
    position = ListCursor{
        TruncateToMicros(position->last_active_at) + absl::Microseconds(1), ""};
  }
  // One more than fits tells whether another page follows: a session past
  // `limit`, or one the bytes have no room for (the backend's listing ends
  // with one when bytes cut it short).
  const int count = limit < std::numeric_limits<int>::max() ? limit + 1 : limit;
  absl::StatusOr<std::vector<SessionRecord>> found = Allowed(
      *backend_, "list for user",
      backend_->ListForUser(tenant, user_id, count, max_bytes, position), {});
  if (!found.ok()) return found.status();
  if (absl::Status s = CheckListingWithin(*found, count, max_bytes); !s.ok()) {
    return s;
  }
  SessionPage page;
  page.sessions = *std::move(found);
  size_t fit = 0;
  int64_t bytes = 0;
  while (fit < page.sessions.size() && fit < static_cast<size_t>(limit)) {
    bytes += static_cast<int64_t>(page.sessions[fit].sealed_payload.size());
    if (fit > 0 && bytes > max_bytes) break;
    ++fit;
  }
  if (fit < page.sessions.size()) {
    page.sessions.resize(fit);
    const SessionRecord& last = page.sessions.back();
    page.next = ListCursor{last.last_active_at, last.id};
  }
  return page;
}

absl::StatusOr<int64_t> SessionStore::CountLive(absl::string_view tenant) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  return Allowed(*backend_, "count live", backend_->CountLive(tenant), {});
}

absl::StatusOr<int64_t> SessionStore::PruneExpired(absl::string_view tenant) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  return Allowed(*backend_, "prune expired", backend_->PruneExpired(tenant),
                 {});
}

absl::StatusOr<int64_t> SessionStore::PruneAllExpired() {
  return Allowed(*backend_, "prune expired",
                 backend_->PruneExpired(std::nullopt), {});
}

absl::Status SessionStore::Ping() {
  return Allowed(*backend_, "ping", backend_->Ping(), {});
}

absl::Status SessionStore::CheckLiveCap(absl::string_view tenant, int64_t cap) {
  const absl::Time now = clock_->Now();
  std::optional<int64_t> count;
  {
    absl::MutexLock lock(&live_counts_mu_);
    auto it = live_counts_.find(tenant);
    if (it != live_counts_.end() &&
        now - it->second.read_at <= options_.live_count_max_age &&
        now >= it->second.read_at &&
        // A count that may miss evictions refuses nothing: read it anew.
        !(it->second.count >= cap && it->second.may_overcount)) {
      count = it->second.count;
    }
  }
  if (!count.has_value()) {
    absl::StatusOr<int64_t> read = CountLive(tenant);
    if (!read.ok()) return read.status();
    count = *read;
    absl::MutexLock lock(&live_counts_mu_);
    live_counts_[tenant] = LiveCount{*count, now, false};
  }
  if (*count < cap) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("tenant \"", tenant, "\" has reached its limit of ", cap,
                   " live sessions"));
}

void SessionStore::AdjustLiveCount(absl::string_view tenant, int64_t delta,
                                   bool may_have_evicted) {
  if (delta == 0 && !may_have_evicted) return;
  absl::MutexLock lock(&live_counts_mu_);
  auto it = live_counts_.find(tenant);
  if (it == live_counts_.end()) return;
  it->second.count = std::max<int64_t>(0, it->second.count + delta);
  it->second.may_overcount = it->second.may_overcount || may_have_evicted;
}

}  // namespace sessiond::storage
