#include "server/session_handler.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "crypto/token.h"
#include "crypto/wipe.h"
#include "server/log.h"
#include "server/page_token.h"

namespace sessiond {
namespace {

using ::google::protobuf::Duration;
using ::google::protobuf::Map;
using ::google::protobuf::Timestamp;

absl::Status InvalidArgument(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status ValidateToken(absl::string_view field, absl::string_view token) {
  if (token.empty()) return InvalidArgument(field, "is required");
  if (!crypto::IsWellFormedSessionToken(token)) {
    return InvalidArgument(
        field,
        "malformed (expected 66 characters: the 22-character session id, "
        "'.', and 43 URL-safe base64 characters)");
  }
  return absl::OkStatus();
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return InvalidArgument(field, "is required");
  if (!crypto::IsWellFormedSessionId(id)) {
    return InvalidArgument(
        field, "malformed (expected 22 URL-safe base64 characters)");
  }
  return absl::OkStatus();
}

absl::Status ValidateUserId(absl::string_view field, absl::string_view user_id,
                            const HandlerOptions& options) {
  if (!storage::IsStorableText(user_id)) {
    return InvalidArgument(field, "must be UTF-8 without NUL characters");
  }
  if (static_cast<int>(user_id.size()) > options.max_user_id_bytes) {
    return InvalidArgument(
        field,
        absl::StrCat("longer than ", options.max_user_id_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMetadata(const Map<std::string, std::string>& metadata,
                              const HandlerOptions& options) {
  if (static_cast<int>(metadata.size()) > options.max_metadata_entries) {
    return InvalidArgument(
        "metadata",
        absl::StrCat("more than ", options.max_metadata_entries, " entries"));
  }
  for (const auto& [key, value] : metadata) {
    if (key.empty()) return InvalidArgument("metadata", "empty key");
    if (static_cast<int>(key.size()) > options.max_metadata_key_bytes) {
      return InvalidArgument(
          "metadata", absl::StrCat("key longer than ",
                                   options.max_metadata_key_bytes, " bytes"));
    }
    if (static_cast<int>(value.size()) > options.max_metadata_value_bytes) {
      return InvalidArgument(
          absl::StrCat("metadata[", key, "]"),
          absl::StrCat("value longer than ", options.max_metadata_value_bytes,
                       " bytes"));
    }
  }
  return absl::OkStatus();
}

// Reads an optional Duration field: nullopt when unset, an error when it is
// not positive, shorter than the minimum or longer than the maximum. Kept at
// microsecond precision, like every time the store keeps.
absl::StatusOr<std::optional<absl::Duration>> ReadTimeout(
    absl::string_view field, bool has_field, const Duration& value,
    absl::Duration minimum, absl::Duration maximum) {
  if (!has_field) return std::nullopt;
  if (value.seconds() < 0 || value.nanos() < 0 ||
      (value.seconds() == 0 && value.nanos() == 0)) {
    return InvalidArgument(field, "must be positive");
  }
  if (value.nanos() >= 1000000000) return InvalidArgument(field, "malformed");
  const absl::Duration d = absl::Trunc(
      absl::Seconds(value.seconds()) + absl::Nanoseconds(value.nanos()),
      absl::Microseconds(1));
  if (d > maximum) {
    return InvalidArgument(field, absl::StrCat("longer than the maximum of ",
                                               absl::FormatDuration(maximum)));
  }
  if (d < minimum) {
    return InvalidArgument(field, absl::StrCat("shorter than the minimum of ",
                                               absl::FormatDuration(minimum)));
  }
  return d;
}

// A touched session must not expire between two touch writes, so the idle
// timeout is at least twice the touch interval.
absl::Duration MinIdleTimeout(const HandlerOptions& options) {
  return std::max(absl::Seconds(1), 2 * options.touch_interval);
}

absl::StatusOr<std::optional<absl::Duration>> ReadIdleTimeout(
    const v1::SaveRequest& request, const TenantScope& tenant,
    const HandlerOptions& options) {
  return ReadTimeout("idle_timeout", request.has_idle_timeout(),
                     request.idle_timeout(), MinIdleTimeout(options),
                     tenant.max_idle_timeout);
}

absl::StatusOr<std::optional<absl::Duration>> ReadAbsoluteLifetime(
    const v1::SaveRequest& request, const TenantScope& tenant) {
  return ReadTimeout("absolute_lifetime", request.has_absolute_lifetime(),
                     request.absolute_lifetime(), absl::Seconds(1),
                     tenant.max_absolute_lifetime);
}

// A write that met a concurrent one is tried again this many times in all
// before the caller gets ABORTED.
constexpr int kWriteAttempts = 3;

absl::Status ConcurrentWrite() {
  return absl::AbortedError(
      "the session changed during the call, several times; retry");
}

// The associated data of payloads sealed before tenants existed.
absl::string_view LegacyBinding(const storage::SessionRecord& record) {
  return record.id;
}

void SetTimestamp(absl::Time t, Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

void SetDuration(absl::Duration d, Duration* out) {
  const int64_t micros = absl::ToInt64Microseconds(d);
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
}

}  // namespace

TenantScope DefaultScope(absl::string_view name,
                         const HandlerOptions& options) {
  TenantScope scope;
  scope.name = name;
  scope.default_idle_timeout = options.default_idle_timeout;
  scope.max_idle_timeout = options.max_idle_timeout;
  scope.default_absolute_lifetime = options.default_absolute_lifetime;
  scope.max_absolute_lifetime = options.max_absolute_lifetime;
  scope.max_payload_bytes = options.max_payload_bytes;
  scope.limits.max_sessions_per_user = options.max_sessions_per_user;
  scope.limits.max_live_sessions = options.max_live_sessions;
  return scope;
}

absl::Status ValidateScope(const TenantScope& scope,
                           const HandlerOptions& options,
                           const SettingNames& names) {
  const std::string where = names.name_the_tenant
                                ? absl::StrCat("tenant \"", scope.name, "\": ")
                                : std::string();
  if (!storage::IsValidTenantName(scope.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     "a tenant name is 1 to 64 characters of A-Z, "
                     "a-z, 0-9, '.', '_', '-'"));
  }
  struct Bound {
    const char* name;
    absl::Duration default_value;
    const char* max_name;
    absl::Duration max_value;
    absl::Duration minimum;
    std::string why_minimum;
  };
  const Bound bounds[] = {
      {names.default_idle_timeout, scope.default_idle_timeout,
       names.max_idle_timeout, scope.max_idle_timeout, MinIdleTimeout(options),
       absl::StrCat(" (twice ", names.touch_interval,
                    ", or touched sessions could expire between writes)")},
      {names.default_absolute_lifetime, scope.default_absolute_lifetime,
       names.max_absolute_lifetime, scope.max_absolute_lifetime,
       absl::Seconds(1), ""},
  };
  for (const Bound& b : bounds) {
    if (b.max_value > kLongestTimeout) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, b.max_name, " is over the longest allowed, ",
                       absl::FormatDuration(kLongestTimeout)));
    }
    if (b.default_value < b.minimum) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, b.name, " (", absl::FormatDuration(b.default_value),
          ") is under the minimum of ", absl::FormatDuration(b.minimum),
          b.why_minimum));
    }
    if (b.default_value > b.max_value) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, b.name, " (", absl::FormatDuration(b.default_value),
          ") is over ", b.max_name, " (", absl::FormatDuration(b.max_value),
          ")"));
    }
  }
  if (scope.max_payload_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, names.max_payload_bytes, " must be positive"));
  }
  if (scope.limits.max_sessions_per_user < 0 ||
      scope.limits.max_live_sessions < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "session limits must not be negative"));
  }
  return absl::OkStatus();
}

std::string PayloadBinding(absl::string_view tenant, absl::string_view id,
                           absl::string_view user_id) {
  // None of the three holds a NUL, so NULs separate them unambiguously.
  return absl::StrCat("sessiond.payload.v2", absl::string_view("\0", 1), tenant,
                      absl::string_view("\0", 1), id,
                      absl::string_view("\0", 1), user_id);
}

SessionHandler::SessionHandler(storage::SessionStore* store,
                               const crypto::Sealer* sealer,
                               HandlerOptions options)
    : store_(store),
      sealer_(sealer),
      options_(options),
      default_scope_(DefaultScope(storage::kDefaultTenant, options)),
      unavailable_log_(options.storage_error_log_interval),
      internal_log_(options.storage_error_log_interval) {}

absl::Status SessionHandler::ForCaller(absl::string_view rpc,
                                       const absl::Status& status) {
  const bool unavailable = absl::IsUnavailable(status);
  if (!unavailable && !absl::IsInternal(status)) return status;
  LogRateLimiter& limiter = unavailable ? unavailable_log_ : internal_log_;
  if (std::optional<int64_t> held_back = limiter.Admit()) {
    const std::string also =
        *held_back > 0 ? absl::StrCat(" (and ", *held_back,
                                      " more like it since the last line)")
                       : "";
    if (unavailable) {
      LogWarning("%s: storage backend unavailable: %s%s", rpc, status.message(),
                 also);
    } else {
      LogError("%s: storage backend error: %s%s", rpc, status.message(), also);
    }
  }
  return unavailable ? absl::UnavailableError("storage backend unavailable")
                     : absl::InternalError("storage backend error");
}

absl::StatusOr<std::string> SessionHandler::Reseal(const TenantScope& tenant,
                                                   absl::string_view id,
                                                   absl::string_view user_id,
                                                   v1::Session& opened) const {
  absl::StatusOr<std::string> sealed =
      SealPayload(tenant, id, user_id, opened.data(), opened.metadata());
  crypto::Wipe(opened.mutable_data());
  for (auto& entry : *opened.mutable_metadata()) crypto::Wipe(&entry.second);
  return sealed;
}

absl::StatusOr<std::string> SessionHandler::SealPayload(
    const TenantScope& tenant, absl::string_view id, absl::string_view user_id,
    const std::string& data,
    const Map<std::string, std::string>& metadata) const {
  // The payload is a Session message holding only data and metadata.
  v1::Session payload;
  payload.set_data(data);
  *payload.mutable_metadata() = metadata;
  std::string plaintext;
  if (!payload.SerializeToString(&plaintext)) {
    return absl::InternalError("could not encode the session payload");
  }
  absl::StatusOr<std::string> sealed =
      sealer_->Seal(plaintext, PayloadBinding(tenant.name, id, user_id));
  crypto::Wipe(&plaintext);
  crypto::Wipe(payload.mutable_data());
  for (auto& entry : *payload.mutable_metadata()) crypto::Wipe(&entry.second);
  if (!sealed.ok()) return sealed.status();
  if (static_cast<int64_t>(sealed->size()) > tenant.max_payload_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("data: the stored payload (data and metadata",
                     sealer_->encrypts() ? ", encrypted" : "", ") would be ",
                     sealed->size(), " bytes, over the limit of ",
                     tenant.max_payload_bytes, " bytes (max_payload_bytes)"));
  }
  return sealed;
}

absl::StatusOr<v1::Session> SessionHandler::OpenPayload(
    const storage::SessionRecord& record) {
  absl::StatusOr<std::string> plaintext =
      sealer_->Open(record.sealed_payload,
                    PayloadBinding(record.tenant, record.id, record.user_id));
  if (!plaintext.ok() && record.tenant == storage::kDefaultTenant) {
    absl::StatusOr<std::string> legacy =
        sealer_->Open(record.sealed_payload, LegacyBinding(record));
    if (legacy.ok()) plaintext = std::move(legacy);
  }
  v1::Session payload;
  if (!plaintext.ok() || !payload.ParseFromString(*plaintext)) {
    counters_.unopenable_payloads.fetch_add(1, std::memory_order_relaxed);
    LogWarning(
        "session %s: stored payload does not open (%s); treated as "
        "absent",
        record.id,
        plaintext.ok() ? "undecodable" : plaintext.status().message());
    if (plaintext.ok()) crypto::Wipe(&*plaintext);
    return absl::DataLossError("stored payload does not open");
  }
  crypto::Wipe(&*plaintext);
  return payload;
}

absl::Status SessionHandler::ToProto(const storage::SessionRecord& record,
                                     v1::Session* out) {
  absl::StatusOr<v1::Session> payload = OpenPayload(record);
  if (!payload.ok()) return payload.status();
  out->set_id(record.id);
  out->set_user_id(record.user_id);
  out->set_data(std::move(*payload->mutable_data()));
  out->mutable_metadata()->swap(*payload->mutable_metadata());
  SetTimestamp(record.created_at, out->mutable_created_at());
  SetTimestamp(record.last_active_at, out->mutable_last_active_at());
  SetTimestamp(record.ExpiresAt(), out->mutable_expires_at());
  out->set_version(record.version);
  SetDuration(record.idle_timeout, out->mutable_idle_timeout());
  SetDuration(record.absolute_lifetime, out->mutable_absolute_lifetime());
  return absl::OkStatus();
}

absl::Status SessionHandler::FillSession(
    absl::string_view rpc, const absl::StatusOr<storage::SessionRecord>& record,
    v1::Session* out) {
  if (!record.ok()) return ForCaller(rpc, record.status());
  absl::Status status = ToProto(*record, out);
  if (absl::IsDataLoss(status)) {
    return absl::NotFoundError("no live session for that token");
  }
  return status;
}

absl::StatusOr<v1::LoadResponse> SessionHandler::Load(
    const TenantScope& tenant, const v1::LoadRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  const std::string hash = crypto::HashToken(request.token());
  absl::StatusOr<storage::SessionRecord> record =
      request.touch()
          ? store_->LoadAndTouch(tenant.name, hash, options_.touch_interval)
          : store_->Load(tenant.name, hash);
  v1::LoadResponse response;
  if (absl::Status s = FillSession("Load", record, response.mutable_session());
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::SaveResponse> SessionHandler::Save(
    const TenantScope& tenant, const v1::SaveRequest& request) {
  if (absl::Status s = ValidateUserId("user_id", request.user_id(), options_);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateMetadata(request.metadata(), options_);
      !s.ok()) {
    return s;
  }
  return request.token().empty() ? Create(tenant, request)
                                 : Update(tenant, request);
}

absl::StatusOr<v1::SaveResponse> SessionHandler::Create(
    const TenantScope& tenant, const v1::SaveRequest& request) {
  if (request.has_expected_version()) {
    return InvalidArgument("expected_version",
                           "only allowed when updating (token set)");
  }
  if (request.has_update_mask()) {
    return InvalidArgument("update_mask",
                           "only allowed when updating (token set)");
  }
  absl::StatusOr<std::optional<absl::Duration>> idle =
      ReadIdleTimeout(request, tenant, options_);
  if (!idle.ok()) return idle.status();
  absl::StatusOr<std::optional<absl::Duration>> absolute =
      ReadAbsoluteLifetime(request, tenant);
  if (!absolute.ok()) return absolute.status();

  storage::SessionRecord record;
  record.tenant = std::string(tenant.name);
  record.id = crypto::NewSessionId();
  std::string token = crypto::NewSessionToken(record.id);
  record.token_hash = crypto::HashToken(token);
  record.user_id = request.user_id();
  record.idle_timeout = idle->value_or(tenant.default_idle_timeout);
  record.absolute_lifetime =
      absolute->value_or(tenant.default_absolute_lifetime);
  absl::StatusOr<std::string> sealed = SealPayload(
      tenant, record.id, record.user_id, request.data(), request.metadata());
  if (!sealed.ok()) return sealed.status();
  record.sealed_payload = std::move(*sealed);

  absl::StatusOr<storage::SessionRecord> stored =
      store_->Create(record, tenant.limits);
  if (absl::IsAlreadyExists(stored.status())) {
    // 128- and 256-bit random values do not collide; if they did, the caller
    // must not receive someone else's session.
    return absl::InternalError("generated session id or token collided");
  }
  v1::SaveResponse response;
  if (absl::Status s = FillSession("Save", stored, response.mutable_session());
      !s.ok()) {
    return s;
  }
  counters_.sessions_created.fetch_add(1, std::memory_order_relaxed);
  response.set_token(std::move(token));
  response.set_created(true);
  return response;
}

absl::StatusOr<v1::SaveResponse> SessionHandler::Update(
    const TenantScope& tenant, const v1::SaveRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  UpdateFields fields;
  if (request.has_update_mask()) {
    for (const std::string& path : request.update_mask().paths()) {
      if (path == "user_id") {
        fields.user_id = true;
      } else if (path == "data") {
        fields.data = true;
      } else if (path == "metadata") {
        fields.metadata = true;
      } else if (path == "idle_timeout") {
        fields.idle_timeout = true;
      } else if (path == "absolute_lifetime") {
        fields.absolute_lifetime = true;
      } else {
        return InvalidArgument(
            "update_mask",
            absl::StrCat("unknown path \"", absl::CEscape(path),
                         "\" (expected data, metadata, idle_timeout, "
                         "absolute_lifetime or user_id)"));
      }
    }
    if (fields.idle_timeout && !request.has_idle_timeout()) {
      return InvalidArgument("idle_timeout", "listed in update_mask but unset");
    }
    if (fields.absolute_lifetime && !request.has_absolute_lifetime()) {
      return InvalidArgument("absolute_lifetime",
                             "listed in update_mask but unset");
    }
  } else {
    fields.data = !request.data().empty();
    fields.metadata = !request.metadata().empty();
    fields.idle_timeout = request.has_idle_timeout();
    fields.absolute_lifetime = request.has_absolute_lifetime();
  }
  // A user is never changed by Save, so a non-empty one is always a check.
  fields.user_id = fields.user_id || !request.user_id().empty();

  storage::SessionUpdate update;
  if (fields.idle_timeout) {
    absl::StatusOr<std::optional<absl::Duration>> idle =
        ReadIdleTimeout(request, tenant, options_);
    if (!idle.ok()) return idle.status();
    update.idle_timeout = *idle;
  }
  if (fields.absolute_lifetime) {
    absl::StatusOr<std::optional<absl::Duration>> absolute =
        ReadAbsoluteLifetime(request, tenant);
    if (!absolute.ok()) return absolute.status();
    update.absolute_lifetime = *absolute;
  }
  if (request.has_expected_version()) {
    // Any value is a compare-and-set; 0 and below match no version.
    update.expected_version = request.expected_version();
  }

  const std::string hash = crypto::HashToken(request.token());
  absl::StatusOr<storage::SessionRecord> updated;
  if (!fields.user_id && !fields.data && !fields.metadata) {
    // Only timeouts: the payload stays sealed as it is, no read needed.
    updated = store_->Update(tenant.name, hash, update);
  } else {
    // The payload holds data and metadata together, bound to the user: a
    // read, then a compare-and-set write, again if another write came
    // between (unless the caller asked for its own compare-and-set).
    for (int attempt = 1;; ++attempt) {
      updated = UpdateOnce(tenant, request, hash, fields, update);
      if (!absl::IsAborted(updated.status()) ||
          request.has_expected_version()) {
        break;
      }
      if (attempt == kWriteAttempts) return ConcurrentWrite();
    }
  }
  v1::SaveResponse response;
  if (absl::Status s = FillSession("Save", updated, response.mutable_session());
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<storage::SessionRecord> SessionHandler::UpdateOnce(
    const TenantScope& tenant, const v1::SaveRequest& request,
    const std::string& token_hash, const UpdateFields& fields,
    storage::SessionUpdate update) {
  absl::StatusOr<storage::SessionRecord> stored =
      store_->Load(tenant.name, token_hash);
  if (!stored.ok()) return stored;
  if (fields.user_id && request.user_id() != stored->user_id) {
    return absl::FailedPreconditionError(
        "user_id: Save never changes a session's user; call Cycle with "
        "user_id, which also issues a new token");
  }
  if (absl::Status s = storage::CheckExpectedVersion(stored->version,
                                                     update.expected_version);
      !s.ok()) {
    return s;
  }
  if (fields.data || fields.metadata) {
    absl::StatusOr<v1::Session> payload = OpenPayload(*stored);
    if (!payload.ok()) return payload.status();  // DATA_LOSS: reads as absent
    if (fields.data) {
      crypto::Wipe(payload->mutable_data());
      payload->set_data(request.data());
    }
    if (fields.metadata) *payload->mutable_metadata() = request.metadata();
    absl::StatusOr<std::string> sealed =
        Reseal(tenant, stored->id, stored->user_id, *payload);
    if (!sealed.ok()) return sealed.status();
    update.sealed_payload = std::move(*sealed);
  }
  update.expected_version = stored->version;
  return store_->Update(tenant.name, token_hash, update);
}

absl::StatusOr<v1::CycleResponse> SessionHandler::Cycle(
    const TenantScope& tenant, const v1::CycleRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  if (request.has_user_id()) {
    if (absl::Status s = ValidateUserId("user_id", request.user_id(), options_);
        !s.ok()) {
      return s;
    }
  }
  std::string token =
      crypto::NewSessionToken(crypto::SessionIdOfToken(request.token()));
  const std::string old_hash = crypto::HashToken(request.token());
  storage::SessionCycle cycle;
  cycle.new_token_hash = crypto::HashToken(token);
  absl::StatusOr<storage::SessionRecord> cycled;
  if (!request.has_user_id()) {
    cycled = store_->Cycle(tenant.name, old_hash, cycle, tenant.limits);
  } else {
    cycle.user_id = request.user_id();
    for (int attempt = 1;; ++attempt) {
      cycled = CycleToUserOnce(tenant, old_hash, cycle);
      if (!absl::IsAborted(cycled.status())) break;
      if (attempt == kWriteAttempts) return ConcurrentWrite();
    }
  }
  if (absl::IsAlreadyExists(cycled.status())) {
    // As in Create: the caller must not receive someone else's session.
    return absl::InternalError("generated token collided");
  }
  v1::CycleResponse response;
  if (absl::Status s = FillSession("Cycle", cycled, response.mutable_session());
      !s.ok()) {
    return s;
  }
  response.set_token(std::move(token));
  return response;
}

absl::StatusOr<storage::SessionRecord> SessionHandler::CycleToUserOnce(
    const TenantScope& tenant, const std::string& old_token_hash,
    storage::SessionCycle cycle) {
  absl::StatusOr<storage::SessionRecord> stored =
      store_->Load(tenant.name, old_token_hash);
  if (!stored.ok()) return stored;
  if (*cycle.user_id != stored->user_id) {
    // The payload is bound to the user: seal it anew for the new one.
    absl::StatusOr<v1::Session> payload = OpenPayload(*stored);
    if (!payload.ok()) return payload.status();  // DATA_LOSS: reads as absent
    absl::StatusOr<std::string> sealed =
        Reseal(tenant, stored->id, *cycle.user_id, *payload);
    if (!sealed.ok()) return sealed.status();
    cycle.sealed_payload = std::move(*sealed);
  }
  cycle.expected_version = stored->version;
  return store_->Cycle(tenant.name, old_token_hash, cycle, tenant.limits);
}

absl::StatusOr<v1::DeleteResponse> SessionHandler::Delete(
    const TenantScope& tenant, const v1::DeleteRequest& request) {
  if (!request.except_id().empty() &&
      request.target_case() != v1::DeleteRequest::kUserId) {
    return InvalidArgument("except_id", "only allowed with user_id");
  }
  absl::StatusOr<int64_t> deleted;
  switch (request.target_case()) {
    case v1::DeleteRequest::kToken:
      if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
        return s;
      }
      deleted = store_->DeleteByTokenHash(tenant.name,
                                          crypto::HashToken(request.token()));
      break;
    case v1::DeleteRequest::kId:
      if (absl::Status s = ValidateId("id", request.id()); !s.ok()) return s;
      deleted = store_->DeleteById(tenant.name, request.id());
      break;
    case v1::DeleteRequest::kUserId:
      if (request.user_id().empty()) {
        return InvalidArgument("user_id", "is required");
      }
      if (absl::Status s =
              ValidateUserId("user_id", request.user_id(), options_);
          !s.ok()) {
        return s;
      }
      if (!request.except_id().empty()) {
        if (absl::Status s = ValidateId("except_id", request.except_id());
            !s.ok()) {
          return s;
        }
      }
      deleted = store_->DeleteForUser(tenant.name, request.user_id(),
                                      request.except_id());
      break;
    case v1::DeleteRequest::TARGET_NOT_SET:
      return InvalidArgument("target",
                             "one of token, id or user_id is required");
  }
  if (!deleted.ok()) return ForCaller("Delete", deleted.status());
  v1::DeleteResponse response;
  response.set_deleted(*deleted);
  return response;
}

absl::StatusOr<v1::ListForUserResponse> SessionHandler::ListForUser(
    const TenantScope& tenant, const v1::ListForUserRequest& request) {
  if (request.user_id().empty()) {
    return InvalidArgument("user_id", "is required");
  }
  if (absl::Status s = ValidateUserId("user_id", request.user_id(), options_);
      !s.ok()) {
    return s;
  }
  int page_size = request.page_size();
  if (page_size == 0) page_size = options_.default_page_size;
  if (page_size < 0 || page_size > options_.max_page_size) {
    return InvalidArgument("page_size", absl::StrCat("must be between 0 and ",
                                                     options_.max_page_size));
  }
  absl::StatusOr<std::optional<storage::ListCursor>> after =
      DecodePageToken(request.page_token());
  if (!after.ok()) return after.status();

  absl::StatusOr<storage::SessionPage> page =
      store_->ListForUser(tenant.name, request.user_id(), page_size, *after,
                          options_.max_list_response_bytes);
  if (!page.ok()) return ForCaller("ListForUser", page.status());
  v1::ListForUserResponse response;
  int64_t response_bytes = 0;
  for (const storage::SessionRecord& record : page->sessions) {
    v1::Session session;
    // A session whose payload does not open is left out, as if absent.
    if (!ToProto(record, &session).ok()) continue;
    // Each entry costs its size plus a tag and a length prefix.
    const int64_t entry_bytes =
        static_cast<int64_t>(session.ByteSizeLong()) + 6;
    if (response.sessions_size() > 0 &&
        response_bytes + entry_bytes > options_.max_list_response_bytes) {
      // Stop here; the next page starts right after the last one sent.
      const v1::Session& last = response.sessions(response.sessions_size() - 1);
      response.set_next_page_token(EncodePageToken(storage::ListCursor{
          absl::FromUnixSeconds(last.last_active_at().seconds()) +
              absl::Nanoseconds(last.last_active_at().nanos()),
          last.id()}));
      return response;
    }
    response_bytes += entry_bytes;
    *response.add_sessions() = std::move(session);
  }
  if (page->next.has_value()) {
    response.set_next_page_token(EncodePageToken(*page->next));
  }
  return response;
}

absl::StatusOr<v1::PruneResponse> SessionHandler::Prune(
    const TenantScope& tenant, const v1::PruneRequest&) {
  absl::StatusOr<int64_t> pruned = store_->PruneExpired(tenant.name);
  if (!pruned.ok()) return ForCaller("Prune", pruned.status());
  counters_.sessions_pruned.fetch_add(*pruned, std::memory_order_relaxed);
  v1::PruneResponse response;
  response.set_pruned(*pruned);
  return response;
}

absl::StatusOr<int64_t> SessionHandler::PruneAll() {
  absl::StatusOr<int64_t> pruned = store_->PruneAllExpired();
  if (!pruned.ok()) return ForCaller("background prune", pruned.status());
  counters_.sessions_pruned.fetch_add(*pruned, std::memory_order_relaxed);
  return pruned;
}

absl::StatusOr<v1::HealthResponse> SessionHandler::Health(
    const TenantScope&, const v1::HealthRequest&) {
  const absl::Time start = absl::Now();
  absl::Status ping = store_->Ping();
  v1::HealthResponse response;
  response.set_backend(std::string(store_->backend_name()));
  SetDuration(absl::Now() - start, response.mutable_latency());
  response.set_serving(ping.ok());
  if (!ping.ok()) {
    response.set_message(std::string(ForCaller("Health", ping).message()));
  }
  return response;
}

}  // namespace sessiond
