// Tests of the statement catalogue and the row mapping (storage/sql): what
// lets one piece of code bind and read a statement in either dialect.
#include "storage/sql/statements.h"

#include <cctype>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/session_record.h"
#include "storage/sql/executor.h"
#include "storage/sql/rows.h"
#include "tests/storage/sql/fake_row.h"

namespace sessiond::storage::sql {
namespace {

// The parameter numbers a statement's text uses (?N in SQLite, $N in
// PostgreSQL).
std::set<int> Placeholders(absl::string_view text, char sigil) {
  std::set<int> found;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != sigil) continue;
    int n = 0;
    size_t j = i + 1;
    while (j < text.size() &&
           std::isdigit(static_cast<unsigned char>(text[j]))) {
      n = n * 10 + (text[j] - '0');
      ++j;
    }
    if (j > i + 1) found.insert(n);
  }
  return found;
}

std::vector<SqlStatement> AllStatements() {
  std::vector<SqlStatement> all;
  for (int i = 0; i < kNumStatements; ++i) {
    all.push_back(static_cast<SqlStatement>(i));
  }
  return all;
}

TEST(StatementsTest, BothDialectsTakeTheSameParameters) {
  for (SqlStatement s : AllStatements()) {
    SCOPED_TRACE(StatementName(s));
    const char* postgres = StatementText(s, SqlDialect::kPostgres);
    ASSERT_NE(postgres, nullptr);
    const std::set<int> pg = Placeholders(postgres, '$');
    // Numbered from 1 without gaps, so that binding in order fills them.
    int expected = 1;
    for (int n : pg) EXPECT_EQ(n, expected++);
    const char* sqlite = StatementText(s, SqlDialect::kSqlite);
    if (sqlite == nullptr) continue;
    EXPECT_EQ(Placeholders(sqlite, '?'), pg);
    EXPECT_EQ(Placeholders(sqlite, '$'), std::set<int>());
  }
}

TEST(StatementsTest, OnlyThePerUserLockIsMissingInSqlite) {
  for (SqlStatement s : AllStatements()) {
    SCOPED_TRACE(StatementName(s));
    EXPECT_EQ(StatementText(s, SqlDialect::kSqlite) == nullptr,
              s == SqlStatement::kLockUser);
  }
}

// Only the statements that must see every tenant's rows are unscoped:
// the deletes of expired holders of an id or token hash (unique across
// tenants), the prune of every tenant, and the ping. The others take the
// tenant as their first parameter and filter on it (the INSERT stores it).
TEST(StatementsTest, EveryStatementOnSessionsIsScopedToItsTenant) {
  const std::set<SqlStatement> unscoped = {
      SqlStatement::kDeleteExpiredConflicts, SqlStatement::kDeleteExpiredByHash,
      SqlStatement::kPruneBatch, SqlStatement::kPing};
  for (SqlStatement s : AllStatements()) {
    SCOPED_TRACE(StatementName(s));
    const std::string postgres = StatementText(s, SqlDialect::kPostgres);
    const char* sqlite_text = StatementText(s, SqlDialect::kSqlite);
    const std::string sqlite = sqlite_text != nullptr ? sqlite_text : "";
    if (unscoped.count(s) > 0) {
      EXPECT_EQ(postgres.find("tenant"), std::string::npos);
      EXPECT_EQ(sqlite.find("tenant"), std::string::npos);
    } else if (s == SqlStatement::kInsert) {
      EXPECT_NE(postgres.find("(tenant, id,"), std::string::npos);
      EXPECT_NE(sqlite.find("(tenant, id,"), std::string::npos);
    } else if (s == SqlStatement::kLockUser) {
      EXPECT_NE(
          postgres.find(absl::StrCat("$1::text = '", kDefaultTenant, "'")),
          std::string::npos);
    } else {
      EXPECT_NE(postgres.find("WHERE tenant = $1::text AND "),
                std::string::npos);
      EXPECT_NE(sqlite.find("WHERE tenant = ?1 AND "), std::string::npos);
    }
  }
}

TEST(StatementsTest, NamesAreDistinctIdentifiers) {
  std::set<std::string> names;
  for (SqlStatement s : AllStatements()) {
    const std::string name(StatementName(s));
    EXPECT_FALSE(name.empty());
    for (char c : name) {
      EXPECT_TRUE(std::islower(static_cast<unsigned char>(c)) || c == '_')
          << name;
    }
    EXPECT_TRUE(names.insert(name).second) << name;
  }
  EXPECT_EQ(DialectName(SqlDialect::kSqlite), "sqlite");
  EXPECT_EQ(DialectName(SqlDialect::kPostgres), "postgres");
}

TEST(RowsTest, RecordFromRowReadsTheRecordColumnsInOrder) {
  const std::string hash = std::string("\x00\xff", 2) + std::string(30, 'h');
  const FakeRow row(
      {std::string("acme"), std::string("id-1"), hash, std::string("alice"),
       std::string("sealed\0bytes", 12), int64_t{1'000'000}, int64_t{2'000'001},
       int64_t{30'000'000}, std::numeric_limits<int64_t>::max(), int64_t{7}});
  const SessionRecord r = RecordFromRow(row);
  EXPECT_EQ(r.tenant, "acme");
  EXPECT_EQ(r.id, "id-1");
  EXPECT_EQ(r.token_hash, hash);
  EXPECT_EQ(r.user_id, "alice");
  EXPECT_EQ(r.sealed_payload, std::string("sealed\0bytes", 12));
  EXPECT_EQ(r.created_at, absl::FromUnixSeconds(1));
  EXPECT_EQ(r.last_active_at, absl::FromUnixMicros(2'000'001));
  EXPECT_EQ(r.idle_timeout, absl::Seconds(30));
  EXPECT_EQ(r.absolute_lifetime, absl::InfiniteDuration());
  EXPECT_EQ(r.version, 7);
}

TEST(RowsTest, TimesAndDurationsRoundTripThroughMicros) {
  for (absl::Duration d :
       {absl::Microseconds(1), absl::Hours(24), absl::InfiniteDuration()}) {
    EXPECT_EQ(MicrosToDuration(DurationToMicros(d)), d);
  }
  EXPECT_EQ(DurationToMicros(absl::InfiniteDuration()),
            std::numeric_limits<int64_t>::max());
  const absl::Time t = absl::FromUnixMicros(1'700'000'000'123'456);
  EXPECT_EQ(MicrosToTime(TimeToMicros(t)), t);
}

}  // namespace
}  // namespace sessiond::storage::sql
