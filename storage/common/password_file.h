// ReadPasswordFile: the database password a backend's password_file option
// names, read with crypto::ReadSecretFile, with one mapping of its errors.
#ifndef SESSIOND_STORAGE_COMMON_PASSWORD_FILE_H_
#define SESSIOND_STORAGE_COMMON_PASSWORD_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "crypto/secret_file.h"

namespace sessiond::storage {

// The password in `path`, with trailing CR and LF removed. Errors, their
// messages starting with "<backend>: ": FAILED_PRECONDITION for a file that
// is not a regular file or that group or others may read or write;
// INVALID_ARGUMENT for one that cannot be read, is empty, or is larger
// than 4096 bytes (the option is wrong: the open fails, and says so).
inline absl::StatusOr<crypto::Secret> ReadPasswordFile(
    absl::string_view backend, const std::string& path) {
  absl::StatusOr<crypto::Secret> password =
      crypto::ReadSecretFile(path, "password file", /*max_size=*/4096);
  if (password.ok()) return password;
  const absl::StatusCode code = absl::IsFailedPrecondition(password.status())
                                    ? absl::StatusCode::kFailedPrecondition
                                    : absl::StatusCode::kInvalidArgument;
  return absl::Status(code,
                      absl::StrCat(backend, ": ", password.status().message()));
}

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_COMMON_PASSWORD_FILE_H_
