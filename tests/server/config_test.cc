#include "server/config.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/registry.h"

namespace sessiond {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ConfigTest : public ::testing::Test {
 protected:
  // What the server logs about the chosen backend.
  static std::string Describe(const ServerConfig& config) {
    absl::StatusOr<const storage::Backend*> backend =
        storage::FindBackend(config.backend);
    if (!backend.ok()) return std::string(backend.status().message());
    return (*backend)->Describe(config.backend_settings);
  }

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
  // Parse, listening on loopback, where no policy is needed (a --listen in
  // `args` overrides it).
  absl::StatusOr<ServerConfig> ParseLocal(std::vector<std::string> args) {
    args.insert(args.begin(), "--listen=127.0.0.1:50051");
    return Parse(std::move(args));
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

TEST_F(ConfigTest, NoPolicyOnANonLoopbackAddressNeedsAnExplicitOptIn) {
  absl::StatusOr<ServerConfig> config = Parse({"--insecure_plaintext"});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("0.0.0.0:50051"));
  EXPECT_THAT(config.status().message(), HasSubstr("--policy_file"));
  EXPECT_THAT(config.status().message(), HasSubstr("--allow_unauthenticated"));
  for (const char* ok : {"--allow_unauthenticated", "--listen=127.0.0.1:50051",
                         "--listen=[::1]:50051", "--listen=localhost:1",
                         "--policy_file=/etc/sessiond/policy.yaml"}) {
    SCOPED_TRACE(ok);
    config = Parse({"--insecure_plaintext", ok});
    EXPECT_TRUE(config.ok()) << config.status();
  }
  config = Parse({"--insecure_plaintext", "--allow_unauthenticated",
                  "--policy_file=/etc/sessiond/policy.yaml"});
  EXPECT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("contradict"));
}

TEST(IsLoopbackAddressTest, OnlyAddressesNoOtherMachineReaches) {
  for (const char* yes : {"127.0.0.1:50051", "127.1.2.3:1", "localhost:50051",
                          "[::1]:50051", "unix:/run/sessiond.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(yes)) << yes;
  }
  for (const char* no : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051",
                         "128.0.0.1:1", "127.0.0.1.example.com:1",
                         "127.0.0.256:1", "sessiond:50051", ":50051"}) {
    EXPECT_FALSE(IsLoopbackAddress(no)) << no;
  }
}

TEST_F(ConfigTest, DocumentedDefaults) {
  absl::StatusOr<ServerConfig> config =
      Parse({"--insecure_plaintext", "--allow_unauthenticated"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->grpc.listen_address, "0.0.0.0:50051");
  EXPECT_EQ(config->backend, "sqlite");
  EXPECT_THAT(config->backend_settings, IsEmpty());
  EXPECT_EQ(config->handler.default_idle_timeout, absl::Minutes(30));
  EXPECT_EQ(config->handler.default_absolute_lifetime, absl::Hours(12));
  EXPECT_EQ(config->handler.touch_interval, absl::Minutes(1));
  EXPECT_EQ(config->handler.max_payload_bytes, 65536);
  EXPECT_EQ(config->handler.max_sessions_per_user, 0);
  EXPECT_EQ(config->prune_interval, absl::Minutes(5));
  EXPECT_EQ(config->shutdown_grace, absl::Seconds(10));
  EXPECT_EQ(config->grpc.threads, 0);
  EXPECT_EQ(config->grpc.workers, 32);
  EXPECT_EQ(config->grpc.call_timeout, absl::Seconds(5));
  EXPECT_EQ(config->grpc.max_connection_age, absl::Seconds(30));
  EXPECT_TRUE(config->insecure_plaintext);
}

TEST_F(ConfigTest, CallTimeoutAndWorkers) {
  env_["SESSIOND_CALL_TIMEOUT"] = "750ms";
  absl::StatusOr<ServerConfig> config =
      ParseLocal({"--insecure_plaintext", "--backend=memory", "--workers=0"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->grpc.call_timeout, absl::Milliseconds(750));
  EXPECT_EQ(config->grpc.workers, 0);
  // Only the memory backend never waits on a peer.
  config = ParseLocal({"--insecure_plaintext", "--workers=0"});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("--backend=memory only"));
  for (const char* bad : {"--call_timeout=5ms", "--call_timeout=11m",
                          "--call_timeout=0s", "--workers=-1"}) {
    SCOPED_TRACE(bad);
    config = ParseLocal({"--insecure_plaintext", bad});
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(),
                HasSubstr(absl::string_view(bad).substr(
                    0, absl::string_view(bad).find('='))));
  }
}

TEST_F(ConfigTest, TransportBounds) {
  env_["SESSIOND_TRANSPORT_MEMORY_BYTES"] = "67108864";
  absl::StatusOr<ServerConfig> config =
      ParseLocal({"--insecure_plaintext", "--max_concurrent_streams=64"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->grpc.max_concurrent_streams, 64);
  EXPECT_EQ(config->grpc.transport_memory_bytes, int64_t{64} << 20);
  for (const char* bad :
       {"--max_concurrent_streams=0", "--transport_memory_bytes=1024"}) {
    SCOPED_TRACE(bad);
    config = ParseLocal({"--insecure_plaintext", bad});
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(),
                HasSubstr(absl::string_view(bad).substr(
                    2, absl::string_view(bad).find('=') - 2)));
  }
}

// The usage text states each default; passing that text back must change
// nothing, so the two cannot drift apart.
TEST_F(ConfigTest, UsageDefaultsMatchTheRealDefaults) {
  absl::StatusOr<ServerConfig> plain =
      Parse({"--insecure_plaintext", "--allow_unauthenticated"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  std::vector<std::string> args = {"--insecure_plaintext",
                                   "--allow_unauthenticated"};
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
    if (name == "key_files" || name == "insecure_plaintext" ||
        name == "allow_unauthenticated") {
      continue;
    }
    args.push_back("--" + name + "=" + value);
  }
  EXPECT_GE(flags, 14);
  absl::StatusOr<ServerConfig> explicit_defaults = Parse(args);
  ASSERT_TRUE(explicit_defaults.ok()) << explicit_defaults.status();
  EXPECT_EQ(explicit_defaults->grpc.listen_address, plain->grpc.listen_address);
  EXPECT_EQ(explicit_defaults->backend, plain->backend);
  EXPECT_EQ(Describe(*explicit_defaults), Describe(*plain));
  EXPECT_EQ(explicit_defaults->handler.default_idle_timeout,
            plain->handler.default_idle_timeout);
  EXPECT_EQ(explicit_defaults->handler.default_absolute_lifetime,
            plain->handler.default_absolute_lifetime);
  EXPECT_EQ(explicit_defaults->handler.touch_interval,
            plain->handler.touch_interval);
  EXPECT_EQ(explicit_defaults->handler.max_payload_bytes,
            plain->handler.max_payload_bytes);
  EXPECT_EQ(explicit_defaults->handler.max_sessions_per_user,
            plain->handler.max_sessions_per_user);
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
  EXPECT_EQ(config->backend, "memory");
  EXPECT_EQ(config->handler.default_idle_timeout, absl::Seconds(150));
  EXPECT_EQ(config->handler.max_sessions_per_user, 5);
  EXPECT_EQ(config->grpc.listen_address, "127.0.0.1:0");
}

// Every backend's flags are accepted (each value checked by its backend);
// the chosen backend's are kept for it. How they set the backend's options
// is tests/storage/registry_test.cc's part.
TEST_F(ConfigTest, PostgresAndValkeySettings) {
  const std::vector<std::string> postgres_flags = {
      "--postgres_dsn=postgresql://sessiond@db:5432/sessions",
      "--postgres_password_file=/run/secrets/pg", "--postgres_pool_size=16",
      "--postgres_statement_timeout=2s"};
  const std::vector<std::string> valkey_flags = {
      "--valkey_address=cache.local:6380",
      "--valkey_database=3",
      "--valkey_username=sessiond",
      "--valkey_password_file=/run/secrets/valkey",
      "--valkey_key_prefix=prod",
      "--valkey_pool_size=4",
      "--valkey_timeout=500ms"};
  std::vector<std::string> args = {"--insecure_plaintext",
                                   "--backend=postgres"};
  args.insert(args.end(), postgres_flags.begin(), postgres_flags.end());
  args.insert(args.end(), valkey_flags.begin(), valkey_flags.end());
  absl::StatusOr<ServerConfig> config = ParseLocal(args);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "postgres");
  EXPECT_EQ(config->backend_settings,
            (storage::BackendSettings{
                {"postgres_dsn", "postgresql://sessiond@db:5432/sessions"},
                {"postgres_password_file", "/run/secrets/pg"},
                {"postgres_pool_size", "16"},
                {"postgres_statement_timeout", "2s"}}));
  EXPECT_EQ(Describe(*config).find("secrets"), std::string::npos);

  args[1] = "--backend=valkey";
  config = ParseLocal(args);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "valkey");
  EXPECT_EQ(
      config->backend_settings,
      (storage::BackendSettings{{"valkey_address", "cache.local:6380"},
                                {"valkey_database", "3"},
                                {"valkey_username", "sessiond"},
                                {"valkey_password_file", "/run/secrets/valkey"},
                                {"valkey_key_prefix", "prod"},
                                {"valkey_pool_size", "4"},
                                {"valkey_timeout", "500ms"}}));
  EXPECT_THAT(Describe(*config), HasSubstr("cache.local:6380"));
  EXPECT_EQ(Describe(*config).find("secrets"), std::string::npos);
}

TEST_F(ConfigTest, BackendFlagsComeFromTheEnvironmentToo) {
  env_["SESSIOND_BACKEND"] = "sqlite";
  env_["SESSIOND_DB_PATH"] = "/env/sessions.db";
  absl::StatusOr<ServerConfig> config = ParseLocal({"--insecure_plaintext"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend_settings,
            (storage::BackendSettings{{"db_path", "/env/sessions.db"}}));
  config = ParseLocal({"--insecure_plaintext", "--db-path=/cli/sessions.db"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend_settings,
            (storage::BackendSettings{{"db_path", "/cli/sessions.db"}}));

  env_["SESSIOND_POSTGRES_POOL_SIZE"] = "many";
  config = ParseLocal({"--insecure_plaintext"});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr("SESSIOND_POSTGRES_POOL_SIZE"));
}

// The usage text shows README's defaults of the backends' flags, and the
// backend list comes from the registry.
TEST_F(ConfigTest, UsageShowsEveryBackendAndItsFlagsOnce) {
  const std::string usage = ConfigUsage();
  EXPECT_THAT(usage,
              HasSubstr("storage backend: sqlite, memory, postgres or valkey"));
  for (const char* expected : {
           "--backend (SESSIOND_BACKEND, default \"sqlite\")",
           "--db_path (SESSIOND_DB_PATH, default \"./sessiond.db\")",
           "--postgres_dsn (SESSIOND_POSTGRES_DSN, default \"\")",
           "--postgres_password_file (SESSIOND_POSTGRES_PASSWORD_FILE, "
           "default \"\")",
           "--postgres_pool_size (SESSIOND_POSTGRES_POOL_SIZE, default \"8\")",
           "--postgres_statement_timeout (SESSIOND_POSTGRES_STATEMENT_TIMEOUT, "
           "default \"5s\")",
           "--valkey_address (SESSIOND_VALKEY_ADDRESS, default "
           "\"127.0.0.1:6379\")",
           "--valkey_database (SESSIOND_VALKEY_DATABASE, default \"0\")",
           "--valkey_username (SESSIOND_VALKEY_USERNAME, default \"\")",
           "--valkey_password_file (SESSIOND_VALKEY_PASSWORD_FILE, default "
           "\"\")",
           "--valkey_key_prefix (SESSIOND_VALKEY_KEY_PREFIX, default "
           "\"sessiond\")",
           "--valkey_pool_size (SESSIOND_VALKEY_POOL_SIZE, default \"8\")",
           "--valkey_timeout (SESSIOND_VALKEY_TIMEOUT, default \"2s\")",
           "--shutdown_drain_delay (SESSIOND_SHUTDOWN_DRAIN_DELAY, default "
           "\"0s\")",
       }) {
    EXPECT_THAT(usage, HasSubstr(expected));
  }
  std::set<std::string> names;
  size_t pos = 0;
  while ((pos = usage.find("  --", pos)) != std::string::npos) {
    const size_t name_end = usage.find(' ', pos + 4);
    const std::string name = usage.substr(pos + 4, name_end - pos - 4);
    EXPECT_TRUE(names.insert(name).second) << name << " listed twice";
    pos = name_end;
  }
  for (const storage::Backend* backend : storage::RegisteredBackends()) {
    for (const flags::FlagInfo& flag : backend->flags()) {
      EXPECT_EQ(names.count(flag.name), 1u) << flag.name;
    }
  }
}

TEST_F(ConfigTest, KeyFileListIgnoresSpacesAndEmptyEntries) {
  absl::StatusOr<ServerConfig> config =
      ParseLocal({"--key_files= /k/new.key , /k/old.key,,"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->key_files,
            (std::vector<std::string>{"/k/new.key", "/k/old.key"}));
}

TEST_F(ConfigTest, EnvironmentAppliesAndCommandLineWins) {
  env_["SESSIOND_BACKEND"] = "memory";
  env_["SESSIOND_KEY_FILES"] = "/env/key";
  env_["SESSIOND_PRUNE_INTERVAL"] = "1m";
  absl::StatusOr<ServerConfig> config = ParseLocal({"--prune_interval=2m"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "memory");
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
      {{"--insecure_plaintext", "--backend=mongo"},
       "sqlite, memory, postgres or valkey"},
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
      {{"--insecure_plaintext", "--valkey_timeout=forever"},
       "--valkey_timeout"},
      {{"--insecure_plaintext", "--postgres_pool_size=0"},
       "--postgres_pool_size"},
      {{"--insecure_plaintext", "--db_path="}, "--db_path"},
      {{"--insecure_plaintext", "--max_idle_timeout=10m"},
       "--max_idle_timeout"},
      {{"--insecure_plaintext", "--absolute_lifetime=2h",
        "--max_absolute_lifetime=1h"},
       "--max_absolute_lifetime"},
      {{"--insecure_plaintext", "--max_idle_timeout=9601h"},
       "--max_idle_timeout"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ServerConfig> config = ParseLocal(c.args);
    ASSERT_FALSE(config.ok()) << c.expected;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.expected));
  }
  env_["SESSIOND_TOUCH_INTERVAL"] = "soon";
  absl::StatusOr<ServerConfig> config = ParseLocal({"--insecure_plaintext"});
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("SESSIOND_TOUCH_INTERVAL"));
}

}  // namespace
}  // namespace sessiond
