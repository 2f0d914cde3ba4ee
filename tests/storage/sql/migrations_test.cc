// Tests of the migration runner and the migration list (storage/sql), over
// a fake schema that records what the runner asks of it.
#include "storage/sql/migrations.h"

#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/session_record.h"

namespace sessiond::storage::sql {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Migration kThree[] = {
    {1, "one", "sqlite 1", "postgres 1"},
    {2, "two", "sqlite 2", "postgres 2"},
    {3, "three", "sqlite 3", "postgres 3"},
};

// A schema at `version`; another migrator may move it to `version_at_lock`
// before this one gets the lock.
class FakeSchema final : public SchemaTarget {
 public:
  explicit FakeSchema(int64_t version) : version_(version) {}

  absl::StatusOr<int64_t> ReadVersion() override {
    log_.push_back("read");
    if (!read_error_.ok()) return read_error_;
    return version_;
  }

  absl::Status WithMigrationLock(
      absl::FunctionRef<absl::Status(int64_t)> migrate) override {
    log_.push_back("lock");
    if (version_at_lock_ >= 0) version_ = version_at_lock_;
    const int64_t before = version_;
    absl::Status s = migrate(version_);
    if (s.ok()) {
      log_.push_back("commit");
    } else {
      version_ = before;
      log_.push_back("rollback");
    }
    return s;
  }

  absl::Status Apply(const Migration& m) override {
    log_.push_back(absl::StrCat("apply ", m.version));
    if (m.version == fail_at_) return absl::InternalError("DDL failed");
    version_ = m.version;
    return absl::OkStatus();
  }

  int64_t version_;
  int64_t version_at_lock_ = -1;
  int fail_at_ = 0;
  absl::Status read_error_;
  std::vector<std::string> log_;
};

TEST(MigrateSchemaTest, EmptyDatabaseGetsEveryMigrationInOrderUnderTheLock) {
  FakeSchema schema(0);
  ASSERT_TRUE(MigrateSchema(schema, kThree, "test: db").ok());
  EXPECT_THAT(schema.log_, ElementsAre("read", "lock", "apply 1", "apply 2",
                                       "apply 3", "commit"));
  EXPECT_EQ(schema.version_, 3);
}

TEST(MigrateSchemaTest, CurrentSchemaTakesNoLockAndAppliesNothing) {
  FakeSchema schema(3);
  ASSERT_TRUE(MigrateSchema(schema, kThree, "test: db").ok());
  EXPECT_THAT(schema.log_, ElementsAre("read"));
}

TEST(MigrateSchemaTest, OnlyWhatIsMissingUnderTheLockIsApplied) {
  FakeSchema schema(1);
  schema.version_at_lock_ = 2;  // another process got there first
  ASSERT_TRUE(MigrateSchema(schema, kThree, "test: db").ok());
  EXPECT_THAT(schema.log_, ElementsAre("read", "lock", "apply 3", "commit"));

  FakeSchema done(1);
  done.version_at_lock_ = 3;
  ASSERT_TRUE(MigrateSchema(done, kThree, "test: db").ok());
  EXPECT_THAT(done.log_, ElementsAre("read", "lock", "commit"));
}

TEST(MigrateSchemaTest, NewerSchemaIsRefusedWithoutTakingTheLock) {
  FakeSchema schema(4);
  const absl::Status s = MigrateSchema(schema, kThree, "test: database \"x\"");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("test: database \"x\" has schema version "
                                     "4, but this sessiond knows versions up "
                                     "to 3"));
  EXPECT_THAT(s.message(), HasSubstr("newer"));
  EXPECT_THAT(schema.log_, ElementsAre("read"));
}

TEST(MigrateSchemaTest, SchemaMadeNewerWhileWaitingForTheLockIsRefused) {
  FakeSchema schema(1);
  schema.version_at_lock_ = 5;
  const absl::Status s = MigrateSchema(schema, kThree, "test: db");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("schema version 5"));
  EXPECT_THAT(schema.log_, ElementsAre("read", "lock", "rollback"));
}

TEST(MigrateSchemaTest, NegativeVersionIsRefused) {
  FakeSchema schema(-1);
  const absl::Status s = MigrateSchema(schema, kThree, "test: db");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("invalid schema version -1"));
  EXPECT_THAT(schema.log_, ElementsAre("read"));
}

TEST(MigrateSchemaTest, FailedMigrationStopsAndRollsBack) {
  FakeSchema schema(0);
  schema.fail_at_ = 2;
  const absl::Status s = MigrateSchema(schema, kThree, "test: db");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_THAT(schema.log_,
              ElementsAre("read", "lock", "apply 1", "apply 2", "rollback"));
  EXPECT_EQ(schema.version_, 0);
}

TEST(MigrateSchemaTest, ErrorReadingTheVersionIsReturned) {
  FakeSchema schema(0);
  schema.read_error_ = absl::UnavailableError("down");
  EXPECT_EQ(MigrateSchema(schema, kThree, "test: db").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(schema.log_, ElementsAre("read"));
}

TEST(MigrationsTest, VersionsRunFromOneToTheLatestWithTextForBothDialects) {
  int expected = 1;
  for (const Migration& m : Migrations()) {
    SCOPED_TRACE(m.version);
    EXPECT_EQ(m.version, expected++);
    EXPECT_NE(m.sqlite, nullptr);
    // PostgreSQL: transactional DDL or online index steps, never both, so
    // that an interrupted migration can be run again whole.
    EXPECT_NE(m.postgres == nullptr, m.postgres_online.empty());
    for (const OnlineIndex& index : m.postgres_online) {
      EXPECT_NE(index.name, nullptr);
      // Spliced into a quoted literal and into DDL: a plain identifier.
      for (const char* c = index.name; *c != '\0'; ++c) {
        EXPECT_TRUE(std::islower(static_cast<unsigned char>(*c)) || *c == '_')
            << index.name;
      }
      if (index.definition != nullptr) {
        EXPECT_THAT(index.definition, StartsWith("ON sessiond_sessions ("));
      }
    }
    // Recorded inside a quoted SQL literal.
    EXPECT_EQ(absl::string_view(m.description).find('\''),
              absl::string_view::npos);
  }
  EXPECT_EQ(expected - 1, kSchemaVersion);
}

// Sessions stored before tenants, and those that replicas of before tenants
// insert during a rolling upgrade, join the default tenant.
TEST(MigrationsTest, TheTenantColumnDefaultsToTheDefaultTenant) {
  ASSERT_GE(Migrations().size(), 2u);
  const Migration& m = Migrations()[1];
  const std::string default_clause =
      absl::StrCat("NOT NULL DEFAULT '", kDefaultTenant, "'");
  EXPECT_THAT(m.sqlite, HasSubstr("ADD COLUMN tenant TEXT"));
  EXPECT_THAT(m.sqlite, HasSubstr(default_clause));
  ASSERT_NE(m.postgres, nullptr);
  EXPECT_THAT(m.postgres, HasSubstr("ADD COLUMN tenant text COLLATE \"C\""));
  EXPECT_THAT(m.postgres, HasSubstr(default_clause));
}

// The indexes the per-tenant statements use, in both dialects; PostgreSQL
// builds them online.
TEST(MigrationsTest, TenantIndexesLeadWithTheTenant) {
  ASSERT_GE(Migrations().size(), 3u);
  const Migration& m = Migrations()[2];
  EXPECT_THAT(m.sqlite,
              HasSubstr("ON sessions (tenant, user_id, last_active_at DESC, "
                        "id DESC)"));
  EXPECT_THAT(m.sqlite, HasSubstr("ON sessions (tenant, expires_at)"));
  EXPECT_EQ(m.postgres, nullptr);
  std::vector<std::string> built;
  for (const OnlineIndex& index : m.postgres_online) {
    ASSERT_NE(index.definition, nullptr);
    built.push_back(absl::StrCat(index.name, " ", index.definition));
  }
  EXPECT_THAT(built, ElementsAre("sessiond_sessions_by_tenant_user ON "
                                 "sessiond_sessions (tenant, user_id, "
                                 "last_active_at DESC, id DESC)",
                                 "sessiond_sessions_by_tenant_expiry ON "
                                 "sessiond_sessions (tenant, expires_at)"));
}

}  // namespace
}  // namespace sessiond::storage::sql
