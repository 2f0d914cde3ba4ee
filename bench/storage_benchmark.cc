// Save and Load of a session with a 1 KiB payload, encrypted (AES-256-GCM),
// through SessionHandler (validation, token hashing, sealing) on each
// storage backend: memory, SQLite (a file in a temporary directory), and a
// real PostgreSQL 15 and redis-server 7 that this binary starts on loopback.
//   bazel run -c opt //bench:storage_benchmark
// Needs tools/install_deps.sh --test (for the database servers).
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "server/session_handler.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/valkey/valkey_store.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/subprocess.h"

namespace sessiond::bench {
namespace {

constexpr int kSessions = 2000;

// One backend with kSessions live sessions, and their tokens.
struct Fixture {
  std::unique_ptr<storage::SessionStore> store;
  std::unique_ptr<crypto::Sealer> sealer;
  std::unique_ptr<SessionHandler> handler;
  TenantScope scope = DefaultScope(storage::kDefaultTenant, HandlerOptions{});
  std::vector<std::string> tokens;
};

struct Servers {
  std::string sqlite_dir = testing::MakeTempDir("storage-bench");
  testing::PostgresServer postgres;
  std::unique_ptr<testing::RedisServer> redis;

  Servers() {
    if (absl::Status s = postgres.Start(); !s.ok()) {
      std::cerr << "postgres: " << s << "\n";
      std::exit(1);
    }
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> r =
        testing::RedisServer::Start(testing::RedisServerOptions{});
    if (!r.ok()) {
      std::cerr << "redis: " << r.status() << "\n";
      std::exit(1);
    }
    redis = std::move(*r);
  }
  ~Servers() { testing::RemoveTree(sqlite_dir); }
};

Servers& TheServers() {
  static Servers* const servers = new Servers();
  return *servers;
}

absl::StatusOr<std::unique_ptr<storage::SessionStore>> OpenStore(
    const std::string& backend) {
  const storage::StoreOptions options;
  if (backend == "memory") {
    return storage::OpenMemoryStore(Clock::Real(), options);
  }
  if (backend == "sqlite") {
    storage::SqliteOptions sqlite;
    sqlite.path = TheServers().sqlite_dir + "/bench.db";
    return storage::OpenSqliteStore(sqlite, Clock::Real(), options);
  }
  if (backend == "postgres") {
    storage::PostgresOptions pg;
    pg.dsn = TheServers().postgres.dsn();
    return storage::OpenPostgresStore(pg, Clock::Real(), options);
  }
  storage::ValkeyOptions valkey;
  valkey.port = TheServers().redis->port();
  return storage::OpenValkeyStore(valkey, Clock::Real(), options);
}

Fixture& FixtureFor(const std::string& backend) {
  static auto* const fixtures = new std::map<std::string, Fixture>();
  auto it = fixtures->find(backend);
  if (it != fixtures->end()) return it->second;
  Fixture& f = (*fixtures)[backend];
  absl::StatusOr<std::unique_ptr<storage::SessionStore>> store =
      OpenStore(backend);
  if (!store.ok()) {
    std::cerr << backend << ": " << store.status() << "\n";
    std::exit(1);
  }
  f.store = std::move(*store);
  f.sealer = std::move(*crypto::NewAesGcmSealer(
      std::move(*crypto::KeyRing::FromKeys({std::string(32, 'k')}))));
  f.handler = std::make_unique<SessionHandler>(f.store.get(), f.sealer.get(),
                                               HandlerOptions{});
  v1::SaveRequest create;
  create.set_data(std::string(1024, 'd'));
  (*create.mutable_metadata())["ip"] = "203.0.113.7";
  for (int i = 0; i < kSessions; ++i) {
    create.set_user_id(absl::StrCat("user-", i % 200));
    absl::StatusOr<v1::SaveResponse> created = f.handler->Save(f.scope, create);
    if (!created.ok()) {
      std::cerr << backend << ": " << created.status() << "\n";
      std::exit(1);
    }
    f.tokens.push_back(created->token());
  }
  return f;
}

const char* Backend(const benchmark::State& state) {
  static const char* const kNames[] = {"memory", "sqlite", "postgres",
                                       "valkey"};
  return kNames[state.range(0)];
}

void BM_Load(benchmark::State& state) {
  Fixture& f = FixtureFor(Backend(state));
  v1::LoadRequest request;
  size_t i = static_cast<size_t>(state.thread_index()) * 997;
  for (auto _ : state) {
    request.set_token(f.tokens[i++ % f.tokens.size()]);
    absl::StatusOr<v1::LoadResponse> loaded = f.handler->Load(f.scope, request);
    if (!loaded.ok()) state.SkipWithError("load failed");
    benchmark::DoNotOptimize(loaded);
  }
  state.SetLabel(Backend(state));
}

void BM_Save(benchmark::State& state) {
  Fixture& f = FixtureFor(Backend(state));
  v1::SaveRequest request;
  request.set_data(std::string(1024, 'u'));
  (*request.mutable_metadata())["ip"] = "203.0.113.7";
  // Threads update disjoint sessions, so that updates do not contend on rows.
  const size_t threads = static_cast<size_t>(state.threads());
  size_t i = static_cast<size_t>(state.thread_index());
  for (auto _ : state) {
    request.set_token(f.tokens[i % f.tokens.size()]);
    request.set_user_id(absl::StrCat("user-", i % 200));
    i += threads;
    absl::StatusOr<v1::SaveResponse> saved = f.handler->Save(f.scope, request);
    if (!saved.ok()) state.SkipWithError("save failed");
    benchmark::DoNotOptimize(saved);
  }
  state.SetLabel(Backend(state));
}

// Arg: 0 memory, 1 sqlite, 2 postgres, 3 valkey.
BENCHMARK(BM_Load)->DenseRange(0, 3)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_Save)->DenseRange(0, 3)->Threads(1)->Threads(4)->UseRealTime();

}  // namespace
}  // namespace sessiond::bench

BENCHMARK_MAIN();
