#include "storage/common/host_lookup.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace sessiond::storage::internal {

// What a lookup's thread and the caller waiting on it share; the thread
// holds its own reference, so a caller may stop waiting at any time.
struct HostLookup::Shared {
  absl::Mutex mu;
  int running ABSL_GUARDED_BY(mu) = 0;  // lookups whose thread has not ended
};

namespace {

bool IsNumericAddress(const std::string& host) {
  unsigned char buffer[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// One lookup's result, filled by its thread.
struct Outcome {
  absl::Mutex mu;
  std::optional<absl::StatusOr<std::vector<std::string>>> result
      ABSL_GUARDED_BY(mu);
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(
    const std::string& host) {
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  struct addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot look up ", host, ": ", gai_strerror(error)));
  }
  std::vector<std::string> addresses;
  for (const struct addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* where = nullptr;
    if (a->ai_family == AF_INET) {
      where = &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr;
    } else if (a->ai_family == AF_INET6) {
      where = &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
    }
    if (where == nullptr ||
        inet_ntop(a->ai_family, where, text, sizeof(text)) == nullptr) {
      continue;
    }
    if (std::find(addresses.begin(), addresses.end(), text) ==
        addresses.end()) {
      addresses.emplace_back(text);
    }
  }
  freeaddrinfo(found);
  return addresses;
}

HostLookup::HostLookup() : HostLookup(&ResolveWithGetaddrinfo) {}

HostLookup::HostLookup(Resolve resolve)
    : resolve_(std::move(resolve)), shared_(std::make_shared<Shared>()) {}

absl::StatusOr<std::vector<std::string>> HostLookup::Addresses(
    const std::string& host, absl::Time deadline) {
  if (IsNumericAddress(host)) return std::vector<std::string>{host};
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->running >= kMaxStuckLookups) {
      return absl::UnavailableError(
          absl::StrCat("cannot look up ", host, ": ", shared_->running,
                       " earlier lookups are still unanswered (is DNS down?)"));
    }
    ++shared_->running;
  }
  auto outcome = std::make_shared<Outcome>();
  try {
    std::thread([shared = shared_, outcome, resolve = resolve_, host] {
      absl::StatusOr<std::vector<std::string>> result = resolve(host);
      {
        absl::MutexLock lock(&outcome->mu);
        outcome->result = std::move(result);
      }
      absl::MutexLock lock(&shared->mu);
      --shared->running;
    }).detach();
  } catch (const std::system_error& e) {  // no thread to be had
    absl::MutexLock lock(&shared_->mu);
    --shared_->running;
    return absl::UnavailableError(
        absl::StrCat("cannot look up ", host, ": ", e.what()));
  }

  absl::MutexLock lock(&outcome->mu);
  auto done = [&outcome]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(outcome->mu) {
    return outcome->result.has_value();
  };
  if (!outcome->mu.AwaitWithDeadline(absl::Condition(&done), deadline)) {
    return absl::UnavailableError(
        absl::StrCat("cannot look up ", host, ": no answer in time"));
  }
  absl::StatusOr<std::vector<std::string>> result = *std::move(outcome->result);
  if (result.ok() && result->empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot look up ", host, ": no address"));
  }
  return result;
}

}  // namespace sessiond::storage::internal
