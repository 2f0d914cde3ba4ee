#include "auth/internal/yaml_reader.h"

#include <yaml.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sessiond::auth::internal {
namespace {

int LineOf(const yaml_mark_t& mark) { return static_cast<int>(mark.line) + 1; }

// Copies libyaml's document into YamlNode, refusing what a policy has no
// use for: aliases (a node reached twice), tags other than the default
// ones, and deep nesting.
class Converter {
 public:
  Converter(yaml_document_t* document, const Context& context)
      : document_(document), context_(context) {}

  absl::StatusOr<YamlNode> Convert(yaml_node_t* node, int depth) {
    const int line = LineOf(node->start_mark);
    if (depth > kMaxYamlDepth) {
      return context_.Error(line, absl::StrCat("nested more than ",
                                               kMaxYamlDepth, " levels deep"));
    }
    const int index = static_cast<int>(node - document_->nodes.start);
    if (!seen_.insert(index).second) {
      return context_.Error(
          line,
          "a node used again through a YAML alias (*); a policy uses none");
    }
    YamlNode out;
    out.line = line;
    switch (node->type) {
      case YAML_SCALAR_NODE: {
        if (!HasTag(node, YAML_DEFAULT_SCALAR_TAG)) return TagError(line);
        out.text.assign(reinterpret_cast<const char*>(node->data.scalar.value),
                        node->data.scalar.length);
        out.plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        const bool null_word = out.text.empty() || out.text == "~" ||
                               out.text == "null" || out.text == "Null" ||
                               out.text == "NULL";
        out.kind = out.plain && null_word ? YamlNode::Kind::kNull
                                          : YamlNode::Kind::kScalar;
        return out;
      }
      case YAML_SEQUENCE_NODE: {
        if (!HasTag(node, YAML_DEFAULT_SEQUENCE_TAG)) return TagError(line);
        out.kind = YamlNode::Kind::kSequence;
        for (yaml_node_item_t* item = node->data.sequence.items.start;
             item < node->data.sequence.items.top; ++item) {
          absl::StatusOr<YamlNode> child = Child(*item, depth);
          if (!child.ok()) return child.status();
          out.items.push_back(*std::move(child));
        }
        return out;
      }
      case YAML_MAPPING_NODE: {
        if (!HasTag(node, YAML_DEFAULT_MAPPING_TAG)) return TagError(line);
        out.kind = YamlNode::Kind::kMap;
        for (yaml_node_pair_t* pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; ++pair) {
          absl::StatusOr<YamlNode> key = Child(pair->key, depth);
          if (!key.ok()) return key.status();
          absl::StatusOr<YamlNode> value = Child(pair->value, depth);
          if (!value.ok()) return value.status();
          out.entries.emplace_back(*std::move(key), *std::move(value));
        }
        return out;
      }
      default:
        return context_.Error(line, "an empty YAML node");
    }
  }

 private:
  absl::StatusOr<YamlNode> Child(int index, int depth) {
    yaml_node_t* child = yaml_document_get_node(document_, index);
    if (child == nullptr) return context_.Error(0, "a broken YAML document");
    return Convert(child, depth + 1);
  }
  static bool HasTag(const yaml_node_t* node, const char* tag) {
    return node->tag != nullptr &&
           std::strcmp(reinterpret_cast<const char*>(node->tag), tag) == 0;
  }
  absl::Status TagError(int line) const {
    return context_.Error(line, "a YAML tag (!); a policy uses none");
  }

  yaml_document_t* const document_;
  const Context& context_;
  absl::flat_hash_set<int> seen_;
};

// A parser, a document, freed on every path.
struct Parsing {
  Parsing() { ready = yaml_parser_initialize(&parser) != 0; }
  ~Parsing() {
    if (loaded) yaml_document_delete(&document);
    yaml_parser_delete(&parser);
  }
  // Loads the next document (freeing the last); false on a syntax error.
  bool Load() {
    if (loaded) yaml_document_delete(&document);
    loaded = yaml_parser_load(&parser, &document) != 0;
    return loaded;
  }
  // `text` is what was parsed: a reader error (bad bytes) has an offset,
  // not a mark.
  absl::Status SyntaxError(const Context& context,
                           absl::string_view text) const {
    int line = LineOf(parser.problem_mark);
    if (parser.error == YAML_READER_ERROR) {
      const absl::string_view before =
          text.substr(0, std::min(text.size(), parser.problem_offset));
      line =
          1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    }
    return context.Error(
        line,
        absl::StrCat("YAML syntax error: ",
                     parser.problem != nullptr ? parser.problem : "unreadable",
                     parser.context != nullptr
                         ? absl::StrCat(" (", parser.context, ")")
                         : ""));
  }

  yaml_parser_t parser;
  yaml_document_t document;
  bool ready = false;
  bool loaded = false;
};

}  // namespace

std::string Describe(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kScalar:
      return Quote(node.Scalar());
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kMap:
      return "a map";
    default:
      return "empty";
  }
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

absl::StatusOr<YamlNode> ParseOneDocument(absl::string_view text,
                                          const Context& context) {
  // libyaml takes time quadratic in the nesting of flow collections (34 s
  // for 100,000 '['), so deep nesting is refused before it reads the text:
  // brackets counted as if none were quoted, which only errs towards
  // refusing.
  int depth = 0;
  int line = 1;
  for (const char c : text) {
    if (c == '\n') ++line;
    if (c == '[' || c == '{') {
      if (++depth > kMaxYamlDepth) {
        return context.Error(line, absl::StrCat("nested more than ",
                                                kMaxYamlDepth, " levels deep"));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  Parsing parsing;
  if (!parsing.ready) return context.Error(0, "cannot start the YAML parser");
  yaml_parser_set_input_string(
      &parsing.parser, reinterpret_cast<const unsigned char*>(text.data()),
      text.size());
  if (!parsing.Load()) return parsing.SyntaxError(context, text);
  yaml_node_t* root = yaml_document_get_root_node(&parsing.document);
  if (root == nullptr) {
    return context.Error(1, "no YAML document (the file is empty)");
  }
  Converter converter(&parsing.document, context);
  absl::StatusOr<YamlNode> document = converter.Convert(root, 0);
  if (!document.ok()) return document.status();
  if (!parsing.Load()) return parsing.SyntaxError(context, text);
  if (yaml_node_t* second = yaml_document_get_root_node(&parsing.document)) {
    return context.Error(LineOf(second->start_mark),
                         "a second YAML document; the file must hold one");
  }
  return document;
}

absl::StatusOr<std::vector<Entry>> MapEntries(
    const Context& context, const YamlNode& map, int line,
    absl::string_view what, const std::vector<absl::string_view>& known,
    absl::string_view key_noun) {
  if (!map.IsMap()) {
    return context.Error(
        line, absl::StrCat(what, " must be a map, not ", Describe(map)));
  }
  std::vector<Entry> entries;
  absl::flat_hash_map<std::string, int> first_line;
  for (const auto& [key, value] : map.entries) {
    Entry entry;
    entry.key_line = key.line;
    if (!key.IsScalar()) {
      return context.Error(
          entry.key_line,
          absl::StrCat("a ", key_noun, " must be text, not ", Describe(key)));
    }
    entry.key = key.Scalar();
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
    entry.value = value;
    entry.line = entry.value.IsNull() ? entry.key_line : entry.value.line;
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
  if (!entry.value.IsScalar() || !entry.value.plain) {
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
