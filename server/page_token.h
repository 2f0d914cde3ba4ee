// Page tokens of ListForUser: opaque to callers, a position in the listing
// to the server.
#ifndef SESSIOND_SERVER_PAGE_TOKEN_H_
#define SESSIOND_SERVER_PAGE_TOKEN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/session_record.h"

namespace sessiond {

// The token of the page that starts right after `cursor` (whose id is a
// well-formed session id).
std::string EncodePageToken(const storage::ListCursor& cursor);

// The position `token` stands for; nullopt for the empty token (the first
// page). INVALID_ARGUMENT "page_token: malformed" for anything
// EncodePageToken cannot have made.
absl::StatusOr<std::optional<storage::ListCursor>> DecodePageToken(
    absl::string_view token);

}  // namespace sessiond

#endif  // SESSIOND_SERVER_PAGE_TOKEN_H_
