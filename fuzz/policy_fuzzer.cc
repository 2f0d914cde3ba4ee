// The policy file's YAML on arbitrary bytes: never crashes or throws; a
// refusal is INVALID_ARGUMENT that says where ("source:line: ").
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "auth/policy.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto policy = sessiond::auth::Policy::Parse(yaml, "fuzz.yaml");
  if (!policy.ok()) {
    FUZZ_CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(absl::StartsWith(policy.status().message(), "fuzz.yaml:"));
  } else {
    FUZZ_CHECK(*policy != nullptr);
  }
  return 0;
}
