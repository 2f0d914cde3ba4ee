// Valkey replies on arbitrary bytes: hiredis's reader parses them as the
// backend's connections do, and the backend's decoders read every reply
// (and every element of an array, as a listing does). Never crashes; an
// accepted session holds exactly the reply's fields; error statuses never
// carry an echoed command or more than 200 bytes of the server's text.
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "fuzz/check.h"
#include "storage/valkey/internal/replies.h"

namespace {

namespace vi = sessiond::storage::valkey_internal;

void CheckRecord(const redisReply* r) {
  auto record = vi::RecordFromReply(r, "fuzz");
  if (!record.ok()) {
    FUZZ_CHECK(record.status().code() == absl::StatusCode::kInternal);
    return;
  }
  FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 10);
  FUZZ_CHECK(record->id == vi::ReplyText(r->element[0]));
  FUZZ_CHECK(record->token_hash == vi::ReplyText(r->element[1]));
  FUZZ_CHECK(record->sealed_payload == vi::ReplyText(r->element[3]));
  FUZZ_CHECK(record->tenant == vi::ReplyText(r->element[9]));
}

void CheckError(const redisReply* r) {
  const absl::string_view text = vi::ReplyText(r);
  for (const absl::Status& s :
       {vi::ServerError(text, "fuzz"), vi::FunctionError(text, "fuzz")}) {
    FUZZ_CHECK(!s.ok());
    FUZZ_CHECK(!absl::StrContains(s.message(), ", with args beginning with"));
    FUZZ_CHECK(s.message().size() <= 200 + 64);
  }
}

void CheckReply(const redisReply* r, int depth) {
  CheckRecord(r);
  if (r->type == REDIS_REPLY_ERROR) CheckError(r);
  if (r->type == REDIS_REPLY_ARRAY && depth < 8) {
    for (size_t k = 0; k < r->elements; ++k) {
      CheckReply(r->element[k], depth + 1);
    }
  }
}

// Whether every array or string length the input announces ("*N", "$N")
// could be met by the input itself. hiredis 0.14 allocates an array's
// element table as soon as it reads the count (it has no limit of its
// own), so an input announcing a billion elements only measures malloc;
// the memory a server can make it take is what the server sends.
bool LengthsFitInput(absl::string_view input) {
  for (size_t i = 0; i + 1 < input.size(); ++i) {
    if (input[i] != '*' && input[i] != '$') continue;
    uint64_t n = 0;
    for (size_t k = i + 1; k < input.size() && input[k] >= '0' &&
                           input[k] <= '9' && n <= input.size();
         ++k) {
      n = n * 10 + static_cast<uint64_t>(input[k] - '0');
    }
    if (n > input.size()) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!LengthsFitInput(
          absl::string_view(reinterpret_cast<const char*>(data), size))) {
    return 0;
  }
  redisReader* reader = redisReaderCreate();
  FUZZ_CHECK(reader != nullptr);
  if (redisReaderFeed(reader, reinterpret_cast<const char*>(data), size) ==
      REDIS_OK) {
    for (;;) {
      void* parsed = nullptr;
      if (redisReaderGetReply(reader, &parsed) != REDIS_OK ||
          parsed == nullptr) {
        break;
      }
      vi::Reply reply(static_cast<redisReply*>(parsed));
      CheckReply(reply.get(), 0);
    }
  }
  redisReaderFree(reader);
  return 0;
}
