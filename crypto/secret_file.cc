#include "crypto/secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crypto/wipe.h"

namespace sessiond::crypto {

Secret::Secret(Secret&& other) noexcept : value_(std::move(other.value_)) {
  Wipe(&other.value_);
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    Wipe(&value_);
    value_ = std::move(other.value_);
    Wipe(&other.value_);
  }
  return *this;
}

Secret::~Secret() { Wipe(&value_); }

absl::StatusOr<Secret> ReadSecretFile(const std::string& path,
                                      absl::string_view what, size_t max_size) {
  const int fd =
      ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot open ", what, " ", path));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot stat ", what, " ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", path, " is not a regular file"));
  }
  if ((st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s %s has mode %04o, so group or others can read or write it; it "
        "must be private to its owner. Fix with: chmod 600 %s",
        what, path, st.st_mode & 07777, path));
  }

  // One byte more than allowed tells a file that is too large.
  std::string buffer(max_size + 1, '\0');
  size_t size = 0;
  while (size < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + size, buffer.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      Wipe(&buffer);
      return absl::ErrnoToStatus(error,
                                 absl::StrCat("cannot read ", what, " ", path));
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  if (size > max_size) {
    Wipe(&buffer);
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is larger than ", max_size, " bytes"));
  }
  while (size > 0 && (buffer[size - 1] == '\n' || buffer[size - 1] == '\r')) {
    --size;
  }
  if (size == 0) {
    Wipe(&buffer);
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is empty"));
  }
  // Shrinking keeps the buffer; the Secret wipes all of it.
  OPENSSL_cleanse(buffer.data() + size, buffer.size() - size);
  buffer.resize(size);
  return Secret(std::move(buffer));
}

}  // namespace sessiond::crypto
