// Sha256Hex: what a policy file's api_key_sha256 holds for a key, for tests.
#ifndef SESSIOND_TESTS_AUTH_SHA256_HEX_H_
#define SESSIOND_TESTS_AUTH_SHA256_HEX_H_

#include <openssl/evp.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace sessiond::auth {

// Lowercase hex of SHA-256(key).
inline std::string Sha256Hex(absl::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(key.data(), key.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

}  // namespace sessiond::auth

#endif  // SESSIOND_TESTS_AUTH_SHA256_HEX_H_
