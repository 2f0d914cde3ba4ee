#include "crypto/key_ring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace sessiond::crypto {
namespace {

// Bytes 0x00..0x1f. Its key file text and id were computed independently:
//   base64 of the bytes, and
//   printf 'sessiond key id v1' |
//     openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f
// whose digest starts eedf488e.
std::string CountingKey() {
  std::string key;
  for (int i = 0; i < 32; ++i) key.push_back(static_cast<char>(i));
  return key;
}
constexpr char kCountingKeyText[] =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
constexpr char kCountingKeyIdHex[] = "eedf488e";

std::string RandomKey(std::mt19937& rng) {
  std::string key(32, '\0');
  for (char& c : key) c = static_cast<char>(rng() & 0xff);
  return key;
}

std::string Hex(absl::string_view s) { return absl::BytesToHexString(s); }

// A fresh path under TEST_TMPDIR, unique to the running test.
std::string TempPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path =
      absl::StrCat(dir != nullptr ? dir : "/tmp", "/", info->test_suite_name(),
                   ".", info->name(), ".", name);
  ::unlink(path.c_str());
  return path;
}

// Writes `content` to a new file at `path` with exactly `mode`.
void WriteFile(const std::string& path, absl::string_view content,
               mode_t mode = 0600) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ASSERT_EQ(::close(fd), 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The error names `path` and does not leak the key, in text or raw form.
void ExpectSafeError(const absl::Status& status, const std::string& path,
                     absl::string_view key_text, absl::string_view raw_key) {
  EXPECT_TRUE(absl::StrContains(status.message(), path)) << status;
  if (key_text.size() >= 8) {
    EXPECT_FALSE(absl::StrContains(status.message(), key_text.substr(0, 8)))
        << status;
  }
  if (raw_key.size() >= 4) {
    EXPECT_FALSE(absl::StrContains(status.message(), raw_key.substr(0, 4)))
        << status;
  }
}

// --- SecretKey ---

TEST(SecretKeyTest, IdIsPrefixOfHmac) {
  absl::StatusOr<SecretKey> key = SecretKey::FromBytes(CountingKey());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(Hex(key->id()), kCountingKeyIdHex);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(key->data()), 32),
            CountingKey());
}

TEST(SecretKeyTest, RejectsWrongSize) {
  for (size_t size : {0, 1, 16, 31, 33, 64}) {
    std::string bytes(size, 'k');
    absl::StatusOr<SecretKey> key = SecretKey::FromBytes(bytes);
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << size;
    if (size >= 4) {
      EXPECT_FALSE(absl::StrContains(key.status().message(), "kkkk"));
    }
  }
}

TEST(SecretKeyTest, MoveWipesSource) {
  absl::StatusOr<SecretKey> key = SecretKey::FromBytes(CountingKey());
  ASSERT_TRUE(key.ok());
  const std::string zeros(32, '\0');
  auto bytes_of = [](const SecretKey& k) {
    return std::string(reinterpret_cast<const char*>(k.data()), 32);
  };

  SecretKey moved(*std::move(key));
  EXPECT_EQ(bytes_of(moved), CountingKey());
  EXPECT_EQ(Hex(moved.id()), kCountingKeyIdHex);
  EXPECT_EQ(bytes_of(*key), zeros);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(Hex(key->id()), "00000000");

  absl::StatusOr<SecretKey> other = SecretKey::FromBytes(std::string(32, 'x'));
  ASSERT_TRUE(other.ok());
  *other = std::move(moved);
  EXPECT_EQ(bytes_of(*other), CountingKey());
  EXPECT_EQ(bytes_of(moved), zeros);  // NOLINT(bugprone-use-after-move)
}

// --- KeyRing::FromKeys ---

TEST(KeyRingTest, FromKeysFirstIsCurrentAllCanBeFound) {
  std::mt19937 rng(1);
  const std::string a = RandomKey(rng), b = RandomKey(rng), c = RandomKey(rng);
  absl::StatusOr<KeyRing> ring = KeyRing::FromKeys({b, a, c});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->size(), 3u);
  const std::string b_bytes(
      reinterpret_cast<const char*>(ring->current().data()), 32);
  EXPECT_EQ(b_bytes, b);
  for (const std::string& raw : {a, b, c}) {
    absl::StatusOr<SecretKey> key = SecretKey::FromBytes(raw);
    ASSERT_TRUE(key.ok());
    const SecretKey* found = ring->Find(key->id());
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(found->data()), 32),
              raw);
  }
  EXPECT_EQ(ring->Find(""), nullptr);
  EXPECT_EQ(ring->Find(std::string(4, '\0')), nullptr);
  EXPECT_EQ(ring->Find(ring->current().id().substr(0, 3)), nullptr);
}

TEST(KeyRingTest, FromKeysRejectsEmptyWrongSizeAndDuplicates) {
  EXPECT_EQ(KeyRing::FromKeys({}).status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::Status status =
      KeyRing::FromKeys({CountingKey(), std::string(31, 'k')}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "keys[1]")) << status;

  status =
      KeyRing::FromKeys({CountingKey(), std::string(32, 'k'), CountingKey()})
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "keys[0]")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "keys[2]")) << status;
}

TEST(KeyRingTest, MovesAndLeavesSourceEmpty) {
  absl::StatusOr<KeyRing> ring = KeyRing::FromKeys({CountingKey()});
  ASSERT_TRUE(ring.ok());
  KeyRing moved(*std::move(ring));
  EXPECT_EQ(moved.size(), 1u);
  EXPECT_EQ(Hex(moved.current().id()), kCountingKeyIdHex);
  EXPECT_EQ(ring->size(), 0u);  // NOLINT(bugprone-use-after-move)
}

// --- KeyRing::FromFiles ---

TEST(KeyFileTest, LoadsGoodFile) {
  const std::string path = TempPath("key");
  WriteFile(path, absl::StrCat(kCountingKeyText, "\n"));
  absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({path});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->size(), 1u);
  EXPECT_EQ(Hex(ring->current().id()), kCountingKeyIdHex);
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(ring->current().data()), 32),
      CountingKey());
}

TEST(KeyFileTest, IgnoresSurroundingWhitespace) {
  for (absl::string_view padding : {"", " ", "\n", "\r\n", " \t\n\n"}) {
    const std::string path = TempPath("key");
    WriteFile(path, absl::StrCat(padding, kCountingKeyText, padding));
    absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({path});
    ASSERT_TRUE(ring.ok()) << ring.status();
    EXPECT_EQ(Hex(ring->current().id()), kCountingKeyIdHex);
  }
}

// Exercises the decoder over the whole alphabet: absl encodes, we decode.
TEST(KeyFileTest, LoadsAnyKeyAsBase64EncodesIt) {
  std::mt19937 rng(2);
  const std::string path = TempPath("key");
  for (int i = 0; i < 300; ++i) {
    const std::string raw = RandomKey(rng);
    WriteFile(path, absl::StrCat(absl::Base64Escape(raw), "\n"));
    absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({path});
    ASSERT_TRUE(ring.ok()) << ring.status();
    ASSERT_EQ(
        std::string(reinterpret_cast<const char*>(ring->current().data()), 32),
        raw)
        << absl::Base64Escape(raw);
  }
}

TEST(KeyFileTest, FirstFileIsCurrentRestAreOlder) {
  std::mt19937 rng(3);
  const std::string old_raw = RandomKey(rng);
  const std::string new_path = TempPath("new");
  const std::string old_path = TempPath("old");
  WriteFile(new_path, kCountingKeyText);
  WriteFile(old_path, absl::Base64Escape(old_raw));
  absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({new_path, old_path});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->size(), 2u);
  EXPECT_EQ(Hex(ring->current().id()), kCountingKeyIdHex);
  absl::StatusOr<SecretKey> old_key = SecretKey::FromBytes(old_raw);
  ASSERT_TRUE(old_key.ok());
  EXPECT_NE(ring->Find(old_key->id()), nullptr);
}

TEST(KeyFileTest, RejectsEmptyList) {
  EXPECT_EQ(KeyRing::FromFiles({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KeyFileTest, RejectsSameKeyTwice) {
  const std::string a = TempPath("a");
  const std::string b = TempPath("b");
  WriteFile(a, kCountingKeyText);
  WriteFile(b, absl::StrCat(kCountingKeyText, "\n"));
  absl::Status status = KeyRing::FromFiles({a, b}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  ExpectSafeError(status, a, kCountingKeyText, CountingKey());
  EXPECT_TRUE(absl::StrContains(status.message(), b)) << status;
}

TEST(KeyFileTest, RejectsWrongLength) {
  std::mt19937 rng(4);
  const std::string raw = RandomKey(rng) + RandomKey(rng);
  for (size_t size : {0, 1, 16, 31, 33, 48, 64}) {
    SCOPED_TRACE(size);
    const std::string key_text = absl::Base64Escape(raw.substr(0, size));
    const std::string path = TempPath("key");
    WriteFile(path, absl::StrCat(key_text, "\n"));
    absl::Status status = KeyRing::FromFiles({path}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    ExpectSafeError(status, path, key_text, raw.substr(0, size));
  }
}

TEST(KeyFileTest, RejectsInvalidBase64) {
  std::mt19937 rng(5);
  std::string raw = RandomKey(rng);
  raw.replace(0, 3, "\xfb\xef\xff");  // encodes as "++//"
  const std::string good = absl::Base64Escape(raw);
  ASSERT_EQ(good.size(), 44u);
  ASSERT_EQ(good.substr(0, 4), "++//");

  std::vector<std::string> bad_texts;
  for (char c : {'!', '*', '-', '_', '.', '=', ' ', '\0', '\xff'}) {
    for (size_t i : {0, 10, 42}) {
      std::string text = good;
      text[i] = c;
      bad_texts.push_back(text);
    }
  }
  bad_texts.push_back(good.substr(0, 43));                           // no '='
  bad_texts.push_back(good.substr(0, 43) + "A");                     // no '='
  bad_texts.push_back(good.substr(0, 20) + "\n" + good.substr(20));  // split
  bad_texts.push_back(absl::WebSafeBase64Escape(raw) + "=");  // "--__..."
  // Non-canonical: the last data character has non-zero spare bits
  // (canonical is "...Hh8=").
  const std::string counting = kCountingKeyText;
  bad_texts.push_back(counting.substr(0, 42) + "9=");
  bad_texts.push_back(counting.substr(0, 42) + "/=");

  for (const std::string& text : bad_texts) {
    SCOPED_TRACE(absl::CEscape(text));
    const std::string path = TempPath("key");
    WriteFile(path, text);
    absl::Status status = KeyRing::FromFiles({path}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    ExpectSafeError(status, path, text, raw);
  }
}

TEST(KeyFileTest, RejectsOversizedFile) {
  const std::string path = TempPath("key");
  WriteFile(path, absl::StrCat(kCountingKeyText, std::string(4000, ' ')));
  absl::Status status = KeyRing::FromFiles({path}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  ExpectSafeError(status, path, kCountingKeyText, CountingKey());
}

TEST(KeyFileTest, RefusesFilesOthersCanReadOrWrite) {
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602, 0660, 0666, 0610 | 0040}) {
    SCOPED_TRACE(mode);
    const std::string path = TempPath("key");
    WriteFile(path, kCountingKeyText, mode);
    absl::Status status = KeyRing::FromFiles({path}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    ExpectSafeError(status, path, kCountingKeyText, CountingKey());
    EXPECT_TRUE(absl::StrContains(status.message(), "chmod 600")) << status;
  }
}

TEST(KeyFileTest, AcceptsOwnerOnlyModes) {
  for (mode_t mode : {0600, 0400, 0700, 0611}) {
    SCOPED_TRACE(mode);
    const std::string path = TempPath("key");
    WriteFile(path, kCountingKeyText, mode);
    absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({path});
    EXPECT_TRUE(ring.ok()) << ring.status();
  }
}

TEST(KeyFileTest, MissingFileIsNotFound) {
  const std::string good = TempPath("good");
  WriteFile(good, kCountingKeyText);
  const std::string missing = TempPath("missing");
  absl::Status status = KeyRing::FromFiles({good, missing}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  ExpectSafeError(status, missing, kCountingKeyText, CountingKey());
}

TEST(KeyFileTest, RejectsDirectory) {
  const std::string dir = TempPath("dir");
  ::rmdir(dir.c_str());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0700), 0);
  absl::Status status = KeyRing::FromFiles({dir}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), dir)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "not a regular file"))
      << status;
}

// A FIFO is refused without blocking on it.
TEST(KeyFileTest, RejectsFifo) {
  const std::string fifo = TempPath("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  absl::Status status = KeyRing::FromFiles({fifo}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), fifo)) << status;
}

TEST(KeyFileTest, FollowsSymlinkToPrivateFile) {
  const std::string target = TempPath("target");
  const std::string link = TempPath("link");
  WriteFile(target, kCountingKeyText);
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({link});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(Hex(ring->current().id()), kCountingKeyIdHex);
}

// --- KeyRing::CreateKeyFile ---

TEST(CreateKeyFileTest, MakesPrivateFileThatLoads) {
  const std::string path = TempPath("key");
  ASSERT_TRUE(KeyRing::CreateKeyFile(path).ok());

  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // The content is what `openssl rand -base64 32` prints: checked with absl.
  const std::string content = ReadFile(path);
  ASSERT_EQ(content.size(), 45u);
  EXPECT_EQ(content.back(), '\n');
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(content.substr(0, 44), &raw));
  ASSERT_EQ(raw.size(), 32u);
  EXPECT_EQ(absl::Base64Escape(raw), content.substr(0, 44));

  absl::StatusOr<KeyRing> ring = KeyRing::FromFiles({path});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(ring->current().data()), 32),
      raw);
}

TEST(CreateKeyFileTest, RefusesToOverwrite) {
  const std::string path = TempPath("key");
  ASSERT_TRUE(KeyRing::CreateKeyFile(path).ok());
  const std::string before = ReadFile(path);
  absl::Status status = KeyRing::CreateKeyFile(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), path)) << status;
  EXPECT_EQ(ReadFile(path), before);

  const std::string other = TempPath("other");
  WriteFile(other, "not a key", 0644);
  EXPECT_EQ(KeyRing::CreateKeyFile(other).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFile(other), "not a key");
}

TEST(CreateKeyFileTest, RefusesDanglingSymlink) {
  const std::string target = TempPath("target");
  const std::string link = TempPath("link");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(KeyRing::CreateKeyFile(link).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_NE(::access(target.c_str(), F_OK), 0);
}

TEST(CreateKeyFileTest, IgnoresRestrictiveUmask) {
  const std::string path = TempPath("key");
  const mode_t old_umask = ::umask(0277);
  absl::Status status = KeyRing::CreateKeyFile(path);
  ::umask(old_umask);
  ASSERT_TRUE(status.ok()) << status;
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(CreateKeyFileTest, EachKeyIsFresh) {
  const std::string a = TempPath("a");
  const std::string b = TempPath("b");
  ASSERT_TRUE(KeyRing::CreateKeyFile(a).ok());
  ASSERT_TRUE(KeyRing::CreateKeyFile(b).ok());
  EXPECT_NE(ReadFile(a), ReadFile(b));
  EXPECT_TRUE(KeyRing::FromFiles({a, b}).ok());
}

TEST(CreateKeyFileTest, MissingDirectoryNamesPath) {
  const std::string path = TempPath("no-such-dir") + "/key";
  absl::Status status = KeyRing::CreateKeyFile(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), path)) << status;
}

}  // namespace
}  // namespace sessiond::crypto
