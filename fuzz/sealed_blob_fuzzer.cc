// Opening arbitrary bytes as a sealed payload: never crashes, never
// returns bytes it did not authenticate (the input's first byte splits
// associated data from blob); and what Seal makes, Open gives back.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "crypto/key_ring.h"
#include "crypto/sealer.h"
#include "fuzz/check.h"

namespace {

const sessiond::crypto::Sealer& TheSealer() {
  static const sessiond::crypto::Sealer* const sealer = [] {
    auto ring = sessiond::crypto::KeyRing::FromKeys(
        {std::string(32, '\x01'), std::string(32, '\x02')});
    FUZZ_CHECK(ring.ok());
    auto made = sessiond::crypto::NewAesGcmSealer(*std::move(ring));
    FUZZ_CHECK(made.ok());
    return made->release();
  }();
  return *sealer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.empty() ? 0 : static_cast<uint8_t>(input[0]);
  const absl::string_view rest = input.substr(input.empty() ? 0 : 1);
  const absl::string_view associated = rest.substr(0, split);
  const absl::string_view blob = rest.substr(associated.size());
  const sessiond::crypto::Sealer& sealer = TheSealer();

  auto opened = sealer.Open(blob, associated);
  // Forging an AES-GCM tag is out of a fuzzer's reach: only a blob that
  // Seal made can open.
  FUZZ_CHECK(!opened.ok());
  FUZZ_CHECK(opened.status().code() == absl::StatusCode::kDataLoss);

  auto sealed = sealer.Seal(blob, associated);
  FUZZ_CHECK(sealed.ok());
  auto round_trip = sealer.Open(*sealed, associated);
  FUZZ_CHECK(round_trip.ok() && *round_trip == blob);
  if (!sealed->empty()) {
    std::string tampered = *sealed;
    tampered[size % tampered.size()] ^= 0x01;
    FUZZ_CHECK(!sealer.Open(tampered, associated).ok());
  }
  return 0;
}
