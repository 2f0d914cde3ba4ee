// Registers the "memory" backend (storage/registry.h). It has no flags.
#include <memory>

#include "storage/memory/memory_store.h"
#include "storage/registry.h"

namespace sessiond::storage {
namespace {

// The memory backend has no settings of its own.
struct MemoryOptions {};

BackendSpec<MemoryOptions> MemorySpec() {
  BackendSpec<MemoryOptions> spec;
  spec.name = "memory";
  spec.open = [](const MemoryOptions&, const Clock* clock,
                 const StoreOptions& store_options) {
    return OpenMemoryStore(clock, store_options);
  };
  return spec;
}

[[maybe_unused]] const bool kRegistered = RegisterBackend(MemorySpec());

}  // namespace
}  // namespace sessiond::storage
