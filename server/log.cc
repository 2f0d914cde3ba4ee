#include "server/log.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sessiond {

void LogLine(LogLevel level, absl::string_view message) {
  const char* tag = level == LogLevel::kInfo      ? "INFO"
                    : level == LogLevel::kWarning ? "WARN"
                                                  : "ERROR";
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", tag, " ", message, "\n");
  // One write per line keeps lines from different threads whole.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

std::optional<int64_t> LogRateLimiter::Admit() {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (now < next_) {
    ++held_back_;
    return std::nullopt;
  }
  next_ = now + interval_;
  const int64_t held_back = held_back_;
  held_back_ = 0;
  return held_back;
}

}  // namespace sessiond
