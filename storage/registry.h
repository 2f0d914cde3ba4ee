// The backend registry: every storage backend registers itself here, once,
// by name, with its flags, and whoever opens a store (the server) selects a
// backend by name, sets its flags by name and opens it, without including
// any backend's header.
//
// A backend's flags set the fields of its options struct (SqliteOptions,
// PostgresOptions, ...) through a flags::FlagSet, so a flag's default text
// is the struct's default and is written nowhere else. Besides each flag's
// own value check, a backend may check its flags as a whole (a required
// flag, flags that go together); it describes its settings for logs and
// opens a SessionStore from them.
//
// Registration: each backend's registration.cc, in an alwayslink library,
// calls RegisterBackend at static initialization; //storage:all_backends
// links them all and is the one list of backends. Lookups are for after
// main() has started; registered backends are never removed, so the
// pointers returned stay valid.
#ifndef SESSIOND_STORAGE_REGISTRY_H_
#define SESSIOND_STORAGE_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "flags/flags.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// The backend used when none is chosen; listed first.
inline constexpr char kDefaultBackend[] = "sqlite";

// The values given for a backend's flags, by flag name (with underscores).
// A flag that is absent keeps its default.
using BackendSettings = std::map<std::string, std::string, std::less<>>;

// A registered backend, as its users see it: flags and text. Thread-safe.
class Backend {
 public:
  virtual ~Backend() = default;

  // "sqlite", "memory", ...: what SessionStore::backend_name() returns.
  virtual const std::string& name() const = 0;

  // Its flags, in the order the backend defined them. No two registered
  // backends share a flag name.
  virtual const std::vector<flags::FlagInfo>& flags() const = 0;

  // OK if `value` is a valid value of the flag named `flag` on its own.
  // Otherwise INVALID_ARGUMENT saying what the value must be, without naming
  // the flag (the caller names where the value came from); or, if this
  // backend has no such flag, saying so.
  virtual absl::Status CheckFlag(absl::string_view flag,
                                 absl::string_view value) const = 0;

  // OK if every key of `settings` is a flag of this backend, every value
  // passes its flag's check, and the settings pass the backend's check of
  // the whole set. Otherwise INVALID_ARGUMENT naming the flag
  // ("--postgres_pool_size: must be ...").
  virtual absl::Status Validate(const BackendSettings& settings) const = 0;

  // For logs: the backend and where it stores, with no secret in it.
  // Settings that do not pass Validate are described by the name alone.
  virtual std::string Describe(const BackendSettings& settings) const = 0;

  // Validates `settings` (errors as Validate), then opens the store: what
  // the backend's Open*Store function returns. `clock` must outlive it.
  virtual absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const BackendSettings& settings, const Clock* clock,
      const StoreOptions& store_options) const = 0;
};

// What a backend registers, typed by its options struct.
template <typename Options>
struct BackendSpec {
  using Opener = std::function<absl::StatusOr<std::unique_ptr<SessionStore>>(
      const Options& options, const Clock* clock,
      const StoreOptions& store_options)>;

  std::string name;
  // Each flag sets fields of Options; their defaults come from Options{}.
  flags::FlagSet<Options> flags;
  // Optional: the check of the whole set, given options whose flags each
  // passed their own check. INVALID_ARGUMENT naming the flags.
  std::function<absl::Status(const Options& options)> validate;
  // Optional (default: the name): the text of Backend::Describe.
  std::function<std::string(const Options& options)> describe;
  // Required: opens the store.
  Opener open;
};

// A backend over its options struct. Registered as a Backend; tests may
// reach the typed options through Parse.
template <typename Options>
class TypedBackend final : public Backend {
 public:
  explicit TypedBackend(BackendSpec<Options> spec) : spec_(std::move(spec)) {
    for (const auto& flag : spec_.flags.flags()) infos_.push_back(flag.info);
  }

  // Options{} with each flag in `settings` applied, in the order the flags
  // were defined, if they pass Validate; its error otherwise.
  absl::StatusOr<Options> Parse(const BackendSettings& settings) const {
    for (const auto& [flag, value] : settings) {
      if (spec_.flags.Find(flag) == nullptr) return NoSuchFlag(flag);
    }
    Options options{};
    for (const auto& flag : spec_.flags.flags()) {
      auto it = settings.find(flag.info.name);
      if (it == settings.end()) continue;
      if (absl::Status s = flag.set(it->second, &options); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag.info.name, ": ", s.message()));
      }
    }
    if (spec_.validate) {
      if (absl::Status s = spec_.validate(options); !s.ok()) return s;
    }
    return options;
  }

  const std::string& name() const override { return spec_.name; }

  const std::vector<flags::FlagInfo>& flags() const override { return infos_; }

  absl::Status CheckFlag(absl::string_view flag,
                         absl::string_view value) const override {
    const auto* found = spec_.flags.Find(flag);
    if (found == nullptr) return NoSuchFlag(flag);
    Options scratch{};
    return found->set(value, &scratch);
  }

  absl::Status Validate(const BackendSettings& settings) const override {
    return Parse(settings).status();
  }

  std::string Describe(const BackendSettings& settings) const override {
    absl::StatusOr<Options> options = Parse(settings);
    if (!options.ok() || !spec_.describe) return spec_.name;
    return spec_.describe(*options);
  }

  absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const BackendSettings& settings, const Clock* clock,
      const StoreOptions& store_options) const override {
    absl::StatusOr<Options> options = Parse(settings);
    if (!options.ok()) return options.status();
    if (!spec_.open) {
      return absl::InternalError(
          absl::StrCat("backend \"", spec_.name, "\" has no opener"));
    }
    return spec_.open(*options, clock, store_options);
  }

 private:
  absl::Status NoSuchFlag(absl::string_view flag) const {
    return absl::InvalidArgumentError(
        absl::StrCat("backend \"", spec_.name, "\" has no flag --", flag));
  }

  BackendSpec<Options> spec_;
  std::vector<flags::FlagInfo> infos_;
};

// Adds `backend` to the registry and returns true (so that it can
// initialize a static). A duplicate name, an empty one, or a flag name that
// another registered backend has is a build error: the process prints it
// and aborts at start-up.
bool RegisterBackend(std::unique_ptr<Backend> backend);

template <typename Options>
bool RegisterBackend(BackendSpec<Options> spec) {
  return RegisterBackend(
      std::make_unique<TypedBackend<Options>>(std::move(spec)));
}

// The registered backends: kDefaultBackend first, then by name.
std::vector<const Backend*> RegisteredBackends();

// Their names in that order, for messages: "sqlite, memory, postgres or
// valkey".
std::string BackendNameList();

// The backend registered as `name`; otherwise INVALID_ARGUMENT that lists
// the registered names: unknown backend "x" (expected sqlite, ...).
absl::StatusOr<const Backend*> FindBackend(absl::string_view name);

// FindBackend(name), then its Open (errors as Backend::Open).
absl::StatusOr<std::unique_ptr<SessionStore>> OpenBackend(
    absl::string_view name, const BackendSettings& settings, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_REGISTRY_H_
