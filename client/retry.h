// The retry policy of sessiond::Client as pure functions, so that it is
// tested without a server. client.h states the contract; this file is the
// single place that decides it.
#ifndef SESSIOND_CLIENT_RETRY_H_
#define SESSIOND_CLIENT_RETRY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond {

// The RPCs of sessiond.v1.SessionService.
enum class Rpc { kLoad, kSave, kCycle, kDelete, kListForUser, kPrune, kHealth };

// "Load", "Save", ... as in the proto.
absl::string_view RpcName(Rpc rpc);

// Whether sending `rpc` twice leaves the same state as sending it once.
// True for Load (with or without touch: a touch only moves last_active_at
// forward and is not a write), ListForUser, Delete, Prune and Health.
// False for Save (a create would create twice; an update may apply twice)
// and Cycle (the first attempt may already have replaced the token).
bool IsIdempotent(Rpc rpc);

// Whether to send attempt `attempt + 1` after attempt `attempt` (1-based)
// failed with `code`: only for idempotent RPCs, only on UNAVAILABLE, and
// only while attempt < max_attempts.
bool ShouldRetry(Rpc rpc, absl::StatusCode code, int attempt, int max_attempts);

// How long to wait after failed attempt `attempt` (1-based) before the next
// one: initial_backoff * 2^(attempt - 1), saturating instead of overflowing.
// No jitter: attempts are few and bounded by the call's deadline.
absl::Duration BackoffAfter(int attempt, absl::Duration initial_backoff);

}  // namespace sessiond

#endif  // SESSIOND_CLIENT_RETRY_H_
