#include "storage/valkey/internal/replies.h"

#include <hiredis/hiredis.h>

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sessiond::storage::valkey_internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The reply hiredis reads from `resp`.
Reply Parse(const std::string& resp) {
  redisReader* reader = redisReaderCreate();
  EXPECT_EQ(redisReaderFeed(reader, resp.data(), resp.size()), REDIS_OK);
  void* reply = nullptr;
  EXPECT_EQ(redisReaderGetReply(reader, &reply), REDIS_OK);
  redisReaderFree(reader);
  return Reply(static_cast<redisReply*>(reply));
}

std::string Bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

TEST(ValkeyRepliesTest, RecordFromReplyReadsTheTenFieldsOrNothing) {
  const std::string fields[] = {
      "id-1", std::string(32, '\0'), "alice", "p", "10", "20", "30", "40", "3",
      "acme"};
  std::string resp = "*10\r\n";
  for (const std::string& f : fields) resp += Bulk(f);
  Reply reply = Parse(resp);
  ASSERT_NE(reply, nullptr);
  absl::StatusOr<SessionRecord> r = RecordFromReply(reply.get(), "load");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id, "id-1");
  EXPECT_EQ(r->tenant, "acme");
  EXPECT_EQ(r->version, 3);
  EXPECT_EQ(r->last_active_at, absl::FromUnixMicros(20));
  for (const std::string& bad :
       {std::string("*1\r\n") + Bulk("x"), std::string(":5\r\n"),
        std::string("*10\r\n") + Bulk("a") + Bulk("b") + Bulk("c") + Bulk("d") +
            Bulk("1x") + Bulk("2") + Bulk("3") + Bulk("4") + Bulk("5") +
            Bulk("t")}) {
    Reply malformed = Parse(bad);
    ASSERT_NE(malformed, nullptr);
    absl::StatusOr<SessionRecord> refused =
        RecordFromReply(malformed.get(), "load");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInternal);
    EXPECT_THAT(refused.status().message(), HasSubstr("unexpected reply"));
  }
}

// Found by //fuzz:valkey_reply_fuzzer: a function error's text went into
// the status (and the log) whole, however long.
TEST(ValkeyRepliesTest, ErrorTextIsCutAndNeverEchoesACommand) {
  const absl::Status long_error =
      FunctionError("NOT_FOUND " + std::string(5000, 'x'), "load");
  EXPECT_EQ(long_error.code(), absl::StatusCode::kNotFound);
  EXPECT_LE(long_error.message().size(), 220u);
  const absl::Status echoed = ServerError(
      "ERR unknown command 'X', with args beginning with: 'secret'", "load");
  EXPECT_EQ(echoed.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(echoed.message(), Not(HasSubstr("secret")));
  EXPECT_EQ(ServerError("LOADING please wait", "load").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ServerError("NOAUTH needed", "load").code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace sessiond::storage::valkey_internal
