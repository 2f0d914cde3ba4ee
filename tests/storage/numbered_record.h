// NumberedRecord, MakeUpdate and MakeCycle: distinct, binary-laden session
// records, and updates and cycles of them, for storage tests.
#ifndef SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_
#define SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/session_record.h"

namespace sessiond::storage {

// Record number `i` of `tenant` for backend-specific tests: id "id-<i>", a
// distinct 32-byte token hash containing NUL and 0xff bytes, and a binary
// payload.
inline SessionRecord NumberedRecord(int i, const std::string& user = "",
                                    absl::Duration idle = absl::Minutes(30),
                                    absl::Duration absolute = absl::Hours(24),
                                    absl::string_view tenant = kDefaultTenant) {
  SessionRecord r;
  r.tenant = std::string(tenant);
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

// An update of the payload (nullopt keeps it), a compare-and-set if
// `expected_version` is given. Updates never change the user: that is
// MakeCycle's.
inline SessionUpdate MakeUpdate(std::optional<std::string> payload,
                                std::optional<int64_t> expected_version = {}) {
  SessionUpdate u;
  u.sealed_payload = std::move(payload);
  u.expected_version = expected_version;
  return u;
}

// A cycle to `new_hash`, setting the user and the payload where given, a
// compare-and-set if `expected_version` is given.
inline SessionCycle MakeCycle(std::string new_hash,
                              std::optional<std::string> user = std::nullopt,
                              std::optional<std::string> payload = std::nullopt,
                              std::optional<int64_t> expected_version = {}) {
  SessionCycle c;
  c.new_token_hash = std::move(new_hash);
  c.user_id = std::move(user);
  c.sealed_payload = std::move(payload);
  c.expected_version = expected_version;
  return c;
}

}  // namespace sessiond::storage

#endif  // SESSIOND_TESTS_STORAGE_NUMBERED_RECORD_H_
