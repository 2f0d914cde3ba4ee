// Logging for sessiond: one line per significant event on stderr, with a UTC
// timestamp and a severity. Never pass a token, key or session data here.
#ifndef SESSIOND_SERVER_LOG_H_
#define SESSIOND_SERVER_LOG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

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

// Lets at most one line of one kind through per `interval`, so that an event
// repeated on every call (a database outage) cannot flood the log, and
// counts the lines it holds back. Thread-safe.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(absl::Duration interval) : interval_(interval) {}

  // If a line may be written now: how many were held back since the last
  // one that was. Otherwise nullopt (and the line is counted).
  std::optional<int64_t> Admit();

 private:
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t held_back_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sessiond

#endif  // SESSIOND_SERVER_LOG_H_
