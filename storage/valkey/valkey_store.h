// Valkey backend of SessionStore ("valkey"): sessions in a Valkey (or Redis
// >= 7.0) server that several sessiond processes share. Speaks RESP through
// hiredis.
//
// Key layout. Every key starts with the hash tag "{<key_prefix>}", so all
// keys of one store live in ONE cluster hash slot:
//   {p}:s:<id>             hash: th (token hash, 32 raw bytes), u (user id),
//                          p (sealed payload), c (created_at), a
//                          (last_active_at), i (idle timeout), l (absolute
//                          lifetime), v (version); times in Unix micros,
//                          durations in micros (int64 max: infinite)
//   {p}:t:<token hash>     string: the session id (the key ends with the
//                          hash's 32 raw bytes)
//   {p}:u:<user id>        sorted set: ids of the user's sessions scored by
//                          last_active_at (listing order and cap eviction)
//   {p}:x                  sorted set: "<user id>\0<id>" scored by
//                          expires_at (what PruneExpired looks at)
// Ids, user ids and token hashes go into names as they are: names are
// binary-safe, each kind has its own "s:" "t:" "u:" part and comes last, so
// no two can collide; the hash tag is the first "{...}" of a name, so no
// '{' or '}' after it can move it; and ids and user ids hold no NUL
// (IsStorableText), which separates them in expiry index members. The
// scripts never encode a name (hex in Lua would cost more server CPU than
// the commands of a Save). One slot is the simple correct
// choice while every multi-key call must be atomic; it does mean a cluster
// gives this store no sharding. Spreading users over slots (a tag per user,
// with token -> id lookups kept atomic some other way) is future work.
//
// Why scripts. Every call is ONE server-side Lua script (create with the
// per-user cap, compare-and-set update, load-and-touch, cycle, each delete
// with its index clean-up, list, prune), except that some run a bounded one
// several times (below): the server runs a script atomically, so no other
// client ever sees a call half done, and no optimistic WATCH/MULTI retry
// loop is needed. The scripts are the functions of one library, loaded
// with FUNCTION LOAD when the store opens and run with FCALL; the library is
// named "sessiond_<digest of the scripts>", so sessiond builds with
// different scripts keep separate libraries on one server (a rolling
// upgrade), and libraries of builds no longer running may be removed with
// FUNCTION DELETE. The server keeps libraries in its persistence files and
// passes them to replicas; if it lacks one all the same (restart without
// persistence, FUNCTION FLUSH), the store loads it again and retries the
// call once. An ACL user needs FUNCTION LOAD and FCALL. No function may
// touch keys of two slots, so a cluster node rejects any that would.
//
// Bounded scripts. Nothing else runs on the server while a script does, so
// no script may take time that grows with the data: calls whose work does
// run a script that does a bounded share of it, as often as needed.
// PruneExpired and DeleteForUser go in batches of a few hundred sessions,
// each batch atomic, the call as a whole not (DeleteForUser ends with a
// batch that leaves none of the user's sessions but the kept one); the
// counts are exact.
// ListForUser seeks its cursor's position in the user index by score and
// id (never by skipping entries one by one) and looks at a bounded number
// of entries; if it meets so many dead ones (of expired or vanished
// sessions) that its page is not full by then, the script removes them and
// runs again from the same position, so a page still comes from one
// script. Cap eviction needs no bound of its own: it leaves at most
// max_sessions_per_user entries in the user index (as long as the cap stays
// the same).
//
// Expiry. The current time is read from the injected Clock and passed to
// every script, never the server's TIME, and the scripts decide liveness
// from it: that check is authoritative. Clocks are read before calls reach
// the server, so calls from several threads or processes can arrive with
// times out of order; the scripts keep session_store.h's guarantees anyway:
// a write never moves last_active_at back (it becomes max(stored, now)),
// and a session that any call finds expired is removed there and then, so
// no call that read an older time can bring it back.
//
// Native key expiry is only a backstop, set so that it cannot fire early:
// PEXPIRE/PX by the remaining duration (expires_at - now) plus a second of
// grace, never PEXPIREAT, because a clock that differs from the server's (a
// test's ManualClock, or skew between hosts) would otherwise delete live
// sessions. A user's index gets a TTL no shorter than its longest session;
// its entries of expired or vanished sessions are dropped whenever the
// index is read (list, cap eviction, DeleteForUser) and by PruneExpired.
// PruneExpired walks the expiry index in batches (one short script each):
// it removes sessions that are expired but still stored and counts them,
// and drops the index entries of sessions that are already gone (native
// expiry; not counted). Sessions other calls found expired and removed are
// not counted either.
//
// Connections. A pool of up to pool_size blocking hiredis connections, each
// used by one call at a time. A new connection sends AUTH (with the username
// if set) and SELECT. A connection that fails (I/O error, EOF, timeout) is
// dropped; an idle one whose server went away (readable socket: EOF) is
// dropped before use. So when the server restarts, the next calls simply
// open new connections: no restart of sessiond. Each call (each script run,
// for the calls that run several) has a deadline of
// connect_timeout + command_timeout: waiting for a free connection (at most
// command_timeout), connecting and the command itself all count against it,
// and running out is UNAVAILABLE. hiredis itself only bounds each read(2) and
// write(2) (by command_timeout), so that a server that trickles its reply
// could hold a call forever; a watchdog thread (storage/socket_watchdog.h)
// shuts the connection's socket down when a command's deadline passes. A
// command that timed out may still run on the server later (e.g. one stopped
// with SIGSTOP and resumed): UNAVAILABLE means "nothing is known to have been
// written", as session_store.h says.
//
// Errors. Connection failures, timeouts and the server replies LOADING,
// BUSY, MASTERDOWN, READONLY, TRYAGAIN, CLUSTERDOWN, OOM (maxmemory
// reached: writes that could grow the data are refused, while loads,
// deletes, lists and prune still run), MISCONF (the server cannot persist
// and refuses writes) and NOREPLICAS (fewer replicas than
// min-replicas-to-write) are UNAVAILABLE. Ids and user ids must be valid
// UTF-8 without NUL bytes, as in every backend (IsStorableText): writes of
// others are INVALID_ARGUMENT; lookups by them find nothing. The scripts' own
// NOT_FOUND / ABORTED / ALREADY_EXISTS map to those codes. Authentication
// failures at open are PERMISSION_DENIED; anything else (during a call,
// auth failures too) is INTERNAL. Messages name the operation and the
// server's error, never keys, ids, payloads or the password.
//
// Durability. The server should run with appendonly yes and appendfsync
// always: then every acknowledged call survives a restart or crash of the
// server (what tests check). With appendfsync everysec, up to about a second
// of acknowledged writes can be lost if the server process or host crashes
// (a clean SIGTERM shutdown still flushes everything); for sessions that
// means some users sign in again or see a stale touch, never a corrupted
// store. Without persistence a restart loses every session.
#ifndef SESSIOND_STORAGE_VALKEY_STORE_H_
#define SESSIOND_STORAGE_VALKEY_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

struct ValkeyOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // SELECT on every new connection (must be 0 on a cluster).
  int database = 0;
  // If set, AUTH with the password read from this file (a trailing newline
  // is stripped). The password is kept in memory, never logged.
  std::string password_file;
  // Optional ACL user for AUTH (needs password_file).
  std::string username;
  // The hash tag of every key; must not contain '{' or '}'.
  std::string key_prefix = "sessiond";
  // Most connections open at once.
  int pool_size = 8;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration command_timeout = absl::Seconds(2);
};

// Connects (one connection, to check the address and credentials) and loads
// the scripts. INVALID_ARGUMENT for bad options or an unreadable password
// file; UNAVAILABLE if the server cannot be reached; PERMISSION_DENIED if it
// refuses the credentials. `clock` must outlive the store. backend_name() is
// "valkey".
absl::StatusOr<std::unique_ptr<SessionStore>> OpenValkeyStore(
    const ValkeyOptions& options, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_VALKEY_STORE_H_
