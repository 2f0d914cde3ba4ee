// ObservedBackend: a StorageBackend that forwards every call to another and
// tells an OperationObserver what each took and returned.
#ifndef SESSIOND_STORAGE_INTERNAL_OBSERVED_BACKEND_H_
#define SESSIOND_STORAGE_INTERNAL_OBSERVED_BACKEND_H_

#include <memory>

#include "storage/backend.h"
#include "storage/observer.h"

namespace sessiond::storage::internal {

// `backend` non-null; `observer` must outlive the result.
std::unique_ptr<StorageBackend> Observe(std::unique_ptr<StorageBackend> backend,
                                        OperationObserver* observer);

}  // namespace sessiond::storage::internal

#endif  // SESSIOND_STORAGE_INTERNAL_OBSERVED_BACKEND_H_
