#include "server/config.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sessiond {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  absl::StatusOr<ServerConfig> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "sessiond");
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    return ParseConfig(
        static_cast<int>(argv.size()), argv.data(),
        [this](const std::string& name) -> std::optional<std::string> {
          auto it = env_.find(name);
          if (it == env_.end()) return std::nullopt;
          return it->second;
        });
  }
  std::map<std::string, std::string> env_;
};

TEST_F(ConfigTest, DefaultsNeedAKeyOrAnExplicitOptOut) {
  absl::StatusOr<ServerConfig> config = Parse({});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("--key_files"));
  EXPECT_THAT(config.status().message(), HasSubstr("--insecure_plaintext"));
}

TEST_F(ConfigTest, DocumentedDefaults) {
  absl::StatusOr<ServerConfig> config = Parse({"--insecure_plaintext"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->grpc.listen_address, "0.0.0.0:50051");
  EXPECT_EQ(config->backend_config.backend, "sqlite");
  EXPECT_EQ(config->backend_config.sqlite_path, "./sessiond.db");
  EXPECT_EQ(config->handler.default_idle_timeout, absl::Minutes(30));
  EXPECT_EQ(config->handler.default_absolute_lifetime, absl::Hours(12));
  EXPECT_EQ(config->handler.touch_interval, absl::Minutes(1));
  EXPECT_EQ(config->handler.max_payload_bytes, 65536);
  EXPECT_EQ(config->store.max_sessions_per_user, 0);
  EXPECT_EQ(config->prune_interval, absl::Minutes(5));
  EXPECT_EQ(config->shutdown_grace, absl::Seconds(10));
  EXPECT_EQ(config->grpc.threads, 0);
  EXPECT_TRUE(config->insecure_plaintext);
}

// The usage text states each default; passing that text back must change
// nothing, so the two cannot drift apart.
TEST_F(ConfigTest, UsageDefaultsMatchTheRealDefaults) {
  absl::StatusOr<ServerConfig> plain = Parse({"--insecure_plaintext"});
  ASSERT_TRUE(plain.ok());
  std::vector<std::string> args = {"--insecure_plaintext"};
  const std::string usage = ConfigUsage();
  size_t pos = 0;
  int flags = 0;
  while ((pos = usage.find("  --", pos)) != std::string::npos) {
    const size_t name_end = usage.find(' ', pos + 4);
    const std::string name = usage.substr(pos + 4, name_end - pos - 4);
    const size_t quote = usage.find("default \"", name_end) + 9;
    const std::string value =
        usage.substr(quote, usage.find('"', quote) - quote);
    pos = quote;
    ++flags;
    if (name == "key_files" || name == "insecure_plaintext") continue;
    args.push_back("--" + name + "=" + value);
  }
  EXPECT_GE(flags, 14);
  absl::StatusOr<ServerConfig> explicit_defaults = Parse(args);
  ASSERT_TRUE(explicit_defaults.ok()) << explicit_defaults.status();
  EXPECT_EQ(explicit_defaults->grpc.listen_address, plain->grpc.listen_address);
  EXPECT_EQ(explicit_defaults->backend_config.backend,
            plain->backend_config.backend);
  EXPECT_EQ(explicit_defaults->backend_config.sqlite_path,
            plain->backend_config.sqlite_path);
  EXPECT_EQ(explicit_defaults->handler.default_idle_timeout,
            plain->handler.default_idle_timeout);
  EXPECT_EQ(explicit_defaults->handler.default_absolute_lifetime,
            plain->handler.default_absolute_lifetime);
  EXPECT_EQ(explicit_defaults->handler.touch_interval,
            plain->handler.touch_interval);
  EXPECT_EQ(explicit_defaults->handler.max_payload_bytes,
            plain->handler.max_payload_bytes);
  EXPECT_EQ(explicit_defaults->store.max_sessions_per_user,
            plain->store.max_sessions_per_user);
  EXPECT_EQ(explicit_defaults->prune_interval, plain->prune_interval);
  EXPECT_EQ(explicit_defaults->shutdown_grace, plain->shutdown_grace);
  EXPECT_EQ(explicit_defaults->shutdown_drain_delay,
            plain->shutdown_drain_delay);
  EXPECT_EQ(explicit_defaults->grpc.threads, plain->grpc.threads);
  EXPECT_EQ(explicit_defaults->create_key_if_missing,
            plain->create_key_if_missing);
}

TEST_F(ConfigTest, FlagsInBothSpellingsAndBothForms) {
  absl::StatusOr<ServerConfig> config = Parse(
      {"--key-files=/k/a,/k/b", "--backend", "memory", "--idle_timeout=150s",
       "--max-sessions-per-user=5", "--listen=127.0.0.1:0"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->key_files, (std::vector<std::string>{"/k/a", "/k/b"}));
  EXPECT_EQ(config->backend_config.backend, "memory");
  EXPECT_EQ(config->handler.default_idle_timeout, absl::Seconds(150));
  EXPECT_EQ(config->store.max_sessions_per_user, 5);
  EXPECT_EQ(config->grpc.listen_address, "127.0.0.1:0");
}

TEST_F(ConfigTest, PostgresAndValkeySettings) {
  absl::StatusOr<ServerConfig> config = Parse(
      {"--insecure_plaintext", "--backend=postgres",
       "--postgres_dsn=postgresql://sessiond@db:5432/sessions",
       "--postgres_password_file=/run/secrets/pg", "--postgres_pool_size=16",
       "--postgres_statement_timeout=2s", "--valkey_address=cache.local:6380",
       "--valkey_database=3", "--valkey_username=sessiond",
       "--valkey_password_file=/run/secrets/valkey", "--valkey_key_prefix=prod",
       "--valkey_pool_size=4", "--valkey_timeout=500ms"});
  ASSERT_TRUE(config.ok()) << config.status();
  const storage::BackendConfig& b = config->backend_config;
  EXPECT_EQ(b.backend, "postgres");
  EXPECT_EQ(b.postgres.dsn, "postgresql://sessiond@db:5432/sessions");
  EXPECT_EQ(b.postgres.password_file, "/run/secrets/pg");
  EXPECT_EQ(b.postgres.pool_size, 16);
  EXPECT_EQ(b.postgres.statement_timeout, absl::Seconds(2));
  EXPECT_EQ(b.valkey.host, "cache.local");
  EXPECT_EQ(b.valkey.port, 6380);
  EXPECT_EQ(b.valkey.database, 3);
  EXPECT_EQ(b.valkey.username, "sessiond");
  EXPECT_EQ(b.valkey.password_file, "/run/secrets/valkey");
  EXPECT_EQ(b.valkey.key_prefix, "prod");
  EXPECT_EQ(b.valkey.pool_size, 4);
  EXPECT_EQ(b.valkey.command_timeout, absl::Milliseconds(500));
  EXPECT_EQ(b.valkey.connect_timeout, absl::Milliseconds(500));
  EXPECT_EQ(b.Describe().find("secrets"), std::string::npos);
}

TEST_F(ConfigTest, KeyFileListIgnoresSpacesAndEmptyEntries) {
  absl::StatusOr<ServerConfig> config =
      Parse({"--key_files= /k/new.key , /k/old.key,,"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->key_files,
            (std::vector<std::string>{"/k/new.key", "/k/old.key"}));
}

TEST_F(ConfigTest, EnvironmentAppliesAndCommandLineWins) {
  env_["SESSIOND_BACKEND"] = "memory";
  env_["SESSIOND_KEY_FILES"] = "/env/key";
  env_["SESSIOND_PRUNE_INTERVAL"] = "1m";
  absl::StatusOr<ServerConfig> config = Parse({"--prune_interval=2m"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend_config.backend, "memory");
  EXPECT_EQ(config->key_files, (std::vector<std::string>{"/env/key"}));
  EXPECT_EQ(config->prune_interval, absl::Minutes(2));
}

TEST_F(ConfigTest, BadValuesNameTheFlagOrVariable) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--insecure_plaintext", "--backend=mongo"}, "--backend"},
      {{"--insecure_plaintext", "--idle_timeout=-5s"}, "--idle_timeout"},
      {{"--insecure_plaintext", "--idle_timeout=forever"}, "--idle_timeout"},
      {{"--insecure_plaintext", "--max_payload_bytes=abc"},
       "--max_payload_bytes"},
      {{"--insecure_plaintext", "--max_sessions_per_user=-1"},
       "--max_sessions_per_user"},
      {{"--insecure_plaintext", "--listen=50051"}, "--listen"},
      {{"--insecure_plaintext", "--no_such_flag=1"}, "--no_such_flag"},
      {{"--insecure_plaintext", "stray"}, "stray"},
      {{"--insecure_plaintext", "--threads"}, "--threads"},
      {{"--insecure_plaintext", "--key_files=/a"}, "contradict"},
      {{"--key_files=/a,/b", "--create_key_if_missing"},
       "--create_key_if_missing"},
      {{"--insecure_plaintext=maybe"}, "--insecure_plaintext"},
      {{"--insecure_plaintext", "--touch_interval=20m"}, "--touch_interval"},
      {{"--insecure_plaintext", "--backend=postgres"}, "--postgres_dsn"},
      {{"--insecure_plaintext",
        "--postgres_dsn=host=db user=s password=hunter2"},
       "--postgres_password_file"},
      {{"--insecure_plaintext",
        "--postgres_dsn=postgresql://s:hunter2@db/sessions"},
       "--postgres_password_file"},
      {{"--insecure_plaintext", "--valkey_address=cache"}, "--valkey_address"},
      {{"--insecure_plaintext", "--valkey_address=cache:0"},
       "--valkey_address"},
      {{"--insecure_plaintext", "--valkey_key_prefix={x}"},
       "--valkey_key_prefix"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ServerConfig> config = Parse(c.args);
    ASSERT_FALSE(config.ok()) << c.expected;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.expected));
  }
  env_["SESSIOND_TOUCH_INTERVAL"] = "soon";
  absl::StatusOr<ServerConfig> config = Parse({"--insecure_plaintext"});
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("SESSIOND_TOUCH_INTERVAL"));
}

}  // namespace
}  // namespace sessiond
