// Strict reading of a YAML document for auth/policy.cc: every value checked
// for its type, every map for unknown and repeated keys, and every error
// message led by "source:line: " (1-based). The parser is libyaml (the
// reference C implementation); ParseOneDocument copies its document into
// YamlNode, refusing aliases and tags, so nothing here throws.
#ifndef SESSIOND_AUTH_INTERNAL_YAML_READER_H_
#define SESSIOND_AUTH_INTERNAL_YAML_READER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/internal/quote.h"

namespace sessiond::auth::internal {

// A node of a YAML document.
class YamlNode {
 public:
  enum class Kind { kNull, kScalar, kSequence, kMap };

  Kind kind = Kind::kNull;
  int line = 0;                 // 1-based
  std::string text;             // of a scalar
  bool plain = false;           // a scalar written without quotes
  std::vector<YamlNode> items;  // of a sequence
  std::vector<std::pair<YamlNode, YamlNode>> entries;  // of a map, in order

  bool IsNull() const { return kind == Kind::kNull; }
  bool IsScalar() const { return kind == Kind::kScalar; }
  bool IsSequence() const { return kind == Kind::kSequence; }
  bool IsMap() const { return kind == Kind::kMap; }
  const std::string& Scalar() const { return text; }
  size_t size() const { return items.size(); }
  std::vector<YamlNode>::const_iterator begin() const { return items.begin(); }
  std::vector<YamlNode>::const_iterator end() const { return items.end(); }
};

// What `node` is, for "must be X, not Y": its text quoted, "a list", "a
// map" or "empty".
std::string Describe(const YamlNode& node);

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
// its line), for no document and for several, for an alias or a tag (a
// policy uses neither), and for nesting deeper than kMaxYamlDepth (flow
// brackets are counted before parsing, quoted or not).
inline constexpr int kMaxYamlDepth = 32;
absl::StatusOr<YamlNode> ParseOneDocument(absl::string_view text,
                                          const Context& context);

// One entry of a map. `line` is the value's line, except that a null value
// takes its key's line.
struct Entry {
  std::string key;
  int key_line = 0;
  YamlNode value;
  int line = 0;
};

// The entries of `map` in file order: INVALID_ARGUMENT if `map` is not a
// map (`what` names it, `line` is where it is: "tenants must be a map"), if a
// key is not a scalar, or if a key appears twice. If `known` is not empty,
// every key must be in it. `key_noun` names keys in messages ("key", "tenant").
absl::StatusOr<std::vector<Entry>> MapEntries(
    const Context& context, const YamlNode& map, int line,
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
