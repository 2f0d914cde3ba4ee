// The in-memory SessionStore ("memory"): sessions live in this process only
// and vanish with it. For single-instance deployments, tests and benchmarks.
//
// Concurrency design. There is no global lock. State is split into three
// kinds of shards (64 of each), each guarded by its own absl::Mutex:
//  - token shards, by hash of token_hash: own the session entries (one heap
//    block per session: fixed header, then id, user_id and payload bytes);
//  - id shards, by hash of id: an index id -> entry;
//  - user shards, by hash of user_id: user_id -> intrusive list of entries.
// Lock order: user shards, then id shards, then token shards; within a kind,
// ascending shard number. A call takes all the locks it needs in that order
// in one go, and releases them all before taking any others, so no cycle of
// waiters (deadlock) can form. A call that only discovers which shards it
// needs after looking (the entry's id/user, a user's other sessions for the
// cap) records them, releases everything, and retries with the larger set;
// it writes only once it holds every shard it touches, so each call is one
// atomic step. Any change to an entry except a touch holds the entry's
// user, id and token shards exclusively; a touch (last_active_at only) holds
// its token shard. Load takes one token shard shared; ListForUser takes the
// user shard and the token shards of that user's sessions shared.
// Expired entries are invisible and removed lazily (PruneExpired, or when a
// call that holds their locks meets them).
#ifndef SESSIOND_STORAGE_MEMORY_STORE_H_
#define SESSIOND_STORAGE_MEMORY_STORE_H_

#include <memory>

#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

// A new, empty in-memory store reading time from `clock` (not owned; must
// outlive the store).
std::unique_ptr<SessionStore> NewMemoryStore(const Clock* clock,
                                             const StoreOptions& options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_MEMORY_STORE_H_
