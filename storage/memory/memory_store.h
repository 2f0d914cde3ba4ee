// The in-memory SessionStore ("memory"): sessions live in this process only
// and vanish with it. For single-instance deployments, tests and benchmarks.
//
// Every call is one atomic step under sharded locks, with no global lock;
// storage/memory/README.md describes the design.
#ifndef SESSIOND_STORAGE_MEMORY_MEMORY_STORE_H_
#define SESSIOND_STORAGE_MEMORY_MEMORY_STORE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

struct MemoryOptions {
  // About the most memory the sessions may take, in bytes: a Create, or an
  // Update or Cycle that grows a session, that would go past it is
  // RESOURCE_EXHAUSTED, so that the process is not killed for memory
  // (which loses every session). 0: no bound.
  int64_t max_bytes = int64_t{512} << 20;
};

// A new, empty in-memory store reading time from `clock` (not owned; must
// outlive the store). INVALID_ARGUMENT as SessionStore::Open says, or if
// memory_options.max_bytes is negative.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenMemoryStore(
    const Clock* clock, const StoreOptions& options,
    const MemoryOptions& memory_options = {});

// The backend alone, for tests that put something between it and the
// front. `clock` must not be null.
std::unique_ptr<StorageBackend> NewMemoryBackend(
    const Clock* clock, const MemoryOptions& options = {});

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_MEMORY_MEMORY_STORE_H_
