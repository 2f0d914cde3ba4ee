#include "storage/sql/transaction.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "storage/sql/rows.h"

namespace sessiond::storage::sql {

absl::StatusOr<std::optional<SessionRecord>> SqlTransaction::SelectByHash(
    absl::string_view tenant, absl::string_view token_hash, RowLock lock) {
  const SqlStatement statement =
      lock == RowLock::kShare    ? SqlStatement::kSelectByHashForShare
      : lock == RowLock::kUpdate ? SqlStatement::kSelectByHashForUpdate
                                 : SqlStatement::kSelectByHash;
  const SqlParam params[] = {TextParam(tenant), BytesParam(token_hash)};
  std::optional<SessionRecord> found;
  absl::StatusOr<int64_t> done =
      executor_.Execute(statement, params,
                        [&](const SqlRow& row) { found = RecordFromRow(row); });
  if (!done.ok()) return done.status();
  return found;
}

absl::Status SqlTransaction::LockUser(absl::string_view tenant,
                                      absl::string_view user_id) {
  if (StatementText(SqlStatement::kLockUser, executor_.dialect()) == nullptr) {
    return absl::OkStatus();
  }
  const SqlParam params[] = {TextParam(tenant), TextParam(user_id)};
  return CountChanges(SqlStatement::kLockUser, params).status();
}

absl::Status SqlTransaction::DeleteExpiredConflicts(
    absl::string_view id, absl::string_view token_hash, absl::Time now) {
  const SqlParam params[] = {TextParam(id), BytesParam(token_hash),
                             IntParam(TimeToMicros(now))};
  return CountChanges(SqlStatement::kDeleteExpiredConflicts, params).status();
}

absl::Status SqlTransaction::DeleteExpiredByHash(absl::string_view token_hash,
                                                 absl::Time now) {
  const SqlParam params[] = {BytesParam(token_hash),
                             IntParam(TimeToMicros(now))};
  return CountChanges(SqlStatement::kDeleteExpiredByHash, params).status();
}

absl::Status SqlTransaction::Insert(const SessionRecord& r) {
  const SqlParam params[] = {
      TextParam(r.tenant),
      TextParam(r.id),
      BytesParam(r.token_hash),
      TextParam(r.user_id),
      BytesParam(r.sealed_payload),
      IntParam(TimeToMicros(r.created_at)),
      IntParam(TimeToMicros(r.last_active_at)),
      IntParam(DurationToMicros(r.idle_timeout)),
      IntParam(DurationToMicros(r.absolute_lifetime)),
      IntParam(r.version),
      IntParam(TimeToMicros(r.ExpiresAt())),
  };
  return CountChanges(SqlStatement::kInsert, params).status();
}

absl::Status SqlTransaction::Touch(const SessionRecord& r) {
  const SqlParam params[] = {TextParam(r.tenant), TextParam(r.id),
                             IntParam(TimeToMicros(r.last_active_at)),
                             IntParam(TimeToMicros(r.ExpiresAt()))};
  return CountChanges(SqlStatement::kTouch, params).status();
}

absl::Status SqlTransaction::Rewrite(const SessionRecord& r,
                                     int64_t old_version) {
  const SqlParam params[] = {
      TextParam(r.tenant),
      TextParam(r.id),
      IntParam(old_version),
      BytesParam(r.token_hash),
      TextParam(r.user_id),
      BytesParam(r.sealed_payload),
      IntParam(TimeToMicros(r.last_active_at)),
      IntParam(DurationToMicros(r.idle_timeout)),
      IntParam(DurationToMicros(r.absolute_lifetime)),
      IntParam(r.version),
      IntParam(TimeToMicros(r.ExpiresAt())),
  };
  absl::StatusOr<int64_t> changed =
      CountChanges(SqlStatement::kRewrite, params);
  if (!changed.ok()) return changed.status();
  if (*changed != 1) {
    // Not ABORTED, which the contract keeps for an expected_version
    // mismatch: this is the store's own failure.
    return absl::InternalError(
        absl::StrCat(DialectName(executor_.dialect()),
                     ": rewrite: the locked session changed concurrently"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqlTransaction::EvictOverCap(absl::string_view tenant,
                                                     absl::string_view user_id,
                                                     absl::Time now,
                                                     absl::string_view keep_id,
                                                     int64_t others_to_keep) {
  const SqlParam params[] = {TextParam(tenant), TextParam(user_id),
                             IntParam(TimeToMicros(now)), TextParam(keep_id),
                             IntParam(others_to_keep)};
  int64_t skipped = 0;
  absl::StatusOr<int64_t> done =
      executor_.Execute(SqlStatement::kEvictOverCap, params,
                        [&](const SqlRow& row) { skipped = row.Int(0); });
  if (!done.ok()) return done.status();
  return skipped;
}

absl::StatusOr<std::vector<absl::Time>> SqlTransaction::DeleteByHash(
    absl::string_view tenant, absl::string_view token_hash) {
  const SqlParam params[] = {TextParam(tenant), BytesParam(token_hash)};
  return DeleteReturningExpiries(SqlStatement::kDeleteByHash, params);
}

absl::StatusOr<std::vector<absl::Time>> SqlTransaction::DeleteById(
    absl::string_view tenant, absl::string_view id) {
  const SqlParam params[] = {TextParam(tenant), TextParam(id)};
  return DeleteReturningExpiries(SqlStatement::kDeleteById, params);
}

absl::StatusOr<std::vector<absl::Time>> SqlTransaction::DeleteForUser(
    absl::string_view tenant, absl::string_view user_id,
    absl::string_view except_id) {
  const SqlParam params[] = {TextParam(tenant), TextParam(user_id),
                             TextParam(except_id)};
  return DeleteReturningExpiries(SqlStatement::kDeleteForUser, params);
}

absl::StatusOr<std::vector<SessionRecord>> SqlTransaction::ListForUser(
    absl::string_view tenant, absl::string_view user_id, absl::Time now,
    int count, int64_t max_bytes, const std::optional<ListCursor>& after) {
  const SqlParam params[] = {
      TextParam(tenant),
      TextParam(user_id),
      IntParam(TimeToMicros(now)),
      IntParam(count),
      IntParam(max_bytes),
      IntParam(after.has_value() ? TimeToMicros(after->last_active_at) : 0),
      TextParam(after.has_value() ? absl::string_view(after->id) : ""),
  };
  std::vector<SessionRecord> records;
  absl::StatusOr<int64_t> done = executor_.Execute(
      after.has_value() ? SqlStatement::kListAfter : SqlStatement::kListFirst,
      absl::MakeConstSpan(params).first(after.has_value() ? 7 : 5),
      [&](const SqlRow& row) { records.push_back(RecordFromRow(row)); });
  if (!done.ok()) return done.status();
  auto lists_before = [](const SessionRecord& a, const SessionRecord& b) {
    return ListsBefore(a.last_active_at, a.id, b.last_active_at, b.id);
  };
  if (!std::is_sorted(records.begin(), records.end(), lists_before)) {
    std::sort(records.begin(), records.end(), lists_before);
  }
  return records;
}

absl::StatusOr<int64_t> SqlTransaction::CountLive(absl::string_view tenant,
                                                  absl::Time now) {
  const SqlParam params[] = {TextParam(tenant), IntParam(TimeToMicros(now))};
  std::optional<int64_t> count;
  absl::StatusOr<int64_t> done =
      executor_.Execute(SqlStatement::kCountLive, params,
                        [&](const SqlRow& row) { count = row.Int(0); });
  if (!done.ok()) return done.status();
  if (!count.has_value()) {
    return absl::InternalError(absl::StrCat(DialectName(executor_.dialect()),
                                            ": count live: no row returned"));
  }
  return *count;
}

absl::StatusOr<int64_t> SqlTransaction::PruneBatch(
    std::optional<absl::string_view> tenant, absl::Time now,
    int64_t batch_size) {
  if (!tenant.has_value()) {
    const SqlParam params[] = {IntParam(TimeToMicros(now)),
                               IntParam(batch_size)};
    return CountChanges(SqlStatement::kPruneBatch, params);
  }
  const SqlParam params[] = {TextParam(*tenant), IntParam(TimeToMicros(now)),
                             IntParam(batch_size)};
  return CountChanges(SqlStatement::kPruneTenantBatch, params);
}

absl::StatusOr<absl::Time> SqlTransaction::Ping() {
  std::optional<int64_t> micros;
  absl::StatusOr<int64_t> done = executor_.Execute(
      SqlStatement::kPing, {}, [&](const SqlRow& row) { micros = row.Int(0); });
  if (!done.ok()) return done.status();
  if (!micros.has_value()) {
    return absl::InternalError(absl::StrCat(DialectName(executor_.dialect()),
                                            ": ping: no row returned"));
  }
  return MicrosToTime(*micros);
}

absl::StatusOr<int64_t> SqlTransaction::CountChanges(
    SqlStatement statement, absl::Span<const SqlParam> params) {
  return executor_.Execute(statement, params, [](const SqlRow&) {});
}

absl::StatusOr<std::vector<absl::Time>> SqlTransaction::DeleteReturningExpiries(
    SqlStatement statement, absl::Span<const SqlParam> params) {
  std::vector<absl::Time> expiries;
  absl::StatusOr<int64_t> done = executor_.Execute(
      statement, params,
      [&](const SqlRow& row) { expiries.push_back(MicrosToTime(row.Int(0))); });
  if (!done.ok()) return done.status();
  return expiries;
}

}  // namespace sessiond::storage::sql
