// Quote: user-given text in messages, escaped and bounded.
#ifndef SESSIOND_AUTH_INTERNAL_QUOTE_H_
#define SESSIOND_AUTH_INTERNAL_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sessiond::auth::internal {

// `s` in double quotes, C-escaped (so control characters cannot forge log
// lines) and cut to its first 100 bytes ("...").
inline std::string Quote(absl::string_view s) {
  constexpr size_t kLimit = 100;
  const bool cut = s.size() > kLimit;
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kLimit)),
                      cut ? "...\"" : "\"");
}

}  // namespace sessiond::auth::internal

#endif  // SESSIOND_AUTH_INTERNAL_QUOTE_H_
