// End-to-end: requests whose bytes are no valid message, or whose string
// fields are not UTF-8, as any client can send them (hand-made wire bytes
// through a generic stub), get INVALID_ARGUMENT naming the field, write
// nothing, and leave no trace of their bytes in the log.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/sessiond_process.h"
#include "tests/testing/subprocess.h"

namespace sessiond::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One length-delimited field: tag, length (< 128), bytes.
std::string Field(int number, const std::string& bytes) {
  return absl::StrCat(std::string(1, static_cast<char>((number << 3) | 2)),
                      std::string(1, static_cast<char>(bytes.size())), bytes);
}

class MalformedRequestE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("malformed");
    ASSERT_FALSE(dir_.empty());
    absl::StatusOr<std::unique_ptr<SessiondProcess>> server =
        SessiondProcess::Start({"--backend=memory", "--insecure_plaintext"},
                               dir_ + "/sessiond.log");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Calls `method` of SessionService with `bytes` as the request.
  absl::Status Call(const std::string& method, const std::string& bytes) {
    return CallRaw(server_->address(), "/sessiond.v1.SessionService/" + method,
                   bytes, absl::Seconds(10))
        .status();
  }

  std::string dir_;
  std::unique_ptr<SessiondProcess> server_;
};

TEST_F(MalformedRequestE2eTest,
       NonUtf8StringFieldsAreInvalidArgumentNamingThem) {
  const std::string bad = "caf\xc3(\xff";
  struct Case {
    const char* method;
    std::string bytes;
    const char* field;
  } cases[] = {
      {"Save", Field(2, bad), "user_id"},
      {"Save", Field(2, "alice") + Field(4, Field(1, "ua") + Field(2, bad)),
       "metadata"},
      {"Save", Field(2, "alice") + Field(4, Field(1, bad) + Field(2, "v")),
       "metadata"},
      {"Save", Field(2, "alice") + Field(8, Field(1, bad)), "update_mask"},
      {"Load", Field(1, bad), "token"},
      {"ListForUser", Field(1, bad), "user_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.method, " ", c.field));
    const absl::Status status = Call(c.method, c.bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(),
                HasSubstr(absl::StrCat(c.field, ": must be UTF-8")));
  }
  // Nothing was created for "alice".
  std::unique_ptr<Client> client = *Client::Connect(server_->address());
  absl::StatusOr<v1::ListForUserResponse> listed = client->ListForUser("alice");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sessions_size(), 0);
  // protobuf's line about the field is not in the log.
  EXPECT_THAT(ReadFileOrEmpty(server_->log_path()), Not(HasSubstr("UTF-8")));
}

TEST_F(MalformedRequestE2eTest, BytesThatAreNoMessageAreInvalidArgument) {
  // A length-delimited field that claims more bytes than there are.
  const absl::Status status = Call("Save", std::string("\x12\x7f"
                                                       "ab",
                                                       4));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("not a valid sessiond.v1.SaveRequest"));
  // Groups nested a million deep (field 9, start-group): no parser may
  // recurse that far.
  const absl::Status deep = Call("Save", std::string(1 << 20, '\x4b'));
  EXPECT_EQ(deep.code(), absl::StatusCode::kInvalidArgument) << deep;
  std::unique_ptr<Client> client = *Client::Connect(server_->address());
  EXPECT_TRUE(client->Health().ok());
}

}  // namespace
}  // namespace sessiond::testing
