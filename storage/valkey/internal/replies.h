// What the Valkey backend reads from the server's replies: sessions as its
// functions return them, and the statuses of error replies. Each takes any
// reply that hiredis parsed, however malformed, and checks its shape.
#ifndef SESSIOND_STORAGE_VALKEY_INTERNAL_REPLIES_H_
#define SESSIOND_STORAGE_VALKEY_INTERNAL_REPLIES_H_

#include <hiredis/hiredis.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/session_record.h"

namespace sessiond::storage::valkey_internal {

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// The bytes of a string, status or error reply; empty for others.
absl::string_view ReplyText(const redisReply* r);

// INTERNAL "valkey: WHAT: unexpected reply from the server".
absl::Status Malformed(absl::string_view what);

// The server's error text, cut where a server might start echoing a
// command's arguments ("unknown command ..., with args beginning with: "),
// and to at most 200 bytes.
std::string SanitizedServerError(absl::string_view error);

// The status of an error reply from the server (README.md, "Errors").
absl::Status ServerError(absl::string_view error, absl::string_view what);

// The status of an error reply to FCALL: the functions' own failures, whose
// first word is their code (valkey_scripts.h), or else a server error.
// Either way the server's text is sanitized as above.
absl::Status FunctionError(absl::string_view error, absl::string_view what);

// A session as the functions reply it: {id, th, u, p, c, a, i, l, v, n};
// Malformed(what) for anything else.
absl::StatusOr<SessionRecord> RecordFromReply(const redisReply* r,
                                              absl::string_view what);

}  // namespace sessiond::storage::valkey_internal

#endif  // SESSIOND_STORAGE_VALKEY_INTERNAL_REPLIES_H_
