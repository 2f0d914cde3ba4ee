// The backend registry: every backend is registered once, by name, with its
// flags; defaults come from the backends' options structs; errors name the
// flag; and the registry opens working stores.
#include "storage/registry.h"

#include <sys/stat.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/clock.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/valkey/valkey_store.h"

namespace sessiond::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> RegisteredNames() {
  std::vector<std::string> names;
  for (const Backend* backend : RegisteredBackends()) {
    names.push_back(backend->name());
  }
  return names;
}

const Backend& Get(absl::string_view name) {
  absl::StatusOr<const Backend*> backend = FindBackend(name);
  if (!backend.ok()) {
    ADD_FAILURE() << backend.status();
    std::abort();
  }
  return **backend;
}

// The typed view of a registered backend, to see the options its flags set.
template <typename Options>
const TypedBackend<Options>& Typed(absl::string_view name) {
  const auto* typed = dynamic_cast<const TypedBackend<Options>*>(&Get(name));
  if (typed == nullptr) {
    ADD_FAILURE() << name << " is not over these options";
    std::abort();
  }
  return *typed;
}

std::string DefaultText(absl::string_view backend, absl::string_view flag) {
  for (const flags::FlagInfo& info : Get(backend).flags()) {
    if (info.name == flag) return info.default_text;
  }
  ADD_FAILURE() << backend << " has no flag " << flag;
  return "";
}

// Every flag of `backend` set to its default text.
BackendSettings AllDefaults(absl::string_view backend) {
  BackendSettings settings;
  for (const flags::FlagInfo& info : Get(backend).flags()) {
    settings[info.name] = info.default_text;
  }
  return settings;
}

SessionRecord NewRecord() {
  SessionRecord record;
  record.tenant = std::string(kDefaultTenant);
  record.id = "id-1";
  record.token_hash = std::string(kTokenHashSize, 'h');
  record.user_id = "alice";
  record.sealed_payload = "payload";
  record.idle_timeout = absl::Minutes(30);
  record.absolute_lifetime = absl::Hours(12);
  return record;
}

TEST(RegistryTest, EveryBackendIsRegisteredOnceDefaultFirst) {
  EXPECT_THAT(RegisteredNames(),
              ElementsAre("sqlite", "memory", "postgres", "valkey"));
  EXPECT_EQ(RegisteredNames().front(), kDefaultBackend);
  EXPECT_EQ(BackendNameList(), "sqlite, memory, postgres or valkey");
}

TEST(RegistryTest, UnknownBackendIsInvalidArgumentListingTheNames) {
  for (const absl::StatusOr<const Backend*>& found :
       {FindBackend("mongo"), FindBackend(""), FindBackend("SQLITE")}) {
    ASSERT_FALSE(found.ok());
    EXPECT_EQ(found.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(found.status().message(),
                HasSubstr("sqlite, memory, postgres or valkey"));
  }
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenBackend("mongo", {}, &clock, StoreOptions{});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("\"mongo\""));
  EXPECT_THAT(store.status().message(),
              HasSubstr("sqlite, memory, postgres or valkey"));
}

TEST(RegistryTest, FlagNamesAreTheDocumentedOnes) {
  auto names = [](absl::string_view backend) {
    std::vector<std::string> names;
    for (const flags::FlagInfo& info : Get(backend).flags()) {
      names.push_back(info.name);
      EXPECT_FALSE(info.help.empty()) << info.name;
      EXPECT_FALSE(info.is_bool) << info.name;
    }
    return names;
  };
  EXPECT_THAT(names("memory"), ElementsAre("memory_max_bytes"));
  EXPECT_THAT(names("sqlite"), ElementsAre("db_path"));
  EXPECT_THAT(names("postgres"),
              ElementsAre("postgres_dsn", "postgres_password_file",
                          "postgres_pool_size", "postgres_statement_timeout"));
  EXPECT_THAT(
      names("valkey"),
      ElementsAre("valkey_address", "valkey_database", "valkey_username",
                  "valkey_password_file", "valkey_key_prefix",
                  "valkey_pool_size", "valkey_timeout"));
}

TEST(RegistryTest, DefaultTextsAreTheOptionsDefaults) {
  const SqliteOptions sqlite;
  EXPECT_EQ(DefaultText("sqlite", "db_path"), sqlite.path);

  const PostgresOptions postgres;
  EXPECT_EQ(DefaultText("postgres", "postgres_dsn"), postgres.dsn);
  EXPECT_EQ(DefaultText("postgres", "postgres_password_file"),
            postgres.password_file);
  EXPECT_EQ(DefaultText("postgres", "postgres_pool_size"),
            absl::StrCat(postgres.pool_size));
  EXPECT_EQ(DefaultText("postgres", "postgres_statement_timeout"),
            absl::FormatDuration(postgres.statement_timeout));

  const ValkeyOptions valkey;
  EXPECT_EQ(DefaultText("valkey", "valkey_address"),
            absl::StrCat(valkey.host, ":", valkey.port));
  EXPECT_EQ(DefaultText("valkey", "valkey_database"),
            absl::StrCat(valkey.database));
  EXPECT_EQ(DefaultText("valkey", "valkey_username"), valkey.username);
  EXPECT_EQ(DefaultText("valkey", "valkey_password_file"),
            valkey.password_file);
  EXPECT_EQ(DefaultText("valkey", "valkey_key_prefix"), valkey.key_prefix);
  EXPECT_EQ(DefaultText("valkey", "valkey_pool_size"),
            absl::StrCat(valkey.pool_size));
  // One flag sets both timeouts, so both defaults must be the one it shows.
  EXPECT_EQ(DefaultText("valkey", "valkey_timeout"),
            absl::FormatDuration(valkey.command_timeout));
  EXPECT_EQ(valkey.connect_timeout, valkey.command_timeout);
}

// Giving each flag its default text must leave the options as they were.
TEST(RegistryTest, DefaultTextsSetTheDefaults) {
  absl::StatusOr<SqliteOptions> sqlite =
      Typed<SqliteOptions>("sqlite").Parse(AllDefaults("sqlite"));
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  EXPECT_EQ(sqlite->path, SqliteOptions{}.path);

  // Postgres needs a DSN, whose default (empty) it refuses.
  BackendSettings postgres_settings = AllDefaults("postgres");
  postgres_settings["postgres_dsn"] = "host=db";
  absl::StatusOr<PostgresOptions> postgres =
      Typed<PostgresOptions>("postgres").Parse(postgres_settings);
  ASSERT_TRUE(postgres.ok()) << postgres.status();
  const PostgresOptions postgres_defaults;
  EXPECT_EQ(postgres->password_file, postgres_defaults.password_file);
  EXPECT_EQ(postgres->pool_size, postgres_defaults.pool_size);
  EXPECT_EQ(postgres->statement_timeout, postgres_defaults.statement_timeout);
  EXPECT_EQ(postgres->connect_timeout, postgres_defaults.connect_timeout);
  EXPECT_EQ(postgres->prune_batch_size, postgres_defaults.prune_batch_size);

  absl::StatusOr<ValkeyOptions> valkey =
      Typed<ValkeyOptions>("valkey").Parse(AllDefaults("valkey"));
  ASSERT_TRUE(valkey.ok()) << valkey.status();
  const ValkeyOptions valkey_defaults;
  EXPECT_EQ(valkey->host, valkey_defaults.host);
  EXPECT_EQ(valkey->port, valkey_defaults.port);
  EXPECT_EQ(valkey->database, valkey_defaults.database);
  EXPECT_EQ(valkey->username, valkey_defaults.username);
  EXPECT_EQ(valkey->password_file, valkey_defaults.password_file);
  EXPECT_EQ(valkey->key_prefix, valkey_defaults.key_prefix);
  EXPECT_EQ(valkey->pool_size, valkey_defaults.pool_size);
  EXPECT_EQ(valkey->connect_timeout, valkey_defaults.connect_timeout);
  EXPECT_EQ(valkey->command_timeout, valkey_defaults.command_timeout);
}

TEST(RegistryTest, FlagsSetTheirFields) {
  absl::StatusOr<PostgresOptions> postgres =
      Typed<PostgresOptions>("postgres")
          .Parse({{"postgres_dsn", "postgresql://sessiond@db:5432/sessions"},
                  {"postgres_password_file", "/run/secrets/pg"},
                  {"postgres_pool_size", "16"},
                  {"postgres_statement_timeout", "2s"}});
  ASSERT_TRUE(postgres.ok()) << postgres.status();
  EXPECT_EQ(postgres->dsn, "postgresql://sessiond@db:5432/sessions");
  EXPECT_EQ(postgres->password_file, "/run/secrets/pg");
  EXPECT_EQ(postgres->pool_size, 16);
  EXPECT_EQ(postgres->statement_timeout, absl::Seconds(2));

  const BackendSettings valkey_settings = {
      {"valkey_address", "cache.local:6380"},
      {"valkey_database", "3"},
      {"valkey_username", "sessiond"},
      {"valkey_password_file", "/run/secrets/valkey"},
      {"valkey_key_prefix", "prod"},
      {"valkey_pool_size", "4"},
      {"valkey_timeout", "500ms"}};
  absl::StatusOr<ValkeyOptions> valkey =
      Typed<ValkeyOptions>("valkey").Parse(valkey_settings);
  ASSERT_TRUE(valkey.ok()) << valkey.status();
  EXPECT_EQ(valkey->host, "cache.local");
  EXPECT_EQ(valkey->port, 6380);
  EXPECT_EQ(valkey->database, 3);
  EXPECT_EQ(valkey->username, "sessiond");
  EXPECT_EQ(valkey->password_file, "/run/secrets/valkey");
  EXPECT_EQ(valkey->key_prefix, "prod");
  EXPECT_EQ(valkey->pool_size, 4);
  EXPECT_EQ(valkey->command_timeout, absl::Milliseconds(500));
  EXPECT_EQ(valkey->connect_timeout, absl::Milliseconds(500));

  // Describe says where, never the password files.
  const std::string described = Get("valkey").Describe(valkey_settings);
  EXPECT_THAT(described, HasSubstr("cache.local:6380"));
  EXPECT_EQ(described.find("secrets"), std::string::npos) << described;
  const std::string postgres_described =
      Get("postgres")
          .Describe({{"postgres_dsn", "host=db"},
                     {"postgres_password_file", "/run/secrets/pg"}});
  EXPECT_THAT(postgres_described, HasSubstr("host=db"));
  EXPECT_EQ(postgres_described.find("secrets"), std::string::npos);
  EXPECT_EQ(Get("sqlite").Describe({{"db_path", "/data/s.db"}}),
            "sqlite (/data/s.db)");
  EXPECT_EQ(Get("memory").Describe({}), "memory");
}

TEST(RegistryTest, BadValuesNameTheFlag) {
  struct Case {
    std::string backend;
    BackendSettings settings;
    std::string flag;
  };
  const std::vector<Case> cases = {
      {"sqlite", {{"db_path", ""}}, "--db_path"},
      {"postgres", {}, "--postgres_dsn"},
      {"postgres",
       {{"postgres_dsn", "host=db user=s password=hunter2"}},
       "--postgres_dsn"},
      {"postgres",
       {{"postgres_dsn", "host=db"}, {"postgres_pool_size", "abc"}},
       "--postgres_pool_size"},
      {"postgres",
       {{"postgres_dsn", "host=db"}, {"postgres_pool_size", "0"}},
       "--postgres_pool_size"},
      {"postgres",
       {{"postgres_dsn", "host=db"}, {"postgres_statement_timeout", "1ms"}},
       "--postgres_statement_timeout"},
      {"valkey", {{"valkey_address", "cache"}}, "--valkey_address"},
      {"valkey", {{"valkey_address", "cache:65536"}}, "--valkey_address"},
      {"valkey", {{"valkey_address", ":6379"}}, "--valkey_address"},
      {"valkey", {{"valkey_database", "1001"}}, "--valkey_database"},
      {"valkey", {{"valkey_key_prefix", "{x}"}}, "--valkey_key_prefix"},
      {"valkey", {{"valkey_key_prefix", ""}}, "--valkey_key_prefix"},
      {"valkey", {{"valkey_pool_size", "-1"}}, "--valkey_pool_size"},
      {"valkey", {{"valkey_timeout", "forever"}}, "--valkey_timeout"},
      {"valkey", {{"valkey_timeout", "2m"}}, "--valkey_timeout"},
      {"memory", {{"db_path", "/x"}}, "--db_path"},
      {"sqlite", {{"valkey_address", "cache:1"}}, "--valkey_address"},
  };
  ManualClock clock;
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.backend, " ", c.flag));
    const Backend& backend = Get(c.backend);
    absl::Status valid = backend.Validate(c.settings);
    EXPECT_EQ(valid.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(valid.message(), HasSubstr(c.flag));
    // Opening checks the same way, before touching anything.
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        OpenBackend(c.backend, c.settings, &clock, StoreOptions{});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status(), valid);
    // Settings that do not validate are described by the name alone.
    EXPECT_EQ(backend.Describe(c.settings), c.backend);
  }
}

TEST(RegistryTest, CheckFlagSaysWhatTheValueMustBe) {
  const Backend& postgres = Get("postgres");
  EXPECT_TRUE(postgres.CheckFlag("postgres_pool_size", "1000").ok());
  EXPECT_EQ(postgres.CheckFlag("postgres_pool_size", "1001").message(),
            "must be an integer from 1 to 1000");
  EXPECT_EQ(postgres.CheckFlag("postgres_statement_timeout", "0").message(),
            "must be a duration (like 90s, 30m, 12h) from 100ms to 10m");
  EXPECT_THAT(
      postgres.CheckFlag("postgres_dsn", "postgresql://s:pw@db/x").message(),
      HasSubstr("--postgres_password_file"));
  // The whole-set rule is not a value check: an empty DSN is a valid value.
  EXPECT_TRUE(postgres.CheckFlag("postgres_dsn", "").ok());
  EXPECT_EQ(Get("valkey").CheckFlag("valkey_timeout", "5ms").message(),
            "must be a duration (like 90s, 30m, 12h) from 10ms to 1m");
  absl::Status unknown = Get("sqlite").CheckFlag("postgres_dsn", "host=db");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.message(), HasSubstr("--postgres_dsn"));
}

TEST(RegistryTest, NoFlagBelongsToTwoBackends) {
  std::vector<std::string> seen;
  for (const Backend* backend : RegisteredBackends()) {
    for (const flags::FlagInfo& info : backend->flags()) {
      EXPECT_THAT(seen, ::testing::Not(::testing::Contains(info.name)));
      seen.push_back(info.name);
    }
  }
}

TEST(RegistryTest, MemoryOpensAndWorks) {
  ManualClock clock;
  StoreOptions options;
  options.live_count_max_age = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenBackend("memory", {}, &clock, options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->backend_name(), "memory");
  const SessionRecord record = NewRecord();
  ASSERT_TRUE((*store)->Create(record, TenantLimits{}).ok());
  absl::StatusOr<SessionRecord> loaded =
      (*store)->Load(kDefaultTenant, record.token_hash);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->id, record.id);
  EXPECT_EQ(loaded->sealed_payload, record.sealed_payload);
  // The limits of the call reach the store: the tenant is full, and a
  // second session of the user evicts the first.
  TenantLimits live_cap;
  live_cap.max_live_sessions = 1;
  SessionRecord second = NewRecord();
  second.id = "id-2";
  second.token_hash = std::string(kTokenHashSize, 'g');
  EXPECT_EQ((*store)->Create(second, live_cap).status().code(),
            absl::StatusCode::kResourceExhausted);
  TenantLimits per_user;
  per_user.max_sessions_per_user = 1;
  ASSERT_TRUE((*store)->Create(second, per_user).ok());
  EXPECT_EQ((*store)->Load(kDefaultTenant, record.token_hash).status().code(),
            absl::StatusCode::kNotFound);
  // The store options reach the store: with live_count_max_age zero the
  // count is read anew a second later, and finds the one live session (the
  // eviction was behind the count kept since the first read).
  clock.Advance(absl::Seconds(1));
  SessionRecord third = NewRecord();
  third.id = "id-3";
  third.user_id = "bob";
  third.token_hash = std::string(kTokenHashSize, 'f');
  live_cap.max_live_sessions = 2;
  ASSERT_TRUE((*store)->Create(third, live_cap).ok());
  // The clock reaches the store.
  clock.Advance(absl::Minutes(31));
  EXPECT_EQ((*store)->Load(kDefaultTenant, second.token_hash).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->Load(kDefaultTenant, third.token_hash).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RegistryTest, SqliteOpensInATempDir) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  ASSERT_NE(tmp, nullptr);
  const std::string path = absl::StrCat(tmp, "/registry_test.db");
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      OpenBackend("sqlite", {{"db_path", path}}, &clock, StoreOptions{});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->backend_name(), "sqlite");
  const SessionRecord record = NewRecord();
  ASSERT_TRUE((*store)->Create(record, TenantLimits{}).ok());
  absl::StatusOr<SessionRecord> loaded =
      (*store)->Load(kDefaultTenant, record.token_hash);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->id, record.id);
  struct stat info;
  EXPECT_EQ(stat(path.c_str(), &info), 0) << path;
}

// The typed helper on its own, over a struct of the test's.
struct TestOptions {
  std::string name = "n";
  int count = 3;
  absl::Duration wait = absl::Seconds(90);
  bool flag = true;
};

TEST(TypedBackendTest, BuildsFlagsFromTheOptionsStruct) {
  BackendSpec<TestOptions> spec;
  spec.name = "test";
  spec.flags.String("test_name", "a name", &TestOptions::name)
      .Int("test_count", "a count", &TestOptions::count, 1, 5)
      .Duration("test_wait", "a wait", &TestOptions::wait, absl::Seconds(1),
                absl::Hours(1))
      .Bool("test_flag", "a flag", &TestOptions::flag);
  spec.validate = [](const TestOptions& o) {
    return o.name == "bad" ? absl::InvalidArgumentError("--test_name: bad")
                           : absl::OkStatus();
  };
  spec.describe = [](const TestOptions& o) {
    return absl::StrCat("test ", o.name, " ", o.count);
  };
  const TypedBackend<TestOptions> backend(std::move(spec));

  ASSERT_EQ(backend.flags().size(), 4u);
  EXPECT_EQ(backend.flags()[0].default_text, "n");
  EXPECT_EQ(backend.flags()[1].default_text, "3");
  EXPECT_EQ(backend.flags()[2].default_text, "1m30s");
  EXPECT_EQ(backend.flags()[3].default_text, "true");
  EXPECT_TRUE(backend.flags()[3].is_bool);

  absl::StatusOr<TestOptions> parsed = backend.Parse(
      {{"test_count", "5"}, {"test_wait", "2m"}, {"test_flag", "no"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->name, "n");
  EXPECT_EQ(parsed->count, 5);
  EXPECT_EQ(parsed->wait, absl::Minutes(2));
  EXPECT_FALSE(parsed->flag);
  EXPECT_EQ(backend.Describe({{"test_name", "x"}}), "test x 3");

  EXPECT_EQ(backend.Parse({{"test_count", "6"}}).status().message(),
            "--test_count: must be an integer from 1 to 5");
  EXPECT_EQ(backend.Parse({{"test_flag", "maybe"}}).status().message(),
            "--test_flag: must be true or false");
  EXPECT_EQ(backend.Parse({{"test_name", "bad"}}).status().message(),
            "--test_name: bad");
  EXPECT_THAT(backend.Parse({{"other", "1"}}).status().message(),
              HasSubstr("--other"));
  ManualClock clock;
  EXPECT_EQ(backend.Open({}, &clock, StoreOptions{}).status().code(),
            absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace sessiond::storage
