#include "storage/sql/rows.h"

namespace sessiond::storage::sql {

SessionRecord RecordFromRow(const SqlRow& row) {
  SessionRecord r;
  r.id = row.Text(0);
  r.token_hash = row.Bytes(1);
  r.user_id = row.Text(2);
  r.sealed_payload = row.Bytes(3);
  r.created_at = MicrosToTime(row.Int(4));
  r.last_active_at = MicrosToTime(row.Int(5));
  r.idle_timeout = MicrosToDuration(row.Int(6));
  r.absolute_lifetime = MicrosToDuration(row.Int(7));
  r.version = row.Int(8);
  return r;
}

}  // namespace sessiond::storage::sql
