// ReadSecretFile: the one way sessiond reads a secret from a file (key files,
// database passwords): a regular file private to its owner, of bounded size,
// read into memory that is wiped when it is released.
#ifndef SESSIOND_CRYPTO_SECRET_FILE_H_
#define SESSIOND_CRYPTO_SECRET_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sessiond::crypto {

// A secret in memory: zeroed (its whole buffer) when destroyed or
// reassigned. Move-only.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret();

  absl::string_view view() const { return value_; }
  bool empty() const { return value_.empty(); }

 private:
  std::string value_;
};

// Reads the secret in `path` (`what` names it in messages, e.g. "key file").
// The content, less any trailing CR and LF characters, is the secret.
// FAILED_PRECONDITION if the file is not a regular file or group or others
// may read or write it (the message says how to fix the mode);
// INVALID_ARGUMENT if it is larger than `max_size` bytes or holds nothing
// but line ends; the errno's code if it cannot be opened or read. Messages
// name the path, never the content.
absl::StatusOr<Secret> ReadSecretFile(const std::string& path,
                                      absl::string_view what,
                                      size_t max_size = 4096);

}  // namespace sessiond::crypto

#endif  // SESSIOND_CRYPTO_SECRET_FILE_H_
