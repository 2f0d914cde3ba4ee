// HostLookup: a host name's addresses by a deadline. libpq and hiredis
// look names up themselves with getaddrinfo(3), which has no deadline of
// its own (the resolver's, several seconds per server and attempt, is
// outside ours); so the backends look the name up here and hand the
// libraries numeric addresses.
//
// A lookup runs on a thread of its own. getaddrinfo cannot be cancelled, so
// a lookup that misses its deadline is left to end by itself; while
// kMaxStuckLookups of them are still running, further lookups fail at once
// rather than pile up threads.
#ifndef SESSIOND_STORAGE_COMMON_HOST_LOOKUP_H_
#define SESSIOND_STORAGE_COMMON_HOST_LOOKUP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::storage::internal {

class HostLookup {
 public:
  // The addresses of a name (numeric strings, in the resolver's order), or
  // an error; blocks as long as it takes.
  using Resolve = std::function<absl::StatusOr<std::vector<std::string>>(
      const std::string&)>;

  static constexpr int kMaxStuckLookups = 8;

  // With getaddrinfo (AI_ADDRCONFIG, TCP).
  HostLookup();
  // With `resolve` instead, for tests.
  explicit HostLookup(Resolve resolve);

  // `host`'s addresses: at once for a numeric address (IPv4 or IPv6),
  // otherwise from `resolve` by `deadline`. UNAVAILABLE naming the host if
  // the name has no address, the lookup fails, it is not done by the
  // deadline, or too many earlier lookups are still stuck.
  absl::StatusOr<std::vector<std::string>> Addresses(const std::string& host,
                                                     absl::Time deadline);

 private:
  struct Shared;
  Resolve resolve_;
  std::shared_ptr<Shared> shared_;  // outlives the lookups left running
};

// getaddrinfo(3) of `host` for TCP: numeric addresses, duplicates removed.
absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(
    const std::string& host);

}  // namespace sessiond::storage::internal

#endif  // SESSIOND_STORAGE_COMMON_HOST_LOOKUP_H_
