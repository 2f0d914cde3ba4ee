// Logging for sessiond: one line per significant event on stderr, with a UTC
// timestamp and a severity. Never pass a token, key or session data here.
#ifndef SESSIOND_SERVER_LOG_H_
#define SESSIOND_SERVER_LOG_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace sessiond {

enum class LogLevel { kInfo, kWarning, kError };

// Writes one line; thread-safe (a single write(2) per line).
void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(format, args...));
}

}  // namespace sessiond

#endif  // SESSIOND_SERVER_LOG_H_
