// Micro-benchmarks of the in-memory backend, and its memory footprint:
// BM_MillionSessions stores 1,000,000 live sessions, each with a 256-byte
// payload sealed by AES-256-GCM, and reports the process's peak RSS. Run it
// alone, in a fresh process, for a clean peak:
//   bazel run -c opt //bench:memory_store_benchmark --
//     --benchmark_filter=BM_MillionSessions   (one line)
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "crypto/token.h"
#include "storage/clock.h"
#include "storage/memory/memory_store.h"

namespace sessiond::bench {
namespace {

// A /proc/self/status field in MiB (VmRSS, VmHWM), or -1.
double ProcStatusMiB(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      int64_t kib = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits += c;
      }
      if (absl::SimpleAtoi(digits, &kib)) return kib / 1024.0;
    }
  }
  return -1;
}

std::unique_ptr<crypto::Sealer> BenchSealer() {
  auto ring = crypto::KeyRing::FromKeys({std::string(32, 'k')});
  return std::move(*crypto::NewAesGcmSealer(std::move(*ring)));
}

storage::SessionRecord NewRecord(const crypto::Sealer& sealer,
                                 const std::string& plaintext, int user) {
  storage::SessionRecord record;
  record.tenant = std::string(storage::kDefaultTenant);
  record.id = crypto::NewSessionId();
  record.token_hash = crypto::HashToken(crypto::NewToken());
  record.user_id = absl::StrCat("user-", user);
  record.sealed_payload = *sealer.Seal(plaintext, record.id);
  record.idle_timeout = absl::Hours(1);
  record.absolute_lifetime = absl::Hours(12);
  return record;
}

void BM_MillionSessions(benchmark::State& state) {
  const int sessions = static_cast<int>(state.range(0));
  const double rss_before = ProcStatusMiB("VmRSS");
  std::unique_ptr<crypto::Sealer> sealer = BenchSealer();
  const std::string plaintext(256, 'p');
  for (auto _ : state) {
    std::unique_ptr<storage::SessionStore> store =
        *storage::OpenMemoryStore(Clock::Real(), storage::StoreOptions{});
    for (int i = 0; i < sessions; ++i) {
      // Five sessions per user, as with a few devices each.
      if (!store
               ->Create(NewRecord(*sealer, plaintext, i / 5),
                        storage::TenantLimits{})
               .ok()) {
        state.SkipWithError("create failed");
        return;
      }
    }
    state.counters["rss_MiB"] = ProcStatusMiB("VmRSS");
    state.counters["peak_rss_MiB"] = ProcStatusMiB("VmHWM");
    state.counters["store_MiB"] = ProcStatusMiB("VmRSS") - rss_before;
    state.counters["bytes_per_session"] =
        (ProcStatusMiB("VmRSS") - rss_before) * 1024 * 1024 / sessions;
  }
}
BENCHMARK(BM_MillionSessions)
    ->Arg(1000000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// A store with 100k sessions of 1 KiB, shared by the Load/Update runs.
struct Populated {
  std::unique_ptr<crypto::Sealer> sealer = BenchSealer();
  std::unique_ptr<storage::SessionStore> store =
      *storage::OpenMemoryStore(Clock::Real(), storage::StoreOptions{});
  std::vector<std::string> hashes;

  Populated() {
    const std::string plaintext(1024, 'p');
    for (int i = 0; i < 100000; ++i) {
      storage::SessionRecord record = NewRecord(*sealer, plaintext, i / 5);
      hashes.push_back(record.token_hash);
      (void)store->Create(record, storage::TenantLimits{});
    }
  }
};

Populated& Shared() {
  static Populated* const populated = new Populated();
  return *populated;
}

void BM_Load(benchmark::State& state) {
  Populated& p = Shared();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.store->Load(storage::kDefaultTenant,
                                           p.hashes[i++ % p.hashes.size()]));
  }
}
BENCHMARK(BM_Load)->ThreadRange(1, 2)->UseRealTime();

void BM_LoadAndTouch(benchmark::State& state) {
  Populated& p = Shared();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.store->LoadAndTouch(
        storage::kDefaultTenant, p.hashes[i++ % p.hashes.size()],
        absl::ZeroDuration()));
  }
}
BENCHMARK(BM_LoadAndTouch)->ThreadRange(1, 2)->UseRealTime();

void BM_Update(benchmark::State& state) {
  Populated& p = Shared();
  storage::SessionUpdate update;
  update.sealed_payload = std::string(1024 + crypto::kAesGcmOverhead, 's');
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    const std::string& hash = p.hashes[i++ % p.hashes.size()];
    benchmark::DoNotOptimize(
        p.store->Update(storage::kDefaultTenant, hash, update));
  }
}
BENCHMARK(BM_Update)->ThreadRange(1, 2)->UseRealTime();

}  // namespace
}  // namespace sessiond::bench

BENCHMARK_MAIN();
