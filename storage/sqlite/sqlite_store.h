// SQLite backend of SessionStore: the embedded default, one database file on
// local disk, no server to run.
//
// Concurrency: the store owns one writer connection and a small pool of
// reader connections to the same file, each used by one thread at a time.
// The database is in WAL mode, so reads run in parallel with each other and
// with the writer. Every write is one `BEGIN IMMEDIATE` transaction on the
// writer connection; threads of this process queue for it on a mutex (no
// polling), and other processes that open the same file are serialised by
// SQLite's write lock with a busy timeout. SQLITE_BUSY or SQLITE_LOCKED that
// outlasts the timeout is reported as UNAVAILABLE.
//
// Time: a write reads the clock only once its transaction holds the write
// lock, so the times of successive writes follow commit order; a read reads
// it once it has a reader connection. A reader's snapshot can lack a write
// that is about to commit, so a session a reader finds expired is checked
// again under the write lock before Load or LoadAndTouch reports NOT_FOUND:
// once reported, no later call finds it live.
//
// Durability: `synchronous=NORMAL` in WAL mode. A committed call survives a
// crash of the process; on power loss or an OS crash the last few commits
// may be rolled back, but the file is never corrupted. For sessions that is
// the right trade: a lost commit means a user signs in again, while
// `synchronous=FULL` would fsync on every touch.
//
// Schema: created and migrated at start-up; the version is recorded in
// `PRAGMA user_version`. Each migration runs in its own transaction. A file
// whose version is newer than kSqliteSchemaVersion is refused with
// FAILED_PRECONDITION rather than risk misreading it.
#ifndef SESSIOND_STORAGE_SQLITE_STORE_H_
#define SESSIOND_STORAGE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// The newest schema version this binary knows and migrates to.
inline constexpr int kSqliteSchemaVersion = 1;

// Opens (creating if needed) the database file at `path` and migrates its
// schema. `path` must name a file: ":memory:" and "" are INVALID_ARGUMENT,
// because the store opens several connections that must share the data.
// `clock` must outlive the store. backend_name() is "sqlite".
absl::StatusOr<std::unique_ptr<SessionStore>> OpenSqliteStore(
    const std::string& path, const Clock* clock, const StoreOptions& options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_SQLITE_STORE_H_
