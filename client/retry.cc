#include "client/retry.h"

#include <algorithm>
#include <cstdint>

namespace sessiond {

absl::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kLoad:
      return "Load";
    case Rpc::kSave:
      return "Save";
    case Rpc::kCycle:
      return "Cycle";
    case Rpc::kDelete:
      return "Delete";
    case Rpc::kListForUser:
      return "ListForUser";
    case Rpc::kPrune:
      return "Prune";
    case Rpc::kHealth:
      return "Health";
  }
  return "?";
}

bool IsIdempotent(Rpc rpc) {
  switch (rpc) {
    case Rpc::kLoad:
    case Rpc::kDelete:
    case Rpc::kListForUser:
    case Rpc::kPrune:
    case Rpc::kHealth:
      return true;
    case Rpc::kSave:
    case Rpc::kCycle:
      return false;
  }
  return false;
}

bool ShouldRetry(Rpc rpc, absl::StatusCode code, int attempt,
                 int max_attempts) {
  return IsIdempotent(rpc) && code == absl::StatusCode::kUnavailable &&
         attempt < max_attempts;
}

absl::Duration BackoffAfter(int attempt, absl::Duration initial_backoff) {
  if (attempt < 1 || initial_backoff <= absl::ZeroDuration()) {
    return absl::ZeroDuration();
  }
  // absl::Duration multiplication saturates at InfiniteDuration().
  const int shift = std::min(attempt - 1, 62);
  return initial_backoff * (int64_t{1} << shift);
}

}  // namespace sessiond
