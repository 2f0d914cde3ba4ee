// Registers the "memory" backend (storage/registry.h).
#include <cstdint>
#include <memory>

#include "storage/memory/memory_store.h"
#include "storage/registry.h"

namespace sessiond::storage {
namespace {

BackendSpec<MemoryOptions> MemorySpec() {
  BackendSpec<MemoryOptions> spec;
  spec.name = "memory";
  spec.flags.Int(
      "memory_max_bytes",
      "memory: about the most memory sessions may take; a write that "
      "takes more past it is RESOURCE_EXHAUSTED (0: no bound)",
      &MemoryOptions::max_bytes, 0, int64_t{1} << 50);
  spec.open = [](const MemoryOptions& options, const Clock* clock,
                 const StoreOptions& store_options) {
    return OpenMemoryStore(clock, store_options, options);
  };
  return spec;
}

[[maybe_unused]] const bool kRegistered = RegisterBackend(MemorySpec());

}  // namespace
}  // namespace sessiond::storage
