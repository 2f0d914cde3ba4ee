// The SQLite backend of SessionStore ("sqlite"): the embedded default, one
// database file on local disk, no server to run. Several processes may open
// the same file; they share its sessions.
//
// What a caller sees beyond session_store.h:
//  - A write that waits more than 5 s for another process's write lock
//    fails with UNAVAILABLE, nothing written.
//  - A committed call survives a crash of the process; on power loss or an
//    OS crash the last few commits may be rolled back, but the file is
//    never corrupted (WAL, synchronous=NORMAL).
//  - The schema is created and migrated at open; a file written by a newer
//    sessiond (schema version above kSqliteSchemaVersion) is refused with
//    FAILED_PRECONDITION rather than risk misreading it.
//
// storage/sqlite/README.md describes the design (one writer, a reader pool,
// when the time is read).
#ifndef SESSIOND_STORAGE_SQLITE_SQLITE_STORE_H_
#define SESSIOND_STORAGE_SQLITE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// The newest schema version this binary knows and migrates to (recorded in
// `PRAGMA user_version`).
inline constexpr int kSqliteSchemaVersion = 3;

struct SqliteOptions {
  // The database file.
  std::string path = "./sessiond.db";
  // Most sessions one PruneExpired write transaction deletes, so the write
  // lock is never held for long.
  int prune_batch_size = 1000;
};

// Opens (creating if needed) the database file at options.path and migrates
// its schema. INVALID_ARGUMENT as SessionStore::Open says, for a path that
// names no file (":memory:", "" and "file:" URIs: the store opens several
// connections that must share the data), and for a prune_batch_size that is
// not positive; INTERNAL if the file cannot be opened or is not a database;
// FAILED_PRECONDITION for a newer schema, or a file system on which WAL mode
// is not possible. `clock` must outlive the store.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenSqliteStore(
    const SqliteOptions& options, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SQLITE_SQLITE_STORE_H_
