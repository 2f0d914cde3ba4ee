#include "crypto/token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/escaping.h"

namespace sessiond::crypto {
namespace {

// N random bytes, URL-safe base64 without padding. Aborts on CSPRNG failure.
template <size_t N>
std::string RandomUrlSafe(const char* what) {
  std::array<uint8_t, N> bytes;
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    std::fprintf(stderr,
                 "sessiond: FATAL: RAND_bytes failed while making a %s; "
                 "refusing to continue without a working CSPRNG\n",
                 what);
    std::abort();
  }
  std::string out = absl::WebSafeBase64Escape(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return out;
}

// The 6-bit value of a URL-safe base64 character, or -1.
int UrlSafeValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// True iff `s` is the canonical unpadded URL-safe base64 of `bytes` bytes.
bool IsCanonicalUrlSafe(absl::string_view s, size_t bytes) {
  const size_t length = (bytes * 8 + 5) / 6;
  if (s.size() != length) return false;
  for (char c : s) {
    if (UrlSafeValue(c) < 0) return false;
  }
  // The last character holds (6 - unused) payload bits; the unused low bits
  // must be zero.
  const size_t unused_bits = length * 6 - bytes * 8;
  const int mask = (1 << unused_bits) - 1;
  return (UrlSafeValue(s.back()) & mask) == 0;
}

}  // namespace

std::string NewToken() { return RandomUrlSafe<kTokenBytes>("token"); }

std::string NewSessionId() {
  return RandomUrlSafe<kSessionIdBytes>("session id");
}

bool IsWellFormedToken(absl::string_view s) {
  return IsCanonicalUrlSafe(s, kTokenBytes);
}

bool IsWellFormedSessionId(absl::string_view s) {
  return IsCanonicalUrlSafe(s, kSessionIdBytes);
}

std::string NewSessionToken(absl::string_view session_id) {
  std::string token(session_id);
  token.push_back(kSessionTokenSeparator);
  token += NewToken();
  return token;
}

bool IsWellFormedSessionToken(absl::string_view s) {
  return s.size() == kSessionTokenLength &&
         s[kSessionIdLength] == kSessionTokenSeparator &&
         IsWellFormedSessionId(s.substr(0, kSessionIdLength)) &&
         IsWellFormedToken(s.substr(kSessionIdLength + 1));
}

absl::string_view SessionIdOfToken(absl::string_view session_token) {
  return session_token.substr(0, kSessionIdLength);
}

std::string HashToken(absl::string_view token) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  // An empty string_view may have a null data(); never hand that on.
  const char* data = token.empty() ? "" : token.data();
  SHA256(reinterpret_cast<const unsigned char*>(data), token.size(),
         reinterpret_cast<unsigned char*>(&digest[0]));
  return digest;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sessiond::crypto
