// Row mapping of the SQL backends: how a SessionRecord's times and
// durations are stored (bigint microseconds), and how a record is read back
// from a row of the catalogue's record columns (statements.cc).
#ifndef SESSIOND_STORAGE_SQL_ROWS_H_
#define SESSIOND_STORAGE_SQL_ROWS_H_

#include <cstdint>

#include "absl/time/time.h"
#include "storage/session_record.h"
#include "storage/sql/executor.h"

namespace sessiond::storage::sql {

// Times are Unix microseconds. The store keeps times truncated to
// microseconds (session_record.h), so both ways are lossless.
inline int64_t TimeToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
inline absl::Time MicrosToTime(int64_t us) { return absl::FromUnixMicros(us); }

// Durations: DurationToMicros and MicrosToDuration (session_record.h).

// The record in `row`, whose columns are tenant, id, token_hash, user_id,
// sealed, created_at, last_active_at, idle_timeout_us, absolute_lifetime_us
// and version, in that order.
SessionRecord RecordFromRow(const SqlRow& row);

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_STORAGE_SQL_ROWS_H_
