// Sha256Hex: what a policy file's api_key_sha256 holds for a key, for tests.
#ifndef SESSIOND_TESTS_AUTH_SHA256_HEX_H_
#define SESSIOND_TESTS_AUTH_SHA256_HEX_H_

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "crypto/token.h"

namespace sessiond::auth {

// Lowercase hex of SHA-256(key).
inline std::string Sha256Hex(absl::string_view key) {
  return absl::BytesToHexString(crypto::HashToken(key));
}

}  // namespace sessiond::auth

#endif  // SESSIOND_TESTS_AUTH_SHA256_HEX_H_
