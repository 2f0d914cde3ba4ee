#include "storage/sql/rows.h"

namespace sessiond::storage::sql {

SessionRecord RecordFromRow(const SqlRow& row) {
  SessionRecord r;
  r.tenant = row.Text(0);
  r.id = row.Text(1);
  r.token_hash = row.Bytes(2);
  r.user_id = row.Text(3);
  r.sealed_payload = row.Bytes(4);
  r.created_at = MicrosToTime(row.Int(5));
  r.last_active_at = MicrosToTime(row.Int(6));
  r.idle_timeout = MicrosToDuration(row.Int(7));
  r.absolute_lifetime = MicrosToDuration(row.Int(8));
  r.version = row.Int(9);
  return r;
}

}  // namespace sessiond::storage::sql
