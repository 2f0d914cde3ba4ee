#include "storage/valkey/valkey_store.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crypto/secret_file.h"
#include "storage/backend.h"
#include "storage/call_deadline.h"
#include "storage/common/connection_pool.h"
#include "storage/common/database_clock.h"
#include "storage/common/host_lookup.h"
#include "storage/common/password_file.h"
#include "storage/common/socket_watchdog.h"
#include "storage/session_record.h"
#include "storage/valkey/internal/replies.h"
#include "storage/valkey/valkey_scripts.h"

namespace sessiond::storage {
namespace {

namespace scripts = valkey_internal;
using internal::Watchdog;
using valkey_internal::FunctionError;
using valkey_internal::Malformed;
using valkey_internal::RecordFromReply;
using valkey_internal::Reply;
using valkey_internal::ReplyText;
using valkey_internal::SanitizedServerError;
using valkey_internal::ServerError;

// Bounds on the work of one function run, so that no call, whatever the
// data, holds the shared server for long (README.md, "Bounded functions").
//
// User index entries one DeleteForUser run removes (plus the kept one).
constexpr int64_t kDeleteForUserBatchSize = 500;
// User index entries one ListForUser run may look at beyond the records
// asked for.
constexpr int64_t kListScanSlack = 1000;

// ---------------------------------------------------------------------------
// The function library.

enum Function : int {
  kLoad,
  kLoadAndTouch,
  kCreate,
  kUpdate,
  kCycle,
  kDeleteByTokenHash,
  kDeleteById,
  kDeleteForUser,
  kListForUser,
  kCountLive,
  kPrune,
  kNumFunctions,
};

struct FunctionSource {
  const char* what;  // the call, in error messages
  const char* name;  // in the library, after "<library name>_"
  // Only reads or removes, so it may run on a server at maxmemory, which
  // refuses functions that could grow the data.
  bool allow_oom;
  const char* body;
};

constexpr std::array<FunctionSource, kNumFunctions> kFunctions = {{
    {"load", "load", true, scripts::kLoadScript},
    {"load and touch", "load_and_touch", false, scripts::kLoadAndTouchScript},
    {"create", "create", false, scripts::kCreateScript},
    {"update", "update", false, scripts::kUpdateScript},
    {"cycle", "cycle", false, scripts::kCycleScript},
    {"delete by token hash", "delete_by_token_hash", true,
     scripts::kDeleteByTokenHashScript},
    {"delete by id", "delete_by_id", true, scripts::kDeleteByIdScript},
    {"delete for user", "delete_for_user", true, scripts::kDeleteForUserScript},
    {"list for user", "list_for_user", true, scripts::kListForUserScript},
    {"count live", "count_live", true, scripts::kCountLiveScript},
    {"prune", "prune", true, scripts::kPruneScript},
}};

// The library every store loads, named "sessiond_<digest of its text>", so
// that builds with different functions each keep their own on a shared
// server and every process of one build shares one.
struct Library {
  std::string name;
  std::string text;                                  // for FUNCTION LOAD
  std::array<std::string, kNumFunctions> functions;  // for FCALL
};

// FNV-1a, 64 bits: stable across processes and builds (absl::Hash is not).
uint64_t Fnv1a64(absl::string_view data, uint64_t hash) {
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

Library MakeLibrary() {
  uint64_t digest = Fnv1a64(scripts::kPrelude, 14695981039346656037ull);
  for (const FunctionSource& f : kFunctions) {
    digest = Fnv1a64(f.name, digest);
    digest = Fnv1a64(f.allow_oom ? "oom" : "-", digest);
    digest = Fnv1a64(f.body, digest);
  }
  Library library;
  library.name = absl::StrCat("sessiond_", absl::Hex(digest, absl::kZeroPad16));
  library.text =
      absl::StrCat("#!lua name=", library.name, "\n", scripts::kPrelude);
  for (int f = 0; f < kNumFunctions; ++f) {
    library.functions[f] = absl::StrCat(library.name, "_", kFunctions[f].name);
    absl::StrAppend(&library.text, "redis.register_function{function_name='",
                    library.functions[f], "', flags={",
                    kFunctions[f].allow_oom ? "'allow-oom'" : "",
                    "}, callback=function(_, args)\nbegin(args)\n",
                    kFunctions[f].body, "end}\n");
  }
  return library;
}

const Library& TheLibrary() {
  static const Library* const library = new Library(MakeLibrary());
  return *library;
}

// ---------------------------------------------------------------------------
// Conversions. Times are Unix microseconds; durations are microseconds, with
// int64 max standing for an infinite duration.

std::string Micros(absl::Duration d) {
  return absl::StrCat(DurationToMicros(d));
}

// The smallest whole number of microseconds >= d (saturating).
int64_t CeilMicros(absl::Duration d) {
  int64_t us = absl::ToInt64Microseconds(d);
  if (us != std::numeric_limits<int64_t>::max() && absl::Microseconds(us) < d) {
    ++us;
  }
  return us;
}

timeval TimeoutTimeval(absl::Duration d) {
  // hiredis treats a zero timeout as "block forever".
  return absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
}

// ---------------------------------------------------------------------------
// Replies and errors.

// hiredis writes with write(2), which raises SIGPIPE when the server has
// gone. For the life of this object SIGPIPE is blocked in the calling
// thread, and one raised meanwhile is consumed, so a lost server is an
// error return, never a dead process, whatever the process does with
// SIGPIPE.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~ScopedSigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero = {0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// ---------------------------------------------------------------------------
// Connections.

// One blocking hiredis connection, used by one thread at a time. While a
// command runs, the store's Watchdog watches a dup() of the socket and shuts
// it down at the command's deadline (socket_watchdog.h); the command then
// fails, and the connection is never used again.
class Connection {
 public:
  // Connects, then AUTH (if `password` is set) and SELECT as `options` say;
  // all of it by `deadline`. `watchdog` must outlive the connection.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ValkeyOptions& options, absl::string_view password,
      absl::Time deadline, Watchdog& watchdog) {
    const absl::Duration budget = deadline - absl::Now();
    if (budget <= absl::ZeroDuration()) {
      return absl::UnavailableError("valkey: connect: deadline exceeded");
    }
    // The name is looked up by the deadline here (hiredis would do it with
    // no deadline), then hiredis connects to each address in turn,
    // non-blocking and polling, bounded by what is left of the deadline.
    static internal::HostLookup* const lookup = new internal::HostLookup();
    absl::StatusOr<std::vector<std::string>> addresses =
        lookup->Addresses(options.host, deadline);
    if (!addresses.ok()) {
      return absl::UnavailableError(
          absl::StrCat("valkey: ", addresses.status().message()));
    }
    redisContext* ctx = nullptr;
    std::string failure = "deadline exceeded";
    for (const std::string& address : *addresses) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      ctx = redisConnectWithTimeout(address.c_str(), options.port,
                                    TimeoutTimeval(left));
      if (ctx == nullptr) {
        return absl::InternalError("valkey: connect: out of memory");
      }
      if (ctx->err == 0) break;
      failure = absl::StrCat(address, ": ", ctx->errstr);
      redisFree(ctx);
      ctx = nullptr;
    }
    if (ctx == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("valkey: cannot connect to ", options.host, ":",
                       options.port, " (", failure, ")"));
    }
    const int watch_fd = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 0);
    if (watch_fd < 0) {
      const int error = errno;
      redisFree(ctx);
      return absl::UnavailableError(absl::StrCat(
          "valkey: connect: cannot duplicate the socket: ", strerror(error)));
    }
    std::unique_ptr<Connection> conn(
        new Connection(ctx, watch_fd, watchdog, options.command_timeout));
    redisEnableKeepAlive(ctx);
    // Bounds each read(2) and write(2); the watchdog bounds each command.
    if (redisSetTimeout(ctx, TimeoutTimeval(options.command_timeout)) !=
        REDIS_OK) {
      return absl::UnavailableError("valkey: connect: cannot set timeout");
    }
    if (!password.empty()) {
      std::vector<absl::string_view> auth = {"AUTH"};
      if (!options.username.empty()) auth.push_back(options.username);
      auth.push_back(password);
      absl::StatusOr<Reply> r = conn->SendCommand(auth, deadline, "AUTH");
      if (!r.ok()) return r.status();
      if ((*r)->type == REDIS_REPLY_ERROR) {
        return absl::PermissionDeniedError(absl::StrCat(
            "valkey: AUTH",
            options.username.empty()
                ? ""
                : absl::StrCat(" as user \"", options.username, "\""),
            " failed: ", SanitizedServerError(ReplyText(r->get()))));
      }
    }
    if (options.database != 0) {
      const std::string db = absl::StrCat(options.database);
      absl::StatusOr<Reply> r =
          conn->SendCommand({"SELECT", db}, deadline, "SELECT");
      if (!r.ok()) return r.status();
      if ((*r)->type == REDIS_REPLY_ERROR) {
        absl::Status status =
            ServerError(ReplyText(r->get()), absl::StrCat("SELECT ", db));
        if (absl::IsInternal(status)) {
          return absl::InvalidArgumentError(status.message());
        }
        return status;
      }
    }
    return conn;
  }

  ~Connection() {
    redisFree(ctx_);
    // Only now: no watch is armed (SendCommand disarms before it returns),
    // and hiredis is done with the socket.
    ::close(watch_fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command and reads its reply (which may be an error reply),
  // all by `deadline`. On a connection failure the connection is marked
  // broken and the status is UNAVAILABLE (INTERNAL for a protocol error).
  absl::StatusOr<Reply> SendCommand(const std::vector<absl::string_view>& args,
                                    absl::Time deadline,
                                    absl::string_view what) {
    if (broken_) {
      return absl::UnavailableError(
          absl::StrCat("valkey: ", what, ": connection broken"));
    }
    if (deadline <= absl::Now()) {
      return absl::UnavailableError(
          absl::StrCat("valkey: ", what, ": deadline exceeded"));
    }
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (absl::string_view a : args) {
      argv.push_back(a.data() != nullptr ? a.data() : "");
      lengths.push_back(a.size());
    }
    void* reply = nullptr;
    int saved_errno = 0;
    bool fired = false;
    {
      ScopedSigpipeBlock no_sigpipe;
      const uint64_t ticket = watchdog_.Arm(watch_fd_, deadline);
      errno = 0;
      reply = redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(),
                               lengths.data());
      saved_errno = errno;
      fired = watchdog_.Disarm(ticket);
    }
    if (fired) {
      // The socket is shut down, whatever hiredis made of it. A reply that
      // arrived whole just in time is still good.
      broken_ = true;
      if (reply == nullptr) {
        return absl::UnavailableError(absl::StrCat(
            "valkey: ", what, ": no reply from the server in time"));
      }
    }
    if (reply == nullptr) {
      broken_ = true;
      if (ctx_->err == REDIS_ERR_PROTOCOL) {
        return absl::InternalError(
            absl::StrCat("valkey: ", what, ": protocol error: ", ctx_->errstr));
      }
      if (ctx_->err == REDIS_ERR_IO &&
          (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        return absl::UnavailableError(
            absl::StrCat("valkey: ", what, ": no reply within ",
                         absl::FormatDuration(command_timeout_)));
      }
      return absl::UnavailableError(
          absl::StrCat("valkey: ", what, ": connection error: ", ctx_->errstr));
    }
    return Reply(static_cast<redisReply*>(reply));
  }

  // Fit to go back to the pool after a call: no I/O error, no timeout.
  bool Reusable() const { return !broken_ && ctx_->err == 0; }

  // False if the server has closed this idle connection (or sent something
  // unasked): its socket is readable. Checked before reuse, so that after a
  // server restart no call fails on a connection that was already dead.
  bool StillAlive() const {
    if (!Reusable()) return false;
    pollfd p = {};
    p.fd = ctx_->fd;
    p.events = POLLIN;
    return poll(&p, 1, 0) == 0;
  }

 private:
  Connection(redisContext* ctx, int watch_fd, Watchdog& watchdog,
             absl::Duration command_timeout)
      : ctx_(ctx),
        watch_fd_(watch_fd),
        watchdog_(watchdog),
        command_timeout_(command_timeout) {}

  redisContext* const ctx_;
  // Our own duplicate of ctx_->fd, the one the watchdog watches; closed
  // after ctx_ (see socket_watchdog.h).
  const int watch_fd_;
  Watchdog& watchdog_;
  const absl::Duration command_timeout_;  // of each read(2) and write(2)
  bool broken_ = false;
};

// The store's connections and the deadlines of its calls: each call (each
// function run, for the calls that run several) must be done by
// connect_timeout + command_timeout after it starts, waiting for a free
// connection at most command_timeout of that, and all of it by the
// CallDeadline() of the thread (call_deadline.h).
class Connections {
 public:
  using Lease = ConnectionPool<Connection>::Lease;

  // `watchdog` bounds every command and must outlive this.
  Connections(const ValkeyOptions& options, crypto::Secret password,
              Watchdog& watchdog)
      : options_(options),
        password_(std::move(password)),
        watchdog_(watchdog),
        pool_("valkey", options.pool_size, options.connect_timeout,
              [this](absl::Time deadline) {
                return Connection::Open(options_, password_.view(), deadline,
                                        watchdog_);
              }) {}

  // When a call started at `start` must be done.
  absl::Time Deadline(absl::Time start) const {
    return std::min(CallDeadline(), start + options_.connect_timeout +
                                        options_.command_timeout);
  }
  // When the next command of a call with this deadline must be done.
  absl::Time CommandDeadline(absl::Time deadline) const {
    return std::min(deadline, absl::Now() + options_.command_timeout);
  }

  // A connection for a call started at `start`.
  absl::StatusOr<Lease> Acquire(absl::Time start) {
    const absl::Time deadline = Deadline(start);
    return pool_.Acquire(std::min(deadline, start + options_.command_timeout),
                         deadline);
  }

  PoolStats Stats() const { return pool_.Stats(); }

 private:
  const ValkeyOptions options_;
  const crypto::Secret password_;  // empty: no AUTH
  Watchdog& watchdog_;
  ConnectionPool<Connection> pool_;
};

// ---------------------------------------------------------------------------
// The backend.

class ValkeyBackend final : public StorageBackend {
 public:
  ValkeyBackend(const ValkeyOptions& options, crypto::Secret password,
                const Clock* clock)
      : pool_(options, std::move(password), watchdog_),
        base_(absl::StrCat("{", options.key_prefix, "}:")),
        database_clock_(options.follow_database_clock
                            ? std::make_unique<DatabaseClock>(clock)
                            : nullptr),
        clock_(database_clock_ != nullptr ? database_clock_.get() : clock),
        prune_batch_size_(options.prune_batch_size) {}

  absl::string_view name() const override { return "valkey"; }

  // Loads the function library; OpenValkeyStore calls it once.
  absl::Status LoadLibrary() {
    const absl::Time start = absl::Now();
    absl::StatusOr<Connections::Lease> lease = pool_.Acquire(start);
    if (!lease.ok()) return lease.status();
    return LoadLibrary(**lease, pool_.Deadline(start));
  }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& fresh,
                                       const TenantLimits& limits) override {
    std::vector<std::string> keys = {SessionKey(fresh.id),
                                     TokenKey(fresh.token_hash),
                                     ExpiryKey(fresh.tenant)};
    if (!fresh.user_id.empty()) {
      keys.push_back(UserKey(fresh.tenant, fresh.user_id));
    }
    return CallForRecord(
        kCreate, fresh.tenant, keys,
        {fresh.id, fresh.token_hash, fresh.user_id, fresh.sealed_payload,
         Micros(fresh.idle_timeout), Micros(fresh.absolute_lifetime),
         absl::StrCat(limits.max_sessions_per_user)});
  }

  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash) override {
    return CallForRecord(kLoad, tenant, {TokenKey(token_hash)},
                         {std::string(token_hash)});
  }

  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view tenant, absl::string_view token_hash,
      absl::Duration min_interval) override {
    // Times are whole microseconds, so now - last_active_at reaches
    // min_interval exactly when it reaches min_interval rounded up.
    return CallForRecord(
        kLoadAndTouch, tenant, {TokenKey(token_hash)},
        {std::string(token_hash), absl::StrCat(CeilMicros(min_interval))});
  }

  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    return CallForRecord(
        kUpdate, tenant, {TokenKey(token_hash), ExpiryKey(tenant)},
        {std::string(token_hash), Flag(update.sealed_payload.has_value()),
         update.sealed_payload.value_or(""), MicrosOrEmpty(update.idle_timeout),
         MicrosOrEmpty(update.absolute_lifetime),
         VersionOrEmpty(update.expected_version)});
  }

  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits) override {
    std::vector<std::string> keys = {TokenKey(old_token_hash),
                                     TokenKey(cycle.new_token_hash),
                                     ExpiryKey(tenant)};
    if (cycle.user_id.has_value() && !cycle.user_id->empty()) {
      keys.push_back(UserKey(tenant, *cycle.user_id));
    }
    return CallForRecord(
        kCycle, tenant, keys,
        {std::string(old_token_hash), cycle.new_token_hash,
         Flag(cycle.user_id.has_value()), cycle.user_id.value_or(""),
         Flag(cycle.sealed_payload.has_value()),
         cycle.sealed_payload.value_or(""),
         VersionOrEmpty(cycle.expected_version),
         absl::StrCat(limits.max_sessions_per_user)});
  }

  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view tenant, absl::string_view token_hash) override {
    return CallForCount(kDeleteByTokenHash, tenant,
                        {TokenKey(token_hash), ExpiryKey(tenant)},
                        {std::string(token_hash)});
  }

  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id) override {
    return CallForCount(kDeleteById, tenant,
                        {SessionKey(id), ExpiryKey(tenant)}, {std::string(id)});
  }

  // Ends with a batch that leaves none of the user's sessions but the kept
  // one; sessions written for the user while the call runs may be removed
  // too, and are counted if so.
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id) override {
    return CallInBatches(kDeleteForUser, tenant,
                         {UserKey(tenant, user_id), ExpiryKey(tenant)},
                         {std::string(user_id), std::string(except_id),
                          absl::StrCat(kDeleteForUserBatchSize)});
  }

  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) override {
    std::string mode, cursor_us, cursor_id;
    if (after.has_value()) {
      mode = "after";
      cursor_us = absl::StrCat(absl::ToUnixMicros(after->last_active_at));
      cursor_id = after->id;
    }
    const std::vector<std::string> keys = {UserKey(tenant, user_id)};
    const std::vector<std::string> args = {std::string(user_id),
                                           absl::StrCat(count),
                                           mode,
                                           cursor_us,
                                           cursor_id,
                                           absl::StrCat(count + kListScanSlack),
                                           absl::StrCat(max_bytes)};
    for (;;) {
      absl::StatusOr<Reply> r = CallFunction(kListForUser, tenant, keys, args);
      if (!r.ok()) return r.status();
      const redisReply* list = r->get();
      // The run cleared dead index entries instead; the next gets further.
      if (list->type == REDIS_REPLY_NIL) continue;
      if (list->type != REDIS_REPLY_ARRAY) return Malformed("list for user");
      std::vector<SessionRecord> records;
      records.reserve(list->elements);
      for (size_t k = 0; k < list->elements; ++k) {
        absl::StatusOr<SessionRecord> record =
            RecordFromReply(list->element[k], "list for user");
        if (!record.ok()) return record.status();
        records.push_back(*std::move(record));
      }
      return records;
    }
  }

  // One ZCOUNT on the tenant's expiry index (README.md, "Tenants").
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant) override {
    return CallForCount(kCountLive, tenant, {ExpiryKey(tenant)}, {});
  }

  // Batches of at most prune_batch_size entries, each one function run; for
  // every tenant, the runs go through the default tenant and then the
  // tenant set, each run going on where the last stopped.
  absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) override {
    constexpr absl::string_view what = "prune";
    if (absl::Status s = MeasureDatabaseClock(); !s.ok()) return s;
    std::string current(tenant.value_or(kDefaultTenant));
    const std::string all = Flag(!tenant.has_value());
    const std::string batch = absl::StrCat(prune_batch_size_);
    int64_t total = 0;
    for (;;) {
      absl::StatusOr<Reply> r = CallFunction(
          kPrune, current, {ExpiryKey(current), TenantsKey()}, {batch, all});
      if (!r.ok()) return r.status();
      const redisReply* reply = r->get();
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
          reply->element[0]->type != REDIS_REPLY_INTEGER ||
          reply->element[1]->type != REDIS_REPLY_INTEGER ||
          reply->element[2]->type != REDIS_REPLY_STRING) {
        return Malformed(what);
      }
      total += reply->element[0]->integer;
      if (reply->element[1]->integer != 0) return total;
      std::string next(ReplyText(reply->element[2]));
      if (!IsValidTenantName(next)) return Malformed(what);
      current = std::move(next);
    }
  }

  PoolStats pool_stats() const override { return pool_.Stats(); }

  absl::Status Ping() override {
    if (database_clock_ != nullptr) return MeasureDatabaseClock();
    const absl::Time start = absl::Now();
    absl::StatusOr<Connections::Lease> lease = pool_.Acquire(start);
    if (!lease.ok()) return lease.status();
    absl::StatusOr<Reply> r = (*lease)->SendCommand(
        {"PING"}, pool_.CommandDeadline(pool_.Deadline(start)), "ping");
    if (!r.ok()) return r.status();
    if ((*r)->type == REDIS_REPLY_ERROR) {
      return ServerError(ReplyText(r->get()), "ping");
    }
    if ((*r)->type != REDIS_REPLY_STATUS || ReplyText(r->get()) != "PONG") {
      return Malformed("ping");
    }
    return absl::OkStatus();
  }

  // With follow_database_clock, measures the server's clock (TIME) again;
  // OK otherwise.
  absl::Status MeasureDatabaseClock() {
    if (database_clock_ == nullptr) return absl::OkStatus();
    constexpr absl::string_view what = "time";
    const absl::Time start = absl::Now();
    absl::StatusOr<Connections::Lease> lease = pool_.Acquire(start);
    if (!lease.ok()) return lease.status();
    const absl::Time deadline = pool_.CommandDeadline(pool_.Deadline(start));
    return database_clock_->Measure([&]() -> absl::StatusOr<absl::Time> {
      absl::StatusOr<Reply> r = (*lease)->SendCommand({"TIME"}, deadline, what);
      if (!r.ok()) return r.status();
      const redisReply* reply = r->get();
      if (reply->type == REDIS_REPLY_ERROR) {
        return ServerError(ReplyText(reply), what);
      }
      int64_t seconds = 0;
      int64_t micros = 0;
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
          reply->element[0]->type != REDIS_REPLY_STRING ||
          reply->element[1]->type != REDIS_REPLY_STRING ||
          !absl::SimpleAtoi(ReplyText(reply->element[0]), &seconds) ||
          !absl::SimpleAtoi(ReplyText(reply->element[1]), &micros)) {
        return Malformed(what);
      }
      return absl::FromUnixSeconds(seconds) + absl::Microseconds(micros);
    });
  }

 private:
  // FUNCTION LOAD of the library on `conn`; a server that has it already
  // (another sessiond of this build loaded it) is as good.
  absl::Status LoadLibrary(Connection& conn, absl::Time deadline) {
    const Library& library = TheLibrary();
    constexpr absl::string_view what = "load functions";
    absl::StatusOr<Reply> r =
        conn.SendCommand({"FUNCTION", "LOAD", library.text},
                         pool_.CommandDeadline(deadline), what);
    if (!r.ok()) return r.status();
    const absl::string_view text = ReplyText(r->get());
    if ((*r)->type == REDIS_REPLY_ERROR) {
      if (absl::StrContains(text, "already exists")) return absl::OkStatus();
      return ServerError(text, what);
    }
    if ((*r)->type != REDIS_REPLY_STRING || text != library.name) {
      return Malformed(what);
    }
    return absl::OkStatus();
  }

  // Calls `function` with FCALL (ARGV: base, now, tenant, args...) and
  // returns its
  // reply, which is not an error reply. The clock is read once a connection
  // is in hand, as late as the call allows. A server without the library
  // (restarted without persistence, FUNCTION FLUSH) gets it again, and the
  // call is retried once.
  absl::StatusOr<Reply> CallFunction(Function function,
                                     absl::string_view tenant,
                                     const std::vector<std::string>& keys,
                                     const std::vector<std::string>& args) {
    const absl::string_view what = kFunctions[function].what;
    const absl::Time start = absl::Now();
    absl::StatusOr<Connections::Lease> lease = pool_.Acquire(start);
    if (!lease.ok()) return lease.status();
    const std::string now = absl::StrCat(absl::ToUnixMicros(clock_->Now()));
    const std::string num_keys = absl::StrCat(keys.size());
    std::vector<absl::string_view> argv = {
        "FCALL", TheLibrary().functions[function], num_keys};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.push_back(base_);
    argv.push_back(now);
    argv.push_back(tenant);
    argv.insert(argv.end(), args.begin(), args.end());
    const absl::Time deadline = pool_.Deadline(start);
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<Reply> reply =
          (*lease)->SendCommand(argv, pool_.CommandDeadline(deadline), what);
      if (!reply.ok() || (*reply)->type != REDIS_REPLY_ERROR) return reply;
      const absl::string_view error = ReplyText(reply->get());
      if (attempt > 0 || !absl::StartsWith(error, "ERR Function not found")) {
        return FunctionError(error, what);
      }
      if (absl::Status s = LoadLibrary(**lease, deadline); !s.ok()) return s;
    }
  }

  absl::StatusOr<SessionRecord> CallForRecord(
      Function function, absl::string_view tenant,
      const std::vector<std::string>& keys,
      const std::vector<std::string>& args) {
    absl::StatusOr<Reply> r = CallFunction(function, tenant, keys, args);
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), kFunctions[function].what);
  }

  absl::StatusOr<int64_t> CallForCount(Function function,
                                       absl::string_view tenant,
                                       const std::vector<std::string>& keys,
                                       const std::vector<std::string>& args) {
    absl::StatusOr<Reply> r = CallFunction(function, tenant, keys, args);
    if (!r.ok()) return r.status();
    if ((*r)->type != REDIS_REPLY_INTEGER) {
      return Malformed(kFunctions[function].what);
    }
    return static_cast<int64_t>((*r)->integer);
  }

  // Calls `function`, which does a bounded batch of the work and replies
  // {count, 1 if no work is left else 0}, until no work is left; returns the
  // sum of the counts. Each batch is atomic, the whole not.
  absl::StatusOr<int64_t> CallInBatches(Function function,
                                        absl::string_view tenant,
                                        const std::vector<std::string>& keys,
                                        const std::vector<std::string>& args) {
    int64_t total = 0;
    for (;;) {
      absl::StatusOr<Reply> r = CallFunction(function, tenant, keys, args);
      if (!r.ok()) return r.status();
      const redisReply* counts = r->get();
      if (counts->type != REDIS_REPLY_ARRAY || counts->elements != 2 ||
          counts->element[0]->type != REDIS_REPLY_INTEGER ||
          counts->element[1]->type != REDIS_REPLY_INTEGER) {
        return Malformed(kFunctions[function].what);
      }
      total += counts->element[0]->integer;
      if (counts->element[1]->integer != 0) return total;
    }
  }

  std::string SessionKey(absl::string_view id) const {
    return absl::StrCat(base_, "s:", id);
  }
  std::string TokenKey(absl::string_view token_hash) const {
    return absl::StrCat(base_, "t:", token_hash);
  }
  // The start of the names of a tenant's user and expiry indexes: the key
  // base for the default tenant, "<base>n:<tenant>:" for the others.
  std::string TenantBase(absl::string_view tenant) const {
    if (tenant == kDefaultTenant) return base_;
    return absl::StrCat(base_, "n:", tenant, ":");
  }
  std::string UserKey(absl::string_view tenant,
                      absl::string_view user_id) const {
    return absl::StrCat(TenantBase(tenant), "u:", user_id);
  }
  std::string ExpiryKey(absl::string_view tenant) const {
    return absl::StrCat(TenantBase(tenant), "x");
  }
  // The set of tenants other than the default one.
  std::string TenantsKey() const { return absl::StrCat(base_, "n"); }

  static std::string Flag(bool set) { return set ? "1" : "0"; }
  static std::string MicrosOrEmpty(const std::optional<absl::Duration>& d) {
    return d.has_value() ? Micros(*d) : std::string();
  }
  static std::string VersionOrEmpty(const std::optional<int64_t>& v) {
    return v.has_value() ? absl::StrCat(*v) : std::string();
  }

  // Bounds every command of every connection; outlives the pool.
  Watchdog watchdog_;
  Connections pool_;
  const std::string base_;  // "{prefix}:"
  // Set with follow_database_clock.
  const std::unique_ptr<DatabaseClock> database_clock_;
  const Clock* const clock_;
  const int prune_batch_size_;
};

absl::Status CheckOptions(const ValkeyOptions& options) {
  auto invalid = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("valkey: ", message));
  };
  if (options.host.empty()) return invalid("host must not be empty");
  if (options.port <= 0 || options.port > 65535) {
    return invalid("port must be in 1..65535");
  }
  if (options.database < 0) return invalid("database must not be negative");
  if (options.pool_size <= 0) return invalid("pool_size must be positive");
  if (options.prune_batch_size <= 0) {
    return invalid("prune_batch_size must be positive");
  }
  for (absl::Duration d : {options.connect_timeout, options.command_timeout}) {
    if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return invalid("timeouts must be positive and finite");
    }
  }
  if (!IsValidKeyPrefix(options.key_prefix)) {
    return invalid("key_prefix must be non-empty, without '{' or '}'");
  }
  if (!options.username.empty() && options.password_file.empty()) {
    return invalid("username needs a password_file");
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidKeyPrefix(absl::string_view prefix) {
  return !prefix.empty() &&
         prefix.find_first_of("{}") == absl::string_view::npos;
}

absl::StatusOr<std::unique_ptr<SessionStore>> OpenValkeyStore(
    const ValkeyOptions& options, const Clock* clock,
    const StoreOptions& store_options) {
  return SessionStore::Open(
      clock, store_options,
      [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
        if (absl::Status s = CheckOptions(options); !s.ok()) return s;
        crypto::Secret password;
        if (!options.password_file.empty()) {
          absl::StatusOr<crypto::Secret> read =
              ReadPasswordFile("valkey", options.password_file);
          if (!read.ok()) return read.status();
          password = *std::move(read);
        }
        auto backend = std::make_unique<ValkeyBackend>(
            options, std::move(password), clock);
        if (absl::Status s = backend->LoadLibrary(); !s.ok()) return s;
        if (absl::Status s = backend->MeasureDatabaseClock(); !s.ok()) {
          return s;
        }
        return backend;
      });
}

}  // namespace sessiond::storage
