#include "crypto/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace sessiond::crypto {
namespace {

using absl::StatusCode;

// Writes `content` to a fresh file named after the running test, with
// exactly `mode`; returns its path.
std::string WriteFile(absl::string_view name, absl::string_view content,
                      mode_t mode = 0600) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(
      dir != nullptr ? dir : "/tmp", "/",
      testing::UnitTest::GetInstance()->current_test_info()->name(), ".", name);
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  EXPECT_GE(fd, 0) << path;
  EXPECT_EQ(::write(fd, content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  EXPECT_EQ(::fchmod(fd, mode), 0);
  EXPECT_EQ(::close(fd), 0);
  return path;
}

TEST(ReadSecretFileTest, TrailingLineEndsAreNotPartOfTheSecret) {
  for (const char* ending : {"", "\n", "\r\n", "\n\n", "\r\n\r\n"}) {
    const std::string path = WriteFile("s", absl::StrCat(" pass word", ending));
    absl::StatusOr<Secret> secret = ReadSecretFile(path, "password file");
    ASSERT_TRUE(secret.ok()) << secret.status();
    EXPECT_EQ(secret->view(), " pass word") << absl::CEscape(ending);
  }
}

TEST(ReadSecretFileTest, InnerLineEndsAndBinaryBytesAreKept) {
  const std::string content("a\r\nb\0c", 6);
  absl::StatusOr<Secret> secret =
      ReadSecretFile(WriteFile("s", content), "password file");
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(secret->view(), content);
}

TEST(ReadSecretFileTest, FilesOthersMayReadOrWriteAreRefused) {
  for (mode_t mode : {0640, 0604, 0620, 0602, 0644}) {
    const std::string path = WriteFile("s", "secret-value", mode);
    absl::StatusOr<Secret> secret = ReadSecretFile(path, "password file");
    EXPECT_EQ(secret.status().code(), StatusCode::kFailedPrecondition) << mode;
    EXPECT_NE(secret.status().message().find("chmod 600"), std::string::npos);
    EXPECT_EQ(secret.status().message().find("secret-value"),
              std::string::npos);
  }
  EXPECT_TRUE(ReadSecretFile(WriteFile("s", "x", 0400), "password file").ok());
}

TEST(ReadSecretFileTest, EmptyMissingTooLargeAndDirectoriesAreRefused) {
  EXPECT_EQ(ReadSecretFile(WriteFile("e", ""), "key file").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSecretFile(WriteFile("n", "\r\n"), "key file").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSecretFile(WriteFile("big", std::string(11, 'x')), "key file",
                           /*max_size=*/10)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      ReadSecretFile(WriteFile("fits", std::string(10, 'x')), "key file", 10)
          .ok());
  EXPECT_EQ(ReadSecretFile("/nonexistent/secret", "key file").status().code(),
            StatusCode::kNotFound);
  absl::StatusOr<Secret> dir = ReadSecretFile("/", "key file");
  EXPECT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("key file /"), std::string::npos);
}

TEST(SecretTest, MovesLeaveTheSourceEmpty) {
  Secret a(std::string("hunter2"));
  Secret b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented
  EXPECT_EQ(b.view(), "hunter2");
  Secret c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): documented
  EXPECT_EQ(c.view(), "hunter2");
}

}  // namespace
}  // namespace sessiond::crypto
