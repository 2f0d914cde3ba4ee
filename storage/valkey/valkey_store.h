// The Valkey backend ("valkey"): sessions in a Valkey (or Redis >= 7.0)
// server that several sessiond processes share, spoken to over RESP
// through hiredis. storage/valkey/README.md describes the design and the
// key layout.
//
// Every call is one FCALL of a server-side Lua function, which the server
// runs atomically, except PruneExpired and DeleteForUser: they run a
// function that does a bounded batch of the work until none is left, each
// batch atomic and the call as a whole not (their counts are still exact).
// The functions (valkey_scripts.h) carry out storage/backend.h's record
// rules on the server, since one round trip per call is what makes the
// backend fast: NewSession, ActiveAt (last_active_at = max(stored, now)),
// TouchDue, and ApplyUpdate and ApplyCycle, with ABORTED only on an
// expected_version mismatch. tests/storage/conformance.cc checks that they
// do.
//
// Time: the store reads its Clock once it holds a connection, before the
// server orders the call against others, so calls can reach the server
// with their times out of order. The functions keep session_store.h's
// guarantees all the same: a write never moves last_active_at back, and a
// session that any call finds expired is removed in that call, so no later
// call finds it live. The server's clock is never used; native key expiry
// is only a backstop that fires after the Clock says a session ended.
//
// Tenants: session hashes and token keys are shared by all tenants (ids and
// token hashes are unique across them), each hash naming its tenant; user
// and expiry indexes are per tenant, the default tenant's under the names
// of the layout before tenants, so data stored before them is the default
// tenant's as it is (README.md says why an old build may keep running
// beside a new one, and why only the default tenant should be served until
// none does). CountLive is one count of the tenant's expiry index.
//
// All keys of a store share the hash tag "{<key_prefix>}", so a cluster
// routes them to one slot (and gives this store no sharding). An ACL user
// needs FUNCTION LOAD, FCALL, PING, SELECT, the commands the functions run
// (README.md lists them) and the keys "{<key_prefix>}:*".
//
// Calls give up after connect_timeout + command_timeout (UNAVAILABLE), and
// so do calls to a server that refuses them for now: loading, busy, a
// replica, at maxmemory (then only the writes that could grow the data),
// unable to persist, or short of replicas. Error messages name the call and
// the server's error, never keys, ids, payloads or the password.
//
// Durability: run the server with appendonly yes and appendfsync always to
// keep every acknowledged call through a crash of the server.
#ifndef SESSIOND_STORAGE_VALKEY_VALKEY_STORE_H_
#define SESSIOND_STORAGE_VALKEY_VALKEY_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/clock.h"
#include "storage/session_store.h"

namespace sessiond::storage {

struct ValkeyOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // SELECT on every new connection (must be 0 on a cluster).
  int database = 0;
  // If set, AUTH with the password read from this file
  // (crypto::ReadSecretFile: private to its owner, trailing CR and LF
  // stripped). The password is kept in wiped memory, never logged.
  std::string password_file;
  // Optional ACL user for AUTH (needs password_file).
  std::string username;
  // The hash tag of every key; must not contain '{' or '}'.
  std::string key_prefix = "sessiond";
  // Most connections open at once.
  int pool_size = 8;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration command_timeout = absl::Seconds(2);
  // Most expired sessions one PruneExpired function run looks at (each run
  // holds the server, so it is kept short).
  int prune_batch_size = 500;
  // Decide expiry by the server's clock (TIME, measured at open and again
  // at each ping and prune), so that replicas whose clocks differ agree; the
  // server sets it. Otherwise by the clock OpenValkeyStore is given, as
  // tests want.
  bool follow_database_clock = false;
};

// Whether `prefix` may be ValkeyOptions::key_prefix: non-empty, without '{'
// or '}' (it is the hash tag of every key).
bool IsValidKeyPrefix(absl::string_view prefix);

// Connects (one connection, to check the address and credentials) and loads
// the function library. Errors:
//  - INVALID_ARGUMENT as SessionStore::Open says, for bad options, or for a
//    password file that cannot be read, is empty or is larger than 4096
//    bytes;
//  - FAILED_PRECONDITION for a password file that is not a regular file, or
//    that group or others may read or write (storage/common/password_file.h);
//  - UNAVAILABLE if the server cannot be reached;
//  - PERMISSION_DENIED if the server refuses the credentials.
// Messages other than SessionStore::Open's start with "valkey: ". `clock`
// must outlive the store.
absl::StatusOr<std::unique_ptr<SessionStore>> OpenValkeyStore(
    const ValkeyOptions& options, const Clock* clock,
    const StoreOptions& store_options);

}  // namespace sessiond::storage

#endif  // SESSIOND_STORAGE_VALKEY_VALKEY_STORE_H_
