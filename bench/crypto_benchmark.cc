// Microbenchmarks of crypto/: `bazel run -c opt
// //tests/crypto:crypto_benchmark`.
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "crypto/token.h"

namespace sessiond::crypto {
namespace {

constexpr size_t kPayloadSize = 1024;

std::unique_ptr<Sealer> MakeSealer() {
  absl::StatusOr<KeyRing> ring = KeyRing::FromKeys({std::string(32, 'k')});
  if (!ring.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Sealer>> sealer =
      NewAesGcmSealer(*std::move(ring));
  if (!sealer.ok()) return nullptr;
  return *std::move(sealer);
}

void BM_Seal1KiB(benchmark::State& state) {
  std::unique_ptr<Sealer> sealer = MakeSealer();
  if (sealer == nullptr) {
    state.SkipWithError("cannot make sealer");
    return;
  }
  const std::string payload(kPayloadSize, 'p');
  const std::string session_id = NewSessionId();
  for (auto _ : state) {
    absl::StatusOr<std::string> sealed = sealer->Seal(payload, session_id);
    benchmark::DoNotOptimize(sealed);
  }
  state.SetBytesProcessed(state.iterations() * kPayloadSize);
}
BENCHMARK(BM_Seal1KiB);

void BM_Open1KiB(benchmark::State& state) {
  std::unique_ptr<Sealer> sealer = MakeSealer();
  if (sealer == nullptr) {
    state.SkipWithError("cannot make sealer");
    return;
  }
  const std::string session_id = NewSessionId();
  absl::StatusOr<std::string> sealed =
      sealer->Seal(std::string(kPayloadSize, 'p'), session_id);
  if (!sealed.ok()) {
    state.SkipWithError("cannot seal");
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<std::string> opened = sealer->Open(*sealed, session_id);
    benchmark::DoNotOptimize(opened);
  }
  state.SetBytesProcessed(state.iterations() * kPayloadSize);
}
BENCHMARK(BM_Open1KiB);

void BM_HashToken(benchmark::State& state) {
  const std::string token = NewToken();
  for (auto _ : state) {
    std::string hash = HashToken(token);
    benchmark::DoNotOptimize(hash);
  }
}
BENCHMARK(BM_HashToken);

void BM_NewToken(benchmark::State& state) {
  for (auto _ : state) {
    std::string token = NewToken();
    benchmark::DoNotOptimize(token);
  }
}
BENCHMARK(BM_NewToken);

}  // namespace
}  // namespace sessiond::crypto

// Debian's libbenchmark-dev ships no benchmark_main.pc, so
// @system_benchmark_main cannot be set up; define main() here instead.
BENCHMARK_MAIN();
