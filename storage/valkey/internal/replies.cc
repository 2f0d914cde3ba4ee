#include "storage/valkey/internal/replies.h"

#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace sessiond::storage::valkey_internal {

absl::string_view ReplyText(const redisReply* r) {
  return r->str != nullptr ? absl::string_view(r->str, r->len)
                           : absl::string_view();
}

absl::Status Malformed(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("valkey: ", what, ": unexpected reply from the server"));
}

std::string SanitizedServerError(absl::string_view error) {
  const size_t echo = error.find(", with args beginning with");
  if (echo != absl::string_view::npos) error = error.substr(0, echo);
  if (error.size() > 200) error = error.substr(0, 200);
  return std::string(error);
}

absl::Status ServerError(absl::string_view error, absl::string_view what) {
  const absl::string_view code = error.substr(0, error.find(' '));
  const std::string message =
      absl::StrCat("valkey: ", what, ": ", SanitizedServerError(error));
  // Refused for now, nothing written.
  if (code == "LOADING" || code == "BUSY" || code == "MASTERDOWN" ||
      code == "READONLY" || code == "TRYAGAIN" || code == "CLUSTERDOWN" ||
      code == "OOM" || code == "MISCONF" || code == "NOREPLICAS") {
    return absl::UnavailableError(message);
  }
  if (code == "NOAUTH" || code == "WRONGPASS" || code == "NOPERM") {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

absl::Status FunctionError(absl::string_view error, absl::string_view what) {
  const size_t space = error.find(' ');
  const absl::string_view code = error.substr(0, space);
  const std::string message = absl::StrCat(
      "valkey: ", what, ": ",
      space == absl::string_view::npos
          ? ""
          : SanitizedServerError(error.substr(space + 1)));
  if (code == "NOT_FOUND") return absl::NotFoundError(message);
  if (code == "ABORTED") return absl::AbortedError(message);
  if (code == "OUT_OF_RANGE") return absl::OutOfRangeError(message);
  if (code == "ALREADY_EXISTS") return absl::AlreadyExistsError(message);
  return ServerError(error, what);
}

absl::StatusOr<SessionRecord> RecordFromReply(const redisReply* r,
                                              absl::string_view what) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 10) return Malformed(what);
  for (size_t k = 0; k < 10; ++k) {
    if (r->element[k]->type != REDIS_REPLY_STRING) return Malformed(what);
  }
  auto text = [r](size_t k) { return std::string(ReplyText(r->element[k])); };
  int64_t n[5];
  for (size_t k = 0; k < 5; ++k) {
    if (!absl::SimpleAtoi(ReplyText(r->element[4 + k]), &n[k])) {
      return Malformed(what);
    }
  }
  SessionRecord rec;
  rec.tenant = text(9);
  rec.id = text(0);
  rec.token_hash = text(1);
  rec.user_id = text(2);
  rec.sealed_payload = text(3);
  rec.created_at = absl::FromUnixMicros(n[0]);
  rec.last_active_at = absl::FromUnixMicros(n[1]);
  rec.idle_timeout = MicrosToDuration(n[2]);
  rec.absolute_lifetime = MicrosToDuration(n[3]);
  rec.version = n[4];
  return rec;
}

}  // namespace sessiond::storage::valkey_internal
