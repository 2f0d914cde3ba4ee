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
    const v1::SaveRequest& request, const HandlerOptions& options) {
  return ReadTimeout("idle_timeout", request.has_idle_timeout(),
                     request.idle_timeout(), MinIdleTimeout(options),
                     options.max_idle_timeout);
}

absl::StatusOr<std::optional<absl::Duration>> ReadAbsoluteLifetime(
    const v1::SaveRequest& request, const HandlerOptions& options) {
  return ReadTimeout("absolute_lifetime", request.has_absolute_lifetime(),
                     request.absolute_lifetime(), absl::Seconds(1),
                     options.max_absolute_lifetime);
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

// Page tokens are opaque to callers: URL-safe base64 of
// "<last_active_at unix micros>.<id>" of the previous page's last session.
std::string EncodePageToken(const storage::ListCursor& cursor) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(absl::ToUnixMicros(cursor.last_active_at), ".", cursor.id));
}

absl::StatusOr<std::optional<storage::ListCursor>> DecodePageToken(
    absl::string_view token) {
  if (token.empty()) return std::nullopt;
  std::string text;
  const absl::Status malformed = InvalidArgument("page_token", "malformed");
  if (token.size() > 256 || !absl::WebSafeBase64Unescape(token, &text)) {
    return malformed;
  }
  std::pair<std::string, std::string> parts =
      absl::StrSplit(text, absl::MaxSplits('.', 1));
  int64_t micros = 0;
  if (!absl::SimpleAtoi(parts.first, &micros) ||
      !crypto::IsWellFormedSessionId(parts.second)) {
    return malformed;
  }
  return storage::ListCursor{absl::FromUnixMicros(micros),
                             std::move(parts.second)};
}

}  // namespace

SessionHandler::SessionHandler(storage::SessionStore* store,
                               const crypto::Sealer* sealer,
                               HandlerOptions options)
    : store_(store),
      sealer_(sealer),
      options_(options),
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

absl::StatusOr<std::string> SessionHandler::SealPayload(
    const std::string& id, const std::string& data,
    const Map<std::string, std::string>& metadata) const {
  // The payload is a Session message holding only data and metadata.
  v1::Session payload;
  payload.set_data(data);
  *payload.mutable_metadata() = metadata;
  std::string plaintext;
  if (!payload.SerializeToString(&plaintext)) {
    return absl::InternalError("could not encode the session payload");
  }
  absl::StatusOr<std::string> sealed = sealer_->Seal(plaintext, id);
  crypto::Wipe(&plaintext);
  crypto::Wipe(payload.mutable_data());
  for (auto& entry : *payload.mutable_metadata()) crypto::Wipe(&entry.second);
  if (!sealed.ok()) return sealed.status();
  if (static_cast<int64_t>(sealed->size()) > options_.max_payload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "data: the stored payload (data and metadata",
        sealer_->encrypts() ? ", encrypted" : "", ") would be ", sealed->size(),
        " bytes, over the limit of ", options_.max_payload_bytes,
        " bytes (--max_payload_bytes)"));
  }
  return sealed;
}

absl::Status SessionHandler::ToProto(const storage::SessionRecord& record,
                                     v1::Session* out) {
  absl::StatusOr<std::string> plaintext =
      sealer_->Open(record.sealed_payload, record.id);
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
  out->set_id(record.id);
  out->set_user_id(record.user_id);
  out->set_data(std::move(*payload.mutable_data()));
  out->mutable_metadata()->swap(*payload.mutable_metadata());
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
    const v1::LoadRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  const std::string hash = crypto::HashToken(request.token());
  absl::StatusOr<storage::SessionRecord> record =
      request.touch() ? store_->LoadAndTouch(hash, options_.touch_interval)
                      : store_->Load(hash);
  v1::LoadResponse response;
  if (absl::Status s = FillSession("Load", record, response.mutable_session());
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::SaveResponse> SessionHandler::Save(
    const v1::SaveRequest& request) {
  if (absl::Status s = ValidateUserId("user_id", request.user_id(), options_);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateMetadata(request.metadata(), options_);
      !s.ok()) {
    return s;
  }
  return request.token().empty() ? Create(request) : Update(request);
}

absl::StatusOr<v1::SaveResponse> SessionHandler::Create(
    const v1::SaveRequest& request) {
  if (request.has_expected_version()) {
    return InvalidArgument("expected_version",
                           "only allowed when updating (token set)");
  }
  absl::StatusOr<std::optional<absl::Duration>> idle =
      ReadIdleTimeout(request, options_);
  if (!idle.ok()) return idle.status();
  absl::StatusOr<std::optional<absl::Duration>> absolute =
      ReadAbsoluteLifetime(request, options_);
  if (!absolute.ok()) return absolute.status();

  storage::SessionRecord record;
  record.id = crypto::NewSessionId();
  std::string token = crypto::NewSessionToken(record.id);
  record.token_hash = crypto::HashToken(token);
  record.user_id = request.user_id();
  record.idle_timeout = idle->value_or(options_.default_idle_timeout);
  record.absolute_lifetime =
      absolute->value_or(options_.default_absolute_lifetime);
  absl::StatusOr<std::string> sealed =
      SealPayload(record.id, request.data(), request.metadata());
  if (!sealed.ok()) return sealed.status();
  record.sealed_payload = std::move(*sealed);

  absl::StatusOr<storage::SessionRecord> stored = store_->Create(record);
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
    const v1::SaveRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  storage::SessionUpdate update;
  absl::StatusOr<std::optional<absl::Duration>> idle =
      ReadIdleTimeout(request, options_);
  if (!idle.ok()) return idle.status();
  update.idle_timeout = *idle;
  absl::StatusOr<std::optional<absl::Duration>> absolute =
      ReadAbsoluteLifetime(request, options_);
  if (!absolute.ok()) return absolute.status();
  update.absolute_lifetime = *absolute;
  if (request.has_expected_version()) {
    if (request.expected_version() < 1) {
      return InvalidArgument("expected_version", "must be at least 1");
    }
    update.expected_version = request.expected_version();
  }

  const std::string hash = crypto::HashToken(request.token());
  // The payload is sealed to the session id at the front of the token. A
  // token whose id was altered hashes to nothing stored, so the Update below
  // finds no session.
  absl::StatusOr<std::string> sealed =
      SealPayload(std::string(crypto::SessionIdOfToken(request.token())),
                  request.data(), request.metadata());
  if (!sealed.ok()) return sealed.status();
  update.user_id = request.user_id();
  update.sealed_payload = std::move(*sealed);

  v1::SaveResponse response;
  if (absl::Status s = FillSession("Save", store_->Update(hash, update),
                                   response.mutable_session());
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::CycleResponse> SessionHandler::Cycle(
    const v1::CycleRequest& request) {
  if (absl::Status s = ValidateToken("token", request.token()); !s.ok()) {
    return s;
  }
  std::optional<std::string> user_id;
  if (request.has_user_id()) {
    if (absl::Status s = ValidateUserId("user_id", request.user_id(), options_);
        !s.ok()) {
      return s;
    }
    user_id = request.user_id();
  }
  std::string token =
      crypto::NewSessionToken(crypto::SessionIdOfToken(request.token()));
  absl::StatusOr<storage::SessionRecord> cycled = store_->Cycle(
      crypto::HashToken(request.token()), crypto::HashToken(token), user_id);
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

absl::StatusOr<v1::DeleteResponse> SessionHandler::Delete(
    const v1::DeleteRequest& request) {
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
      deleted = store_->DeleteByTokenHash(crypto::HashToken(request.token()));
      break;
    case v1::DeleteRequest::kId:
      if (absl::Status s = ValidateId("id", request.id()); !s.ok()) return s;
      deleted = store_->DeleteById(request.id());
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
      deleted = store_->DeleteForUser(request.user_id(), request.except_id());
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
    const v1::ListForUserRequest& request) {
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
      store_->ListForUser(request.user_id(), page_size, *after);
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
    const v1::PruneRequest&) {
  absl::StatusOr<int64_t> pruned = store_->PruneExpired();
  if (!pruned.ok()) return ForCaller("Prune", pruned.status());
  counters_.sessions_pruned.fetch_add(*pruned, std::memory_order_relaxed);
  v1::PruneResponse response;
  response.set_pruned(*pruned);
  return response;
}

absl::StatusOr<v1::HealthResponse> SessionHandler::Health(
    const v1::HealthRequest&) {
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
