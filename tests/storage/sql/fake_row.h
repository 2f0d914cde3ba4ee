// FakeRow: an SqlRow (storage/sql/executor.h) of given values, as a
// backend's connection would hand it over; RecordRow: the record columns of
// a SessionRecord (storage/sql/rows.h).
#ifndef SESSIOND_TESTS_STORAGE_SQL_FAKE_ROW_H_
#define SESSIOND_TESTS_STORAGE_SQL_FAKE_ROW_H_

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "storage/session_record.h"
#include "storage/sql/executor.h"
#include "storage/sql/rows.h"

namespace sessiond::storage::sql {

using FakeValue = std::variant<int64_t, std::string>;

class FakeRow final : public SqlRow {
 public:
  explicit FakeRow(std::vector<FakeValue> values)
      : values_(std::move(values)) {}
  int64_t Int(int column) const override {
    return std::get<int64_t>(values_.at(column));
  }
  std::string Text(int column) const override {
    return std::get<std::string>(values_.at(column));
  }
  std::string Bytes(int column) const override { return Text(column); }

 private:
  std::vector<FakeValue> values_;
};

inline std::vector<FakeValue> RecordRow(const SessionRecord& r) {
  return {r.tenant,
          r.id,
          r.token_hash,
          r.user_id,
          r.sealed_payload,
          TimeToMicros(r.created_at),
          TimeToMicros(r.last_active_at),
          DurationToMicros(r.idle_timeout),
          DurationToMicros(r.absolute_lifetime),
          r.version};
}

}  // namespace sessiond::storage::sql

#endif  // SESSIOND_TESTS_STORAGE_SQL_FAKE_ROW_H_
