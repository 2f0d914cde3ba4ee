#include "crypto/key_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crypto/secret_file.h"

namespace sessiond::crypto {
namespace {

constexpr char kKeyIdLabel[] = "sessiond key id v1";

// Standard base64 of kSize bytes: 43 characters and one '='.
constexpr size_t kKeyTextSize = 44;
// Larger key files are refused unread.
constexpr size_t kMaxKeyFileSize = 1024;

// A fixed-size buffer that is wiped when it goes out of scope.
template <size_t N>
struct WipedBuffer {
  WipedBuffer() = default;
  WipedBuffer(const WipedBuffer&) = delete;
  WipedBuffer& operator=(const WipedBuffer&) = delete;
  ~WipedBuffer() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  std::array<uint8_t, N> bytes{};
};

// Closes a file descriptor on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports the result.
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Key bytes are secret, so base64 is done without table lookups or branches
// that depend on them (the technique of libsodium's sodium_bin2base64).

// The character for 6-bit value `x` in the standard alphabet.
char Base64Char(unsigned x) {
  int v = static_cast<int>(x);
  int diff = 'A';
  diff += ((25 - v) >> 8) & 6;    // 'a' - 26 - 'A'
  diff += ((51 - v) >> 8) & -75;  // '0' - 52 - ('a' - 26)
  diff += ((61 - v) >> 8) & -15;  // '+' - 62 - ('0' - 52)
  diff += ((62 - v) >> 8) & 3;    // '/' - 63 - ('+' - 62)
  return static_cast<char>(v + diff);
}

// The 6-bit value of a standard base64 character, or -1.
int Base64Value(char ch) {
  const int c = static_cast<unsigned char>(ch);
  int ret = -1;
  ret += (((0x40 - c) & (c - 0x5b)) >> 8) & (c - 64);  // 'A'..'Z'
  ret += (((0x60 - c) & (c - 0x7b)) >> 8) & (c - 70);  // 'a'..'z'
  ret += (((0x2f - c) & (c - 0x3a)) >> 8) & (c + 5);   // '0'..'9'
  ret += (((0x2a - c) & (c - 0x2c)) >> 8) & 63;        // '+'
  ret += (((0x2e - c) & (c - 0x30)) >> 8) & 64;        // '/'
  return ret;
}

// Writes the kKeyTextSize-character base64 of kSize bytes at `key` to `out`.
void EncodeKey(const uint8_t* key, uint8_t* out) {
  uint32_t acc = 0;
  int bits = 0;
  size_t n = 0;
  for (size_t i = 0; i < SecretKey::kSize; ++i) {
    acc = (acc << 8) | key[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[n++] = Base64Char((acc >> bits) & 63);
    }
  }
  out[n++] = Base64Char((acc << (6 - bits)) & 63);  // bits == 4 here
  out[n++] = '=';
  acc = 0;
}

// Decodes `text`, which must be the canonical standard base64 of exactly
// kSize bytes, into `out`. Returns false otherwise.
bool DecodeKey(absl::string_view text, uint8_t* out) {
  if (text.size() != kKeyTextSize || text[kKeyTextSize - 1] != '=') {
    return false;
  }
  uint32_t acc = 0;
  int bits = 0;
  size_t n = 0;
  int bad = 0;
  for (size_t i = 0; i + 1 < kKeyTextSize; ++i) {
    const int v = Base64Value(text[i]);
    bad |= v >> 8;  // -1 for an invalid character, else 0
    acc = (acc << 6) | static_cast<uint32_t>(v & 63);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = static_cast<uint8_t>(acc >> bits);
    }
  }
  // Two bits are left over; a canonical encoding leaves them zero.
  bad |= static_cast<int>(acc & 3);
  acc = 0;
  return bad == 0;
}

absl::StatusOr<SecretKey> LoadKeyFile(const std::string& path) {
  absl::StatusOr<Secret> file =
      ReadSecretFile(path, "key file", kMaxKeyFileSize);
  if (!file.ok()) return file.status();
  return KeyFromFileText(file->view(), absl::StrCat("key file ", path));
}

}  // namespace

absl::StatusOr<SecretKey> KeyFromFileText(absl::string_view file_text,
                                          absl::string_view name) {
  const absl::string_view text = absl::StripAsciiWhitespace(file_text);
  WipedBuffer<SecretKey::kSize> raw;
  if (!DecodeKey(text, raw.bytes.data())) {
    const std::string found =
        text.size() != kKeyTextSize
            ? absl::StrCat("found ", text.size(), " characters")
            : "found 44 characters that are not valid canonical base64";
    return absl::InvalidArgumentError(absl::StrCat(
        name,
        " does not hold a key: expected the standard base64 of exactly 32 "
        "bytes (44 characters, as `openssl rand -base64 32` prints), ",
        found));
  }
  absl::StatusOr<SecretKey> key = SecretKey::FromBytes(absl::string_view(
      reinterpret_cast<const char*>(raw.bytes.data()), raw.bytes.size()));
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat(name, ": ", key.status().message()));
  }
  return key;
}

// --- SecretKey ---

absl::StatusOr<SecretKey> SecretKey::FromBytes(absl::string_view bytes) {
  if (bytes.size() != kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a key must be exactly ", kSize, " bytes, not ", bytes.size()));
  }
  SecretKey key;
  std::memcpy(key.bytes_.data(), bytes.data(), kSize);
  WipedBuffer<EVP_MAX_MD_SIZE> mac;
  unsigned int mac_size = 0;
  if (HMAC(EVP_sha256(), key.bytes_.data(), static_cast<int>(kSize),
           reinterpret_cast<const unsigned char*>(kKeyIdLabel),
           sizeof(kKeyIdLabel) - 1, mac.bytes.data(), &mac_size) == nullptr ||
      mac_size < kIdSize) {
    return absl::InternalError("HMAC-SHA256 failed while deriving a key id");
  }
  std::memcpy(key.id_.data(), mac.bytes.data(), kIdSize);
  return key;
}

SecretKey::SecretKey(SecretKey&& other) noexcept
    : bytes_(other.bytes_), id_(other.id_) {
  other.Wipe();
}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
    id_ = other.id_;
    other.Wipe();
  }
  return *this;
}

SecretKey::~SecretKey() { Wipe(); }

void SecretKey::Wipe() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
  OPENSSL_cleanse(id_.data(), id_.size());
}

// --- KeyRing ---

absl::StatusOr<KeyRing> KeyRing::FromFiles(
    const std::vector<std::string>& paths) {
  if (paths.empty()) {
    return absl::InvalidArgumentError(
        "no key files given; the first key file is the current key");
  }
  std::vector<SecretKey> keys;
  keys.reserve(paths.size());
  for (const std::string& path : paths) {
    absl::StatusOr<SecretKey> key = LoadKeyFile(path);
    if (!key.ok()) return key.status();
    keys.push_back(*std::move(key));
  }
  std::vector<std::string> names;
  names.reserve(paths.size());
  for (const std::string& path : paths) {
    names.push_back(absl::StrCat("key file ", path));
  }
  return Make(std::move(keys), names);
}

absl::StatusOr<KeyRing> KeyRing::FromKeys(
    const std::vector<std::string>& keys) {
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        "no keys given; the first key is the current key");
  }
  std::vector<SecretKey> secrets;
  secrets.reserve(keys.size());
  std::vector<std::string> names;
  names.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    names.push_back(absl::StrCat("keys[", i, "]"));
    absl::StatusOr<SecretKey> key = SecretKey::FromBytes(keys[i]);
    if (!key.ok()) {
      return absl::Status(
          key.status().code(),
          absl::StrCat(names.back(), ": ", key.status().message()));
    }
    secrets.push_back(*std::move(key));
  }
  return Make(std::move(secrets), names);
}

absl::StatusOr<KeyRing> KeyRing::Make(std::vector<SecretKey> keys,
                                      const std::vector<std::string>& names) {
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t j = i + 1; j < keys.size(); ++j) {
      if (keys[i].id() == keys[j].id()) {
        return absl::InvalidArgumentError(
            absl::StrCat(names[i], " and ", names[j], " have the same key id ",
                         absl::BytesToHexString(keys[i].id()),
                         " (is the same key listed twice?)"));
      }
    }
  }
  return KeyRing(std::move(keys));
}

absl::Status KeyRing::CreateKeyFile(const std::string& path) {
  // Draw the key first, so that a CSPRNG failure leaves no file behind.
  WipedBuffer<SecretKey::kSize> key;
  if (RAND_bytes(key.bytes.data(), static_cast<int>(key.bytes.size())) != 1) {
    return absl::InternalError(
        absl::StrCat("RAND_bytes failed; key file ", path, " not written"));
  }
  WipedBuffer<kKeyTextSize + 1> text;
  EncodeKey(key.bytes.data(), text.bytes.data());
  text.bytes[kKeyTextSize] = '\n';

  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY,
               0600));
  if (fd.get() < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "key file ", path, " already exists; refusing to overwrite it"));
    }
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot create key file ", path));
  }
  // From here on, a failure removes the half-written file.
  auto fail = [&path](int error, absl::string_view what) {
    ::unlink(path.c_str());
    return absl::ErrnoToStatus(
        error, absl::StrCat("cannot ", what, " key file ", path));
  };
  // The umask may have cleared owner bits; set exactly 0600.
  if (::fchmod(fd.get(), 0600) != 0) return fail(errno, "chmod");
  size_t written = 0;
  while (written < text.bytes.size()) {
    ssize_t n = ::write(fd.get(), text.bytes.data() + written,
                        text.bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(errno, "sync");
  if (fd.Close() != 0) return fail(errno, "close");
  // Make the new directory entry durable too: a key that vanished after a
  // power loss would be replaced by a fresh one, and every session sealed
  // under it would become unreadable.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    return fail(errno, "sync the directory of");
  }
  return absl::OkStatus();
}

const SecretKey* KeyRing::Find(absl::string_view id) const {
  for (const SecretKey& key : keys_) {
    if (key.id() == id) return &key;
  }
  return nullptr;
}

}  // namespace sessiond::crypto
