// KeyRing: the AES-256 keys that seal session payloads.
//
// A ring holds one current key, which seals, and any number of older keys,
// which can still open what they sealed. Rotation: make a new key file, list
// it first and the old one after it; once every blob sealed under the old
// key has expired, drop it.
//
// Every key has a 4-byte id derived from the key itself (the first 4 bytes of
// HMAC-SHA256(key, "sessiond key id v1")). Sealed blobs carry it so that Open
// picks the right key directly. Ids are not secret.
//
// Key bytes never appear in a Status message. They live only in SecretKey,
// which wipes them when destroyed or moved from.
#ifndef SESSIOND_CRYPTO_KEY_RING_H_
#define SESSIOND_CRYPTO_KEY_RING_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sessiond::crypto {

// One 32-byte key and its id. Movable, not copyable. Wiped (with
// OPENSSL_cleanse) on destruction; a moved-from key is all zeros.
class SecretKey {
 public:
  static constexpr size_t kSize = 32;
  static constexpr size_t kIdSize = 4;

  // A key holding a copy of `bytes`. INVALID_ARGUMENT unless `bytes` is
  // exactly kSize long (INTERNAL if HMAC fails while deriving the id). The
  // caller still owns (and should wipe) `bytes`.
  static absl::StatusOr<SecretKey> FromBytes(absl::string_view bytes);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  // kSize bytes.
  const uint8_t* data() const { return bytes_.data(); }
  // kIdSize raw bytes.
  absl::string_view id() const {
    return absl::string_view(id_.data(), id_.size());
  }

 private:
  SecretKey() = default;
  void Wipe();

  std::array<uint8_t, kSize> bytes_{};
  std::array<char, kIdSize> id_{};
};

// The key that a key file's content holds: the standard base64 of exactly
// 32 bytes, whitespace around it ignored (KeyRing::FromFiles). Otherwise
// INVALID_ARGUMENT, naming `name` (say "key file PATH"), never the text.
absl::StatusOr<SecretKey> KeyFromFileText(absl::string_view file_text,
                                          absl::string_view name);

class KeyRing {
 public:
  // Loads one key per file. paths[0] is the current key; the rest are older
  // keys that can still open. A key file holds the standard base64 of exactly
  // 32 bytes, as `openssl rand -base64 32` prints; whitespace around it is
  // ignored. Errors name the offending path, never key bytes:
  //   INVALID_ARGUMENT    `paths` is empty, a file's content is not the
  //                       base64 of 32 bytes, or two keys share an id;
  //   FAILED_PRECONDITION a file is readable or writable by group or others
  //                       (fix: chmod 600), or is not a regular file;
  //   NOT_FOUND, PERMISSION_DENIED, ... when a file cannot be read.
  static absl::StatusOr<KeyRing> FromFiles(
      const std::vector<std::string>& paths);

  // As FromFiles, but from raw keys (each exactly 32 bytes); keys[0] is the
  // current key. Meant for tests.
  static absl::StatusOr<KeyRing> FromKeys(const std::vector<std::string>& keys);

  // Writes a fresh random key to `path` in the format FromFiles reads, with
  // mode 0600. Never overwrites: ALREADY_EXISTS if `path` exists (including
  // as a dangling symlink).
  static absl::Status CreateKeyFile(const std::string& path);

  KeyRing(KeyRing&&) noexcept = default;
  KeyRing& operator=(KeyRing&&) noexcept = default;
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;
  ~KeyRing() = default;

  // The number of keys. At least 1, except 0 for a moved-from ring, on which
  // only size(), assignment and destruction are allowed.
  size_t size() const { return keys_.size(); }

  // The key that seals.
  const SecretKey& current() const { return keys_.front(); }

  // The key whose id is `id`, or nullptr if none is.
  const SecretKey* Find(absl::string_view id) const;

 private:
  explicit KeyRing(std::vector<SecretKey> keys) : keys_(std::move(keys)) {}

  // Checks for duplicate ids; `names[i]` describes keys[i] in errors.
  static absl::StatusOr<KeyRing> Make(std::vector<SecretKey> keys,
                                      const std::vector<std::string>& names);

  std::vector<SecretKey> keys_;  // keys_[0] is current.
};

}  // namespace sessiond::crypto

#endif  // SESSIOND_CRYPTO_KEY_RING_H_
