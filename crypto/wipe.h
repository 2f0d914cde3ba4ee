// Wipe: overwrite secret bytes in memory before they are released, in a way
// the compiler may not optimize away.
#ifndef SESSIOND_CRYPTO_WIPE_H_
#define SESSIOND_CRYPTO_WIPE_H_

#include <openssl/crypto.h>

#include <string>

namespace sessiond::crypto {

// Zeroes the string's whole buffer (its capacity, not just its size), then
// empties it.
inline void Wipe(std::string* secret) {
  if (secret->capacity() > 0) {
    secret->resize(secret->capacity());
    OPENSSL_cleanse(secret->data(), secret->size());
  }
  secret->clear();
}

}  // namespace sessiond::crypto

#endif  // SESSIOND_CRYPTO_WIPE_H_
