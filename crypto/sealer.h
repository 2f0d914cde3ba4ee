// Sealer: authenticated encryption of session payloads at rest.
//
// The server seals each session's user data bound to the session id before
// handing it to storage, and opens it on the way back. A blob opens only
// under the same associated data it was sealed with, so blobs cannot be
// swapped between sessions.
//
// Every blob starts with a format byte:
//   0x00  plaintext (NewPlaintextSealer): 0x00 | plaintext
//   0x01  AES-256-GCM (NewAesGcmSealer):
//         0x01 | key_id(4) | nonce(12) | ciphertext | tag(16)
//         The GCM additional data is the 5-byte header (format byte and key
//         id) followed by the caller's associated_data. The nonce is fresh
//         and random for every Seal; the ciphertext is as long as the
//         plaintext.
#ifndef SESSIOND_CRYPTO_SEALER_H_
#define SESSIOND_CRYPTO_SEALER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/key_ring.h"

namespace sessiond::crypto {

// Bytes an AES-256-GCM blob adds to its plaintext: header, nonce and tag.
inline constexpr size_t kAesGcmOverhead = 1 + SecretKey::kIdSize + 12 + 16;

// Implementations are immutable and safe to use from many threads at once.
class Sealer {
 public:
  virtual ~Sealer() = default;

  // Encrypts and authenticates `plaintext`, bound to `associated_data`
  // (e.g. the session id).
  virtual absl::StatusOr<std::string> Seal(
      absl::string_view plaintext, absl::string_view associated_data) const = 0;

  // Reverses Seal. DATA_LOSS if the blob is malformed, was tampered with, was
  // sealed for other associated data, or under a key not in the ring. Never
  // returns unauthenticated bytes.
  virtual absl::StatusOr<std::string> Open(
      absl::string_view sealed, absl::string_view associated_data) const = 0;

  // False only for the plaintext sealer.
  virtual bool encrypts() const = 0;
};

// The explicit --insecure-plaintext opt-out: Seal prepends the format byte
// 0x00 and neither encrypts nor authenticates; associated_data is ignored.
// Open returns DATA_LOSS for anything that does not start with 0x00
// (including AES-GCM blobs).
std::unique_ptr<Sealer> NewPlaintextSealer();

// AES-256-GCM under `ring`: Seal uses ring.current(); Open uses the key whose
// id the blob names (no trial decryption), so blobs sealed under older keys
// still open. Seal fails with INVALID_ARGUMENT for a plaintext too large for
// one blob (about 2 GiB) and INTERNAL if the CSPRNG or cipher fails.
// INVALID_ARGUMENT if `ring` is empty (moved from).
absl::StatusOr<std::unique_ptr<Sealer>> NewAesGcmSealer(KeyRing ring);

}  // namespace sessiond::crypto

#endif  // SESSIOND_CRYPTO_SEALER_H_
