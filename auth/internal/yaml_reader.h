// Strict reading of a YAML document for auth/policy.cc: every value checked
// for its type, every map for unknown and repeated keys, and every error
// message led by "source:line: " (1-based). ParseOneDocument turns the
// parser's exceptions into statuses; the rest do not throw on the valid
// nodes they are given, and Policy::Parse catches anything else.
#ifndef SESSIOND_AUTH_INTERNAL_YAML_READER_H_
#define SESSIOND_AUTH_INTERNAL_YAML_READER_H_

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/internal/quote.h"

namespace sessiond::auth::internal {

// What `node` is, for "must be X, not Y": its text quoted, "a list", "a
// map" or "empty".
std::string Describe(const YAML::Node& node);

// The 1-based line of `node`, or 0 if yaml-cpp does not know it.
int LineOf(const YAML::Node& node);

// Where errors point: the source name and a prefix naming what is being
// read (`caller "shop-web": `).
class Context {
 public:
  explicit Context(absl::string_view source) : source_(source) {}
  // The same source, with `prefix` ("tenant \"shop\": ") before messages.
  Context With(std::string prefix) const;

  // INVALID_ARGUMENT "source:line: prefix message" (no line part if 0).
  absl::Status Error(int line, absl::string_view message) const;

 private:
  std::string source_;
  std::string prefix_;
};

// The single document in `text`; INVALID_ARGUMENT for a syntax error (with
// its line), for no document and for several.
absl::StatusOr<YAML::Node> ParseOneDocument(absl::string_view text,
                                            const Context& context);

// One entry of a map. `line` is the value's line, except that a null value
// takes its key's line (yaml-cpp marks an empty value where the next token
// starts).
struct Entry {
  std::string key;
  int key_line = 0;
  YAML::Node value;
  int line = 0;
};

// The entries of `map` in file order: INVALID_ARGUMENT if `map` is not a
// map (`what` names it, `line` is where it is: "tenants must be a map"), if a
// key is not a scalar, or if a key appears twice. If `known` is not empty,
// every key must be in it. `key_noun` names keys in messages ("key", "tenant").
absl::StatusOr<std::vector<Entry>> MapEntries(
    const Context& context, const YAML::Node& map, int line,
    absl::string_view what, const std::vector<absl::string_view>& known,
    absl::string_view key_noun = "key");

// Typed scalars. Each fails with INVALID_ARGUMENT naming the entry's key.
// Text: any scalar, plain or quoted.
absl::StatusOr<std::string> ReadString(const Context& context,
                                       const Entry& entry);
// A plain (unquoted) decimal integer in [min, max].
absl::StatusOr<int64_t> ReadInt(const Context& context, const Entry& entry,
                                int64_t min, int64_t max);
// A finite, positive duration as absl::ParseDuration reads it ("30m").
absl::StatusOr<absl::Duration> ReadDuration(const Context& context,
                                            const Entry& entry);

}  // namespace sessiond::auth::internal

#endif  // SESSIOND_AUTH_INTERNAL_YAML_READER_H_
