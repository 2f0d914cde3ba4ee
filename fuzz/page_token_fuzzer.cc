// Page-token decoding on arbitrary text: never crashes; a token it accepts
// stands for a position that encodes back to a token of that position.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "fuzz/check.h"
#include "server/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view token(reinterpret_cast<const char*>(data), size);
  auto decoded = sessiond::DecodePageToken(token);
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  if (!decoded->has_value()) {
    FUZZ_CHECK(token.empty());
    return 0;
  }
  auto again = sessiond::DecodePageToken(sessiond::EncodePageToken(**decoded));
  FUZZ_CHECK(again.ok() && again->has_value());
  FUZZ_CHECK((*again)->last_active_at == (*decoded)->last_active_at);
  FUZZ_CHECK((*again)->id == (*decoded)->id);
  return 0;
}
