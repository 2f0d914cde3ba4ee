#include "server/page_token.h"

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "crypto/token.h"

namespace sessiond {

// URL-safe base64 of "<last_active_at unix micros>.<id>".
std::string EncodePageToken(const storage::ListCursor& cursor) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(absl::ToUnixMicros(cursor.last_active_at), ".", cursor.id));
}

absl::StatusOr<std::optional<storage::ListCursor>> DecodePageToken(
    absl::string_view token) {
  if (token.empty()) return std::nullopt;
  std::string text;
  const absl::Status malformed =
      absl::InvalidArgumentError("page_token: malformed");
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

}  // namespace sessiond
