// NumberedRecord and MakeUpdate: distinct, binary-laden session records,
// and updates of them, for storage tests.
#ifndef SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_
#define SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "storage/session_record.h"

namespace sessiond::storage {

// Record number `i` for backend-specific tests: id "id-<i>", a distinct
// 32-byte token hash containing NUL and 0xff bytes, and a binary payload.
inline SessionRecord NumberedRecord(int i, const std::string& user = "",
                                    absl::Duration idle = absl::Minutes(30),
                                    absl::Duration absolute = absl::Hours(24)) {
  SessionRecord r;
  r.id = "id-" + std::to_string(i);
  r.token_hash = std::string(32, '\0');
  for (int b = 0; b < 4; ++b) r.token_hash[b] = static_cast<char>(i >> (8 * b));
  r.token_hash[31] = '\xff';
  r.user_id = user;
  r.sealed_payload =
      std::string("sealed\0", 7) + "payload-" + std::to_string(i);
  r.idle_timeout = idle;
  r.absolute_lifetime = absolute;
  return r;
}

// The token hash of NumberedRecord(i).
inline std::string NumberedTokenHash(int i) {
  return NumberedRecord(i).token_hash;
}

// An update to `user` and `payload`, a compare-and-set if
// `expected_version` is given.
inline SessionUpdate MakeUpdate(const std::string& user,
                                const std::string& payload,
                                std::optional<int64_t> expected_version = {}) {
  SessionUpdate u;
  u.user_id = user;
  u.sealed_payload = payload;
  u.expected_version = expected_version;
  return u;
}

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_
