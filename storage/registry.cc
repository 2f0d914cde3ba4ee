#include "storage/registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sessiond::storage {
namespace {

struct Registry {
  absl::Mutex mu;
  // Kept in the order RegisteredBackends() promises.
  std::vector<std::unique_ptr<Backend>> backends ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* const registry = new Registry;
  return *registry;
}

// kDefaultBackend before everything, then by name.
bool ListedBefore(const std::unique_ptr<Backend>& a,
                  const std::unique_ptr<Backend>& b) {
  const bool a_default = a->name() == kDefaultBackend;
  const bool b_default = b->name() == kDefaultBackend;
  if (a_default != b_default) return a_default;
  return a->name() < b->name();
}

[[noreturn]] void RegistrationFailed(const std::string& what) {
  std::fprintf(stderr, "storage backend registry: %s\n", what.c_str());
  std::abort();
}

}  // namespace

bool RegisterBackend(std::unique_ptr<Backend> backend) {
  if (backend == nullptr || backend->name().empty()) {
    RegistrationFailed("a backend without a name");
  }
  Registry& registry = GetRegistry();
  absl::MutexLock lock(&registry.mu);
  for (const std::unique_ptr<Backend>& other : registry.backends) {
    if (other->name() == backend->name()) {
      RegistrationFailed(
          absl::StrCat("backend \"", backend->name(), "\" registered twice"));
    }
    for (const flags::FlagInfo& flag : backend->flags()) {
      for (const flags::FlagInfo& taken : other->flags()) {
        if (flag.name == taken.name) {
          RegistrationFailed(
              absl::StrCat("flag --", flag.name, " of \"", backend->name(),
                           "\" is also a flag of \"", other->name(), "\""));
        }
      }
    }
  }
  auto at = std::upper_bound(registry.backends.begin(), registry.backends.end(),
                             backend, ListedBefore);
  registry.backends.insert(at, std::move(backend));
  return true;
}

std::vector<const Backend*> RegisteredBackends() {
  Registry& registry = GetRegistry();
  absl::MutexLock lock(&registry.mu);
  std::vector<const Backend*> backends;
  backends.reserve(registry.backends.size());
  for (const std::unique_ptr<Backend>& backend : registry.backends) {
    backends.push_back(backend.get());
  }
  return backends;
}

std::string BackendNameList() {
  const std::vector<const Backend*> backends = RegisteredBackends();
  std::string list;
  for (size_t i = 0; i < backends.size(); ++i) {
    if (i > 0) list += i + 1 == backends.size() ? " or " : ", ";
    list += backends[i]->name();
  }
  return list;
}

absl::StatusOr<const Backend*> FindBackend(absl::string_view name) {
  const std::vector<const Backend*> backends = RegisteredBackends();
  for (const Backend* backend : backends) {
    if (backend->name() == name) return backend;
  }
  if (backends.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown backend \"", name, "\" (no backend is linked in)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown backend \"", name, "\" (expected ", BackendNameList(), ")"));
}

absl::StatusOr<std::unique_ptr<SessionStore>> OpenBackend(
    absl::string_view name, const BackendSettings& settings, const Clock* clock,
    const StoreOptions& store_options) {
  absl::StatusOr<const Backend*> backend = FindBackend(name);
  if (!backend.ok()) return backend.status();
  return (*backend)->Open(settings, clock, store_options);
}

}  // namespace sessiond::storage
