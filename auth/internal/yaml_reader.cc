#include "auth/internal/yaml_reader.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sessiond::auth::internal {
namespace {

// yaml-cpp's tag of a plain scalar, and the explicit tag for integers.
bool IsPlainOrIntTagged(const YAML::Node& node) {
  return node.Tag() == "?" || node.Tag() == "tag:yaml.org,2002:int";
}

}  // namespace

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "empty";
  }
}

int LineOf(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  const int line = node.Mark().line;
  return line >= 0 ? line + 1 : 0;
}

Context Context::With(std::string prefix) const {
  Context nested(source_);
  nested.prefix_ = absl::StrCat(prefix_, prefix);
  return nested;
}

absl::Status Context::Error(int line, absl::string_view message) const {
  if (line <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", prefix_, message));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(source_, ":", line, ": ", prefix_, message));
}

namespace {

// Text that yaml-cpp 0.7 would never return on, found by
// //fuzz:policy_fuzzer: control characters (YAML allows none but tab and
// line ends; "!\0,\0\0" loops), a ',' that begins a token outside a flow
// collection ("," or "\"a\"," loops), which YAML never allows there, and
// tags, anchors and aliases ("!90s,t" loops), which a policy has no use
// for. A small scan that knows quotes, comments and [...] / {...} nesting.
absl::Status CheckYamlCppCanRead(absl::string_view text,
                                 const Context& context) {
  int line = 1;
  int depth = 0;    // of [ and {
  char quote = 0;   // the open quote, if any
  char before = 0;  // the last non-blank character of this line so far
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t' && c != '\n' && c != '\r') || byte == 0x7f) {
      return context.Error(
          line, absl::StrFormat("control character U+%04X (YAML allows only "
                                "tab and line ends)",
                                byte));
    }
    if (c == '\n') {
      ++line;
      before = 0;
      continue;
    }
    if (quote != 0) {
      if (quote == '"' && c == '\\') {
        ++i;  // the escaped character (a line end there is not counted)
      } else if (c == quote) {
        quote = 0;
        before = c;
      }
      continue;
    }
    if (c == ' ' || c == '\t') continue;
    if (c == '#' &&
        (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || before == 0)) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    const bool token_start = before == 0 || before == '"' || before == '\'' ||
                             before == ']' || before == '}';
    const char previous = i == 0 ? '\n' : text[i - 1];
    if ((c == '!' || c == '&' || c == '*') &&
        absl::string_view(" \t\r\n[{,").find(previous) !=
            absl::string_view::npos) {
      return context.Error(line,
                           "a YAML tag (!), anchor (&) or alias (*); a policy "
                           "uses none");
    }
    if ((c == '"' || c == '\'') &&
        (token_start || depth > 0 || before == ':' || before == '-' ||
         before == '?' || before == ',')) {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ',' && depth == 0 && token_start) {
      return context.Error(line,
                           "',' outside a flow collection ([...] or {...})");
    }
    before = c;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<YAML::Node> ParseOneDocument(absl::string_view text,
                                            const Context& context) {
  if (absl::Status s = CheckYamlCppCanRead(text, context); !s.ok()) return s;
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::ParserException& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
    return context.Error(line, absl::StrCat("YAML syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    return context.Error(0, absl::StrCat("YAML error: ", e.msg));
  } catch (const std::exception& e) {
    return context.Error(0, absl::StrCat("cannot read YAML: ", e.what()));
  }
  if (documents.empty()) {
    return context.Error(1, "no YAML document (the file is empty)");
  }
  if (documents.size() > 1) {
    return context.Error(LineOf(documents[1]),
                         "a second YAML document; the file must hold one");
  }
  return documents.front();
}

absl::StatusOr<std::vector<Entry>> MapEntries(
    const Context& context, const YAML::Node& map, int line,
    absl::string_view what, const std::vector<absl::string_view>& known,
    absl::string_view key_noun) {
  if (!map.IsMap()) {
    return context.Error(
        line, absl::StrCat(what, " must be a map, not ", Describe(map)));
  }
  std::vector<Entry> entries;
  absl::flat_hash_map<std::string, int> first_line;
  for (auto it = map.begin(); it != map.end(); ++it) {
    Entry entry;
    entry.key_line = LineOf(it->first);
    if (!it->first.IsScalar()) {
      return context.Error(entry.key_line,
                           absl::StrCat("a ", key_noun, " must be text, not ",
                                        Describe(it->first)));
    }
    entry.key = it->first.Scalar();
    if (!known.empty() &&
        std::find(known.begin(), known.end(), entry.key) == known.end()) {
      return context.Error(
          entry.key_line,
          absl::StrCat("unknown ", key_noun, " ", Quote(entry.key),
                       " (expected ", absl::StrJoin(known, ", "), ")"));
    }
    const auto [at, inserted] = first_line.emplace(entry.key, entry.key_line);
    if (!inserted) {
      return context.Error(
          entry.key_line,
          absl::StrCat("duplicate ", key_noun, " ", Quote(entry.key),
                       " (first on line ", at->second, ")"));
    }
    entry.value = it->second;
    entry.line = entry.value.IsNull() || LineOf(entry.value) == 0
                     ? entry.key_line
                     : LineOf(entry.value);
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::string> ReadString(const Context& context,
                                       const Entry& entry) {
  if (!entry.value.IsScalar()) {
    return context.Error(
        entry.line,
        absl::StrCat(entry.key, " must be text, not ", Describe(entry.value)));
  }
  return entry.value.Scalar();
}

absl::StatusOr<int64_t> ReadInt(const Context& context, const Entry& entry,
                                int64_t min, int64_t max) {
  const std::string expected =
      absl::StrCat(entry.key, " must be an integer from ", min, " to ", max);
  if (!entry.value.IsScalar() || !IsPlainOrIntTagged(entry.value)) {
    return context.Error(entry.line, absl::StrCat(expected, ", not ",
                                                  entry.value.IsScalar()
                                                      ? "quoted text"
                                                      : Describe(entry.value)));
  }
  const std::string& text = entry.value.Scalar();
  absl::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  int64_t value = 0;
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return context.Error(entry.line,
                         absl::StrCat(expected, ", not ", Quote(text)));
  }
  return value;
}

absl::StatusOr<absl::Duration> ReadDuration(const Context& context,
                                            const Entry& entry) {
  const std::string expected = absl::StrCat(
      entry.key, " must be a positive duration like 90s, 30m or 12h");
  if (!entry.value.IsScalar()) {
    return context.Error(
        entry.line, absl::StrCat(expected, ", not ", Describe(entry.value)));
  }
  absl::Duration d;
  if (!absl::ParseDuration(entry.value.Scalar(), &d) ||
      d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return context.Error(entry.line, absl::StrCat(expected, ", not ",
                                                  Quote(entry.value.Scalar())));
  }
  return d;
}

}  // namespace sessiond::auth::internal
