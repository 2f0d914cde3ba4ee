// Typed flags: named settings given as text (a command-line flag, an
// environment variable) and parsed into a field of a settings struct T.
//
// The parsing rules (an integer or a duration within a range, a boolean) and
// their error wording are written here once; server/config.cc and the
// storage backend registry (storage/registry.h) both define their flags with
// FlagSet. A flag's default text is formatted from the field's value in a
// value-initialized T, so every default is written once, in its struct, and
// the default text always parses back to that value.
#ifndef SESSIOND_FLAGS_FLAGS_H_
#define SESSIOND_FLAGS_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sessiond::flags {

// What a flag is, for usage texts and lookups.
struct FlagInfo {
  // With underscores, without dashes: "postgres_pool_size".
  std::string name;
  std::string help;
  // The value the flag has when not given, as text that sets that value.
  std::string default_text;
  // May be given without a value ("--name" alone means true).
  bool is_bool = false;
};

// The parsers. Each returns the value of `text`, or INVALID_ARGUMENT saying
// what the value must be, without naming the flag (the caller knows where
// the text came from and names it).

// A decimal integer in [min, max]: "must be an integer from MIN to MAX".
absl::StatusOr<int64_t> ParseInt(absl::string_view text, int64_t min,
                                 int64_t max);
// A duration as absl::ParseDuration reads it ("90s", "1h30m", "0") in
// [min, max]: "must be a duration (like 90s, 30m, 12h) from MIN to MAX".
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text,
                                             absl::Duration min,
                                             absl::Duration max);
// true, 1 or yes; false, 0 or no; in any case: "must be true or false".
absl::StatusOr<bool> ParseBool(absl::string_view text);

// Text that ParseDuration reads back to `d`: absl::FormatDuration, except
// that zero is "0s".
std::string DurationToText(absl::Duration d);
// "true" or "false".
std::string BoolToText(bool value);

// Checks a text value on its own: OK, or INVALID_ARGUMENT saying what the
// value must be (not naming the flag).
using ValueCheck = std::function<absl::Status(absl::string_view value)>;

// The flags that set the fields of a T, in the order they were added. T
// must be default-constructible: its value-initialized fields are the
// defaults.
//
// The `field` arguments below select the field that a flag sets: anything
// that std::invoke(field, T*) turns into a reference to it, that is, a data
// member pointer (&T::path) or a lambda
// ([](T* t) -> int& { return t->grpc.threads; }).
template <typename T>
class FlagSet {
 public:
  // Parses `value` into *target, or returns INVALID_ARGUMENT saying what the
  // value must be (not naming the flag) and leaves *target unchanged.
  using Setter =
      std::function<absl::Status(absl::string_view value, T* target)>;

  struct Flag {
    FlagInfo info;
    Setter set;
  };

  // Any text (only text that `check` accepts, if it is given).
  template <typename Field>
  FlagSet& String(std::string name, std::string help, Field field,
                  ValueCheck check = nullptr) {
    T defaults{};
    std::string default_text = std::invoke(field, &defaults);
    return Add(
        std::move(name), std::move(help), std::move(default_text), false,
        [field, check = std::move(check)](absl::string_view value, T* target) {
          if (check) {
            if (absl::Status s = check(value); !s.ok()) return s;
          }
          std::invoke(field, target) = std::string(value);
          return absl::OkStatus();
        });
  }

  // An integer in [min, max]; both bounds must fit the field's type.
  template <typename Field>
  FlagSet& Int(std::string name, std::string help, Field field, int64_t min,
               int64_t max) {
    using Value = std::remove_reference_t<std::invoke_result_t<Field, T*>>;
    static_assert(std::is_integral_v<Value> && !std::is_same_v<Value, bool>,
                  "Int needs an integer field");
    T defaults{};
    std::string default_text = absl::StrCat(std::invoke(field, &defaults));
    return Add(std::move(name), std::move(help), std::move(default_text), false,
               [field, min, max](absl::string_view value, T* target) {
                 absl::StatusOr<int64_t> parsed = ParseInt(value, min, max);
                 if (!parsed.ok()) return parsed.status();
                 std::invoke(field, target) = static_cast<Value>(*parsed);
                 return absl::OkStatus();
               });
  }

  // A duration in [min, max].
  template <typename Field>
  FlagSet& Duration(std::string name, std::string help, Field field,
                    absl::Duration min, absl::Duration max) {
    T defaults{};
    std::string default_text = DurationToText(std::invoke(field, &defaults));
    return Add(std::move(name), std::move(help), std::move(default_text), false,
               [field, min, max](absl::string_view value, T* target) {
                 absl::StatusOr<absl::Duration> parsed =
                     ParseDuration(value, min, max);
                 if (!parsed.ok()) return parsed.status();
                 std::invoke(field, target) = *parsed;
                 return absl::OkStatus();
               });
  }

  // A boolean; may be given without a value.
  template <typename Field>
  FlagSet& Bool(std::string name, std::string help, Field field) {
    T defaults{};
    std::string default_text = BoolToText(std::invoke(field, &defaults));
    return Add(std::move(name), std::move(help), std::move(default_text), true,
               [field](absl::string_view value, T* target) {
                 absl::StatusOr<bool> parsed = ParseBool(value);
                 if (!parsed.ok()) return parsed.status();
                 std::invoke(field, target) = *parsed;
                 return absl::OkStatus();
               });
  }

  // Anything else (a value that sets several fields, say): `set` parses the
  // value into T, and `format_default` writes a value-initialized T as the
  // text that `set` reads back to it.
  FlagSet& Custom(std::string name, std::string help,
                  const std::function<std::string(const T&)>& format_default,
                  Setter set, bool is_bool = false) {
    const T defaults{};
    return Add(std::move(name), std::move(help), format_default(defaults),
               is_bool, std::move(set));
  }

  const std::vector<Flag>& flags() const { return flags_; }

  // The flag with this name (with underscores), or nullptr.
  const Flag* Find(absl::string_view name) const {
    for (const Flag& flag : flags_) {
      if (flag.info.name == name) return &flag;
    }
    return nullptr;
  }

 private:
  FlagSet& Add(std::string name, std::string help, std::string default_text,
               bool is_bool, Setter set) {
    flags_.push_back(Flag{FlagInfo{std::move(name), std::move(help),
                                   std::move(default_text), is_bool},
                          std::move(set)});
    return *this;
  }

  std::vector<Flag> flags_;
};

}  // namespace sessiond::flags

#endif  // SESSIOND_FLAGS_FLAGS_H_
