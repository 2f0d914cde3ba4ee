// Token and session-id parsing on arbitrary bytes: never crashes, and what
// it accepts has the one spelling and the shape the API promises.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "crypto/token.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace crypto = sessiond::crypto;
  const absl::string_view s(reinterpret_cast<const char*>(data), size);
  if (crypto::IsWellFormedToken(s)) {
    FUZZ_CHECK(s.size() == crypto::kTokenLength);
  }
  if (crypto::IsWellFormedSessionId(s)) {
    FUZZ_CHECK(s.size() == crypto::kSessionIdLength);
    FUZZ_CHECK(crypto::IsWellFormedSessionToken(crypto::NewSessionToken(s)));
  }
  if (crypto::IsWellFormedSessionToken(s)) {
    FUZZ_CHECK(s.size() == crypto::kSessionTokenLength);
    const absl::string_view id = crypto::SessionIdOfToken(s);
    FUZZ_CHECK(crypto::IsWellFormedSessionId(id));
    FUZZ_CHECK(s.substr(0, id.size()) == id);
  }
  FUZZ_CHECK(crypto::HashToken(s).size() == 32);
  FUZZ_CHECK(crypto::ConstantTimeEquals(s, std::string(s)));
  if (!s.empty()) {
    std::string other(s);
    other.back() ^= 0x20;
    FUZZ_CHECK(!crypto::ConstantTimeEquals(s, other));
  }
  return 0;
}
