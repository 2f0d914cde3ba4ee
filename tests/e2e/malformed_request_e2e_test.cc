// End-to-end: requests whose bytes are no valid message, or whose string
// fields are not UTF-8, as any client can send them (hand-made wire bytes
// through a generic stub), get INVALID_ARGUMENT naming the field, write
// nothing, and leave no trace of their bytes in the log.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
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
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
  }

  // Calls `method` of SessionService with `bytes` as the request.
  grpc::Status Call(const std::string& method, const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    grpc::Status status;
    absl::Notification done;
    stub_->UnaryCall(&context, "/sessiond.v1.SessionService/" + method,
                     grpc::StubOptions(), &request, &response,
                     [&](grpc::Status s) {
                       status = std::move(s);
                       done.Notify();
                     });
    done.WaitForNotification();
    return status;
  }

  std::string dir_;
  std::unique_ptr<SessiondProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
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
    const grpc::Status status = Call(c.method, c.bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_THAT(status.error_message(),
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
  const grpc::Status status = Call("Save", std::string("\x12\x7f"
                                                       "ab",
                                                       4));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr("not a valid sessiond.v1.SaveRequest"));
  // Groups nested a million deep (field 9, start-group): no parser may
  // recurse that far.
  const grpc::Status deep = Call("Save", std::string(1 << 20, '\x4b'));
  EXPECT_EQ(deep.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << deep.error_message();
  std::unique_ptr<Client> client = *Client::Connect(server_->address());
  EXPECT_TRUE(client->Health().ok());
}

}  // namespace
}  // namespace sessiond::testing
