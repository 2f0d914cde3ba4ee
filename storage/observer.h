// OperationObserver: what a SessionStore tells of each backend operation it
// makes (for metrics), and PoolStats, what a backend tells of its
// connections.
#ifndef SESSIOND_STORAGE_OBSERVER_H_
#define SESSIOND_STORAGE_OBSERVER_H_

#include <array>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::storage {

// The StorageBackend methods (backend.h).
enum class Operation {
  kCreate,
  kLoad,
  kLoadAndTouch,
  kUpdate,
  kCycle,
  kDeleteByTokenHash,
  kDeleteById,
  kDeleteForUser,
  kListForUser,
  kCountLive,
  kPruneExpired,
  kPing,
};
inline constexpr int kOperationCount = static_cast<int>(Operation::kPing) + 1;

// "create", "load", "load_and_touch", ...: a metric label.
absl::string_view OperationName(Operation operation);

// Receives every backend operation a store makes, from many threads at
// once; must be cheap and must not call the store.
class OperationObserver {
 public:
  virtual ~OperationObserver() = default;
  // `code` is the backend's own, before the store maps it to its contract.
  virtual void OnOperation(Operation operation, absl::StatusCode code,
                           absl::Duration elapsed) = 0;
};

// A backend's connections to its database, as of the call.
struct PoolStats {
  // Connections open (idle, lent out, or being opened), the most that may
  // be, and those lent out to calls now. All 0 for a backend without a
  // pool.
  int open = 0;
  int max_open = 0;
  int in_use = 0;
};

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_OBSERVER_H_
