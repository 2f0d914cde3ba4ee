#include "storage/call_deadline.h"

#include <algorithm>

#include "absl/time/time.h"

namespace sessiond::storage {
namespace {

thread_local absl::Time current_deadline = absl::InfiniteFuture();

}  // namespace

absl::Time CallDeadline() { return current_deadline; }

ScopedCallDeadline::ScopedCallDeadline(absl::Time deadline)
    : previous_(current_deadline) {
  current_deadline = std::min(previous_, deadline);
}

ScopedCallDeadline::~ScopedCallDeadline() { current_deadline = previous_; }

}  // namespace sessiond::storage
