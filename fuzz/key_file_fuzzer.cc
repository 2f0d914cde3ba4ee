// Key-file content on arbitrary bytes: never crashes; a key is read only
// from the base64 of exactly 32 bytes, and errors tell nothing of the
// content but its length.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "crypto/key_ring.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto key = sessiond::crypto::KeyFromFileText(text, "key file F");
  if (key.ok()) {
    FUZZ_CHECK(key->id().size() == sessiond::crypto::SecretKey::kIdSize);
    return 0;
  }
  FUZZ_CHECK(key.status().code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(absl::StartsWith(key.status().message(), "key file F"));
  // The message tells only the length: it is the one that text of no key
  // at all ('!' is not base64) of the same length gets.
  const std::string same_length(absl::StripAsciiWhitespace(text).size(), '!');
  auto placeholder =
      sessiond::crypto::KeyFromFileText(same_length, "key file F");
  FUZZ_CHECK(!placeholder.ok());
  FUZZ_CHECK(placeholder.status().message() == key.status().message());
  return 0;
}
