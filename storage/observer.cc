#include "storage/observer.h"

namespace sessiond::storage {

absl::string_view OperationName(Operation operation) {
  switch (operation) {
    case Operation::kCreate:
      return "create";
    case Operation::kLoad:
      return "load";
    case Operation::kLoadAndTouch:
      return "load_and_touch";
    case Operation::kUpdate:
      return "update";
    case Operation::kCycle:
      return "cycle";
    case Operation::kDeleteByTokenHash:
      return "delete_by_token_hash";
    case Operation::kDeleteById:
      return "delete_by_id";
    case Operation::kDeleteForUser:
      return "delete_for_user";
    case Operation::kListForUser:
      return "list_for_user";
    case Operation::kCountLive:
      return "count_live";
    case Operation::kPruneExpired:
      return "prune_expired";
    case Operation::kPing:
      return "ping";
  }
  return "unknown";
}

}  // namespace sessiond::storage
