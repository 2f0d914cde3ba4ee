#include "storage/valkey_store.h"

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
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
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
#include "storage/session_record.h"
#include "storage/socket_watchdog.h"
#include "storage/valkey_scripts.h"

namespace sessiond::storage {
namespace {

namespace scripts = valkey_internal;
using internal::Watchdog;

// SessionRecord::token_hash is a SHA-256.

// Bounds on the work of one script, so that no call, whatever the data,
// holds the shared server for long: a script runs atomically, and nothing
// else runs on the server meanwhile.
//
// Expiry index entries one prune script looks at.
constexpr int64_t kPruneBatchSize = 500;
// User index entries one DeleteForUser script removes (plus the kept one).
constexpr int64_t kDeleteForUserBatchSize = 500;
// User index entries one ListForUser script may look at beyond limit + 1;
// a script that meets more dead entries than that before its page is full
// removes them and reports the page incomplete, and the call runs it again.
constexpr int64_t kListScanSlack = 1000;

// ---------------------------------------------------------------------------
// Scripts.

enum Script : int {
  kLoad,
  kLoadAndTouch,
  kCreate,
  kUpdate,
  kCycle,
  kDeleteByTokenHash,
  kDeleteById,
  kDeleteForUser,
  kListForUser,
  kPrune,
  kNumScripts,
};

struct ScriptSource {
  const char* name;  // for error messages
  // Its function's name in the library, after "<library name>_".
  const char* function;
  // Only reads, or only removes: may run when the server is out of memory
  // (maxmemory reached), where scripts that could grow the data are
  // refused.
  bool allow_oom;
  const char* body;
};

constexpr std::array<ScriptSource, kNumScripts> kScripts = {{
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
    {"prune", "prune", true, scripts::kPruneScript},
}};

// The function library every store loads: "sessiond_" and a digest of the
// scripts, so that sessiond builds with different scripts (during a rolling
// upgrade, say) each keep their own library on a shared server, and every
// process of one build shares one.
struct Library {
  std::string name;
  std::string text;                                // for FUNCTION LOAD
  std::array<std::string, kNumScripts> functions;  // for FCALL
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
  for (const ScriptSource& script : kScripts) {
    digest = Fnv1a64(script.function, digest);
    digest = Fnv1a64(script.allow_oom ? "oom" : "-", digest);
    digest = Fnv1a64(script.body, digest);
  }
  Library library;
  library.name = absl::StrCat("sessiond_", absl::Hex(digest, absl::kZeroPad16));
  library.text =
      absl::StrCat("#!lua name=", library.name, "\n", scripts::kPrelude);
  for (int s = 0; s < kNumScripts; ++s) {
    library.functions[s] =
        absl::StrCat(library.name, "_", kScripts[s].function);
    absl::StrAppend(&library.text, "redis.register_function{function_name='",
                    library.functions[s], "', flags={",
                    kScripts[s].allow_oom ? "'allow-oom'" : "",
                    "}, callback=function(_, args)\nbegin(args)\n",
                    kScripts[s].body, "end}\n");
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

int64_t DurationToMicros(absl::Duration d) {
  return absl::ToInt64Microseconds(d);
}
absl::Duration MicrosToDuration(int64_t us) {
  if (us == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteDuration();
  }
  return absl::Microseconds(us);
}

timeval TimeoutTimeval(absl::Duration d) {
  // hiredis treats a zero timeout as "block forever".
  return absl::ToTimeval(std::max(d, absl::Milliseconds(1)));
}

// ---------------------------------------------------------------------------
// Errors.

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

absl::string_view ReplyText(const redisReply* r) {
  return r->str != nullptr ? absl::string_view(r->str, r->len)
                           : absl::string_view();
}

// The server's error text, cut where a server might start echoing a
// command's arguments ("unknown command ..., with args beginning with: ").
std::string SanitizedServerError(absl::string_view error) {
  const size_t echo = error.find(", with args beginning with");
  if (echo != absl::string_view::npos) error = error.substr(0, echo);
  if (error.size() > 200) error = error.substr(0, 200);
  return std::string(error);
}

// Maps an error reply to the SessionStore error space.
absl::Status StatusFromErrorReply(absl::string_view error,
                                  absl::string_view what) {
  const size_t space = error.find(' ');
  const absl::string_view code = error.substr(0, space);
  const absl::string_view rest =
      space == absl::string_view::npos ? "" : error.substr(space + 1);
  // Raised by our scripts; the text after the code is fixed.
  if (code == "NOT_FOUND") {
    return absl::NotFoundError(absl::StrCat("valkey: ", what, ": ", rest));
  }
  if (code == "ABORTED") {
    return absl::AbortedError(absl::StrCat("valkey: ", what, ": ", rest));
  }
  if (code == "ALREADY_EXISTS") {
    return absl::AlreadyExistsError(absl::StrCat("valkey: ", what, ": ", rest));
  }
  if (code == "INVALID_ARGUMENT") {
    return absl::InvalidArgumentError(
        absl::StrCat("valkey: ", what, ": ", rest));
  }
  const std::string message =
      absl::StrCat("valkey: ", what, ": ", SanitizedServerError(error));
  // The server refused or could not run the command now, having written
  // nothing: loading its data, busy with a script, a replica, out of
  // memory, unable to persist (MISCONF), or short of replicas
  // (NOREPLICAS, min-replicas-to-write).
  if (code == "LOADING" || code == "BUSY" || code == "MASTERDOWN" ||
      code == "READONLY" || code == "TRYAGAIN" || code == "CLUSTERDOWN" ||
      code == "OOM" || code == "MISCONF" || code == "NOREPLICAS") {
    return absl::UnavailableError(message);
  }
  if (code == "NOAUTH" || code == "WRONGPASS" || code == "NOPERM") {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

// Keeps a status a SessionStore call may return; anything else becomes
// INTERNAL with the same message.
absl::Status ForCall(absl::Status s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kInternal:
      return s;
    default:
      return absl::InternalError(s.message());
  }
}

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

struct ConnectSettings {
  std::string host;
  int port = 0;
  int database = 0;
  std::string username;
  std::string password;  // empty: no AUTH
  absl::Duration connect_timeout;
  absl::Duration command_timeout;
};

// One blocking hiredis connection, used by one thread at a time.
//
// hiredis bounds each read(2) and write(2) by the socket timeout, not a whole
// command: a server that trickles its reply, a byte just before each
// timeout, would hold the caller forever. So while a command runs, the
// store's Watchdog watches our own dup() of the socket (socket_watchdog.h)
// and shuts it down at the command's deadline; the command then fails, and
// the connection is never used again.
class Connection {
 public:
  // Connects, then AUTH and SELECT as configured; all of it by `deadline`.
  // `watchdog` must outlive the connection.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectSettings& s, absl::Time deadline, Watchdog& watchdog) {
    const absl::Duration budget = deadline - absl::Now();
    if (budget <= absl::ZeroDuration()) {
      return absl::UnavailableError("valkey: connect: deadline exceeded");
    }
    // Bounded by the timeout as a whole: hiredis connects non-blocking and
    // polls.
    redisContext* ctx = redisConnectWithTimeout(
        s.host.c_str(), s.port,
        TimeoutTimeval(std::min(budget, s.connect_timeout)));
    if (ctx == nullptr) {
      return absl::InternalError("valkey: connect: out of memory");
    }
    if (ctx->err != 0) {
      absl::Status status = absl::UnavailableError(
          absl::StrCat("valkey: cannot connect to ", s.host, ":", s.port, ": ",
                       ctx->errstr));
      redisFree(ctx);
      return status;
    }
    const int watch_fd = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 0);
    if (watch_fd < 0) {
      const int error = errno;
      redisFree(ctx);
      return absl::UnavailableError(absl::StrCat(
          "valkey: connect: cannot duplicate the socket: ", strerror(error)));
    }
    std::unique_ptr<Connection> conn(
        new Connection(ctx, watch_fd, watchdog, s.command_timeout));
    redisEnableKeepAlive(ctx);
    // Each read(2) and write(2) waits at most command_timeout; the watchdog
    // bounds every command as a whole by its deadline.
    if (redisSetTimeout(ctx, TimeoutTimeval(s.command_timeout)) != REDIS_OK) {
      return absl::UnavailableError("valkey: connect: cannot set timeout");
    }
    if (!s.password.empty()) {
      std::vector<absl::string_view> auth = {"AUTH"};
      if (!s.username.empty()) auth.push_back(s.username);
      auth.push_back(s.password);
      absl::StatusOr<Reply> r = conn->Run(auth, deadline, "AUTH");
      if (!r.ok()) return r.status();
      if ((*r)->type == REDIS_REPLY_ERROR) {
        return absl::PermissionDeniedError(absl::StrCat(
            "valkey: AUTH",
            s.username.empty() ? ""
                               : absl::StrCat(" as user \"", s.username, "\""),
            " failed: ", SanitizedServerError(ReplyText(r->get()))));
      }
    }
    if (s.database != 0) {
      const std::string db = absl::StrCat(s.database);
      absl::StatusOr<Reply> r = conn->Run({"SELECT", db}, deadline, "SELECT");
      if (!r.ok()) return r.status();
      if ((*r)->type == REDIS_REPLY_ERROR) {
        absl::Status status = StatusFromErrorReply(
            ReplyText(r->get()), absl::StrCat("SELECT ", s.database));
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
    // Only now: no watch is armed (Run disarms before it returns), and
    // hiredis is done with the socket.
    ::close(watch_fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one command and reads its reply (which may be an error reply),
  // all by `deadline`. On a connection failure the connection is marked
  // broken and the status is UNAVAILABLE (INTERNAL for a protocol error).
  absl::StatusOr<Reply> Run(const std::vector<absl::string_view>& args,
                            absl::Time deadline, absl::string_view what) {
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

  bool healthy() const { return !broken_ && ctx_->err == 0; }

  // False if the server has closed this idle connection (or sent something
  // unasked): its socket is readable. Checked before reuse, so that after a
  // server restart no call fails on a connection that was already dead.
  bool StillOpen() const {
    if (!healthy()) return false;
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

// Up to `size` connections; idle ones are reused most recent first.
// `watchdog` (which bounds every command) must outlive the pool.
class Pool {
 public:
  Pool(ConnectSettings settings, int size, Watchdog& watchdog)
      : settings_(std::move(settings)), size_(size), watchdog_(watchdog) {}

  const ConnectSettings& settings() const { return settings_; }

  // A connection for one call. Waits for a free one until `wait_deadline`;
  // opening a new one must finish by `deadline`.
  absl::StatusOr<std::unique_ptr<Connection>> Acquire(absl::Time wait_deadline,
                                                      absl::Time deadline) {
    for (;;) {
      std::unique_ptr<Connection> conn;
      {
        absl::MutexLock lock(&mu_);
        if (!mu_.AwaitWithDeadline(absl::Condition(this, &Pool::CanAcquire),
                                   wait_deadline)) {
          return absl::UnavailableError(
              absl::StrCat("valkey: all ", size_,
                           " connections stayed busy; gave up waiting"));
        }
        if (!idle_.empty()) {
          conn = std::move(idle_.back());
          idle_.pop_back();
        } else {
          ++open_;  // reserve the slot; connect outside the lock
        }
      }
      if (conn != nullptr) {
        if (conn->StillOpen()) return conn;
        Discard(std::move(conn));
        continue;
      }
      absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(
          settings_,
          std::min(deadline, absl::Now() + settings_.connect_timeout),
          watchdog_);
      if (!opened.ok()) {
        absl::MutexLock lock(&mu_);
        --open_;
      }
      return opened;
    }
  }

  // Takes back a connection after a call: kept if healthy, else closed.
  void Release(std::unique_ptr<Connection> conn) {
    if (!conn->healthy()) {
      Discard(std::move(conn));
      return;
    }
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(conn));
  }

 private:
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < size_;
  }

  void Discard(std::unique_ptr<Connection> conn) {
    conn.reset();  // closes the socket outside the lock
    absl::MutexLock lock(&mu_);
    --open_;
  }

  const ConnectSettings settings_;
  const int size_;
  Watchdog& watchdog_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  // Idle, in use, or being opened.
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// A connection on loan from the pool for one call; returned when destroyed.
class Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<Connection> conn)
      : pool_(pool), conn_(std::move(conn)) {}
  Lease(Lease&&) = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (conn_ != nullptr) pool_->Release(std::move(conn_));
  }
  Connection& operator*() { return *conn_; }
  Connection* operator->() { return conn_.get(); }

 private:
  Pool* pool_;
  std::unique_ptr<Connection> conn_;
};

// ---------------------------------------------------------------------------
// Replies.

absl::Status Malformed(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("valkey: ", what, ": unexpected reply from the server"));
}

absl::StatusOr<SessionRecord> RecordFromReply(const redisReply* r,
                                              absl::string_view what) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 9) return Malformed(what);
  for (size_t k = 0; k < 9; ++k) {
    if (r->element[k]->type != REDIS_REPLY_STRING) return Malformed(what);
  }
  auto text = [r](size_t k) { return std::string(ReplyText(r->element[k])); };
  int64_t n[5];
  for (size_t k = 0; k < 5; ++k) {
    if (!absl::SimpleAtoi(ReplyText(r->element[4 + k]), &n[k])) {
      return Malformed(what);
    }
  }
  SessionRecord rec;
  rec.id = text(0);
  rec.token_hash = text(1);
  rec.user_id = text(2);
  rec.sealed_payload = text(3);
  rec.created_at = absl::FromUnixMicros(n[0]);
  rec.last_active_at = absl::FromUnixMicros(n[1]);
  rec.idle_timeout = MicrosToDuration(n[2]);
  rec.absolute_lifetime = MicrosToDuration(n[3]);
  rec.version = n[4];
  return rec;
}

absl::StatusOr<int64_t> IntegerFromReply(const redisReply* r,
                                         absl::string_view what) {
  if (r->type != REDIS_REPLY_INTEGER) return Malformed(what);
  return static_cast<int64_t>(r->integer);
}

// The smallest whole number of microseconds >= d (saturating).
int64_t CeilMicros(absl::Duration d) {
  int64_t us = absl::ToInt64Microseconds(d);
  if (us != std::numeric_limits<int64_t>::max() && absl::Microseconds(us) < d) {
    ++us;
  }
  return us;
}

absl::Status NotFound() {
  return absl::NotFoundError("valkey: no live session");
}

// ---------------------------------------------------------------------------
// The store.

class ValkeyStore final : public SessionStore {
 public:
  ValkeyStore(ConnectSettings settings, int pool_size,
              const std::string& key_prefix, const Clock* clock,
              const StoreOptions& options)
      : pool_(std::move(settings), pool_size, watchdog_),
        base_(absl::StrCat("{", key_prefix, "}:")),
        clock_(clock),
        cap_(absl::StrCat(options.max_sessions_per_user)) {}

  absl::string_view backend_name() const override { return "valkey"; }

  // Loads the scripts' library. Called once by OpenValkeyStore.
  absl::Status LoadScripts() {
    const absl::Time start = absl::Now();
    absl::StatusOr<Lease> lease = Acquire(start);
    if (!lease.ok()) return lease.status();
    return LoadLibrary(**lease, Deadline(start));
  }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& record) override {
    if (absl::Status s = CheckCreateArguments(record); !s.ok()) return s;
    std::vector<std::string> keys = {SessionKey(record.id),
                                     TokenKey(record.token_hash), ExpiryKey()};
    if (!record.user_id.empty()) keys.push_back(UserKey(record.user_id));
    absl::StatusOr<Reply> r = Eval(
        kCreate, keys,
        {record.id, record.token_hash, record.user_id, record.sealed_payload,
         absl::StrCat(DurationToMicros(record.idle_timeout)),
         absl::StrCat(DurationToMicros(record.absolute_lifetime)), cap_});
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), "create");
  }

  absl::StatusOr<SessionRecord> Load(absl::string_view token_hash) override {
    if (token_hash.size() != kTokenHashSize) return NotFound();
    absl::StatusOr<Reply> r =
        Eval(kLoad, {TokenKey(token_hash)}, {std::string(token_hash)});
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), "load");
  }

  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view token_hash, absl::Duration min_interval) override {
    if (token_hash.size() != kTokenHashSize) return NotFound();
    absl::StatusOr<Reply> r =
        Eval(kLoadAndTouch, {TokenKey(token_hash)},
             {std::string(token_hash), absl::StrCat(CeilMicros(min_interval))});
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), "load and touch");
  }

  absl::StatusOr<SessionRecord> Update(absl::string_view token_hash,
                                       const SessionUpdate& update) override {
    if (absl::Status s = CheckUpdateArguments(update); !s.ok()) return s;
    if (token_hash.size() != kTokenHashSize) return NotFound();
    std::vector<std::string> keys = {TokenKey(token_hash), ExpiryKey()};
    if (!update.user_id.empty()) keys.push_back(UserKey(update.user_id));
    auto micros_or_empty = [](const std::optional<absl::Duration>& d) {
      return d.has_value() ? absl::StrCat(DurationToMicros(*d)) : std::string();
    };
    absl::StatusOr<Reply> r =
        Eval(kUpdate, keys,
             {std::string(token_hash), update.user_id, update.sealed_payload,
              micros_or_empty(update.idle_timeout),
              micros_or_empty(update.absolute_lifetime),
              update.expected_version.has_value()
                  ? absl::StrCat(*update.expected_version)
                  : std::string(),
              cap_});
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), "update");
  }

  absl::StatusOr<SessionRecord> Cycle(
      absl::string_view old_token_hash, absl::string_view new_token_hash,
      const std::optional<std::string>& user_id) override {
    if (absl::Status s =
            CheckCycleArguments(old_token_hash, new_token_hash, user_id);
        !s.ok()) {
      return s;
    }
    if (old_token_hash.size() != kTokenHashSize) return NotFound();
    std::vector<std::string> keys = {TokenKey(old_token_hash),
                                     TokenKey(new_token_hash), ExpiryKey()};
    if (user_id.has_value() && !user_id->empty()) {
      keys.push_back(UserKey(*user_id));
    }
    absl::StatusOr<Reply> r =
        Eval(kCycle, keys,
             {std::string(old_token_hash), std::string(new_token_hash),
              user_id.has_value() ? "1" : "0", user_id.value_or(""), cap_});
    if (!r.ok()) return r.status();
    return RecordFromReply(r->get(), "cycle");
  }

  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view token_hash) override {
    if (token_hash.size() != kTokenHashSize) return 0;
    absl::StatusOr<Reply> r =
        Eval(kDeleteByTokenHash, {TokenKey(token_hash), ExpiryKey()},
             {std::string(token_hash)});
    if (!r.ok()) return r.status();
    return IntegerFromReply(r->get(), "delete by token hash");
  }

  absl::StatusOr<int64_t> DeleteById(absl::string_view id) override {
    if (!IsStorableText(id)) return 0;  // no stored id is like it
    absl::StatusOr<Reply> r =
        Eval(kDeleteById, {SessionKey(id), ExpiryKey()}, {std::string(id)});
    if (!r.ok()) return r.status();
    return IntegerFromReply(r->get(), "delete by id");
  }

  // In batches, one script each (kDeleteForUserBatchSize): each batch is
  // atomic, the call as a whole is not. The call ends with a batch that
  // leaves none of the user's sessions but the kept one, and the count is
  // exact: each live session removed is counted by the batch that removed
  // it (sessions written for the user while the call runs included).
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view user_id,
                                        absl::string_view except_id) override {
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (!IsStorableText(user_id)) return 0;  // no stored user is like it
    const std::vector<std::string> keys = {UserKey(user_id), ExpiryKey()};
    const std::vector<std::string> args = {
        std::string(user_id), std::string(except_id),
        absl::StrCat(kDeleteForUserBatchSize)};
    int64_t removed = 0;
    for (;;) {
      absl::StatusOr<Reply> r = Eval(kDeleteForUser, keys, args);
      if (!r.ok()) return r.status();
      const redisReply* counts = r->get();
      if (counts->type != REDIS_REPLY_ARRAY || counts->elements != 2 ||
          counts->element[0]->type != REDIS_REPLY_INTEGER ||
          counts->element[1]->type != REDIS_REPLY_INTEGER) {
        return Malformed("delete for user");
      }
      removed += counts->element[0]->integer;
      if (counts->element[1]->integer != 0) return removed;
    }
  }

  absl::StatusOr<SessionPage> ListForUser(
      absl::string_view user_id, int limit,
      const std::optional<ListCursor>& after) override {
    if (absl::Status s = CheckPageLimit(limit); !s.ok()) return s;
    if (absl::Status s = CheckUserIdGiven(user_id); !s.ok()) return s;
    if (!IsStorableText(user_id)) return SessionPage();  // no such user
    // The script compares whole microseconds. A cursor with a finer part
    // lies strictly between two of them: everything at or before the
    // earlier one follows it.
    std::string mode, cursor_us, cursor_id;
    if (after.has_value()) {
      const int64_t us = absl::ToUnixMicros(after->last_active_at);
      mode = absl::FromUnixMicros(us) == after->last_active_at ? "lt" : "le";
      cursor_us = absl::StrCat(us);
      cursor_id = after->id;
    }
    // The script looks at no more than this many index entries. When it
    // meets so many dead ones (of expired or vanished sessions) that its
    // page is not full by then, it removes them and says so, and runs again
    // from the same position: at least kListScanSlack fewer entries to look
    // at each time. The page comes from one script, so it is consistent.
    const int64_t budget = int64_t{limit} + 1 + kListScanSlack;
    const std::vector<std::string> keys = {UserKey(user_id)};
    const std::vector<std::string> args = {
        std::string(user_id), absl::StrCat(limit), mode, cursor_us, cursor_id,
        absl::StrCat(budget)};
    absl::StatusOr<Reply> r;
    const redisReply* list = nullptr;
    for (;;) {
      r = Eval(kListForUser, keys, args);
      if (!r.ok()) return r.status();
      const redisReply* result = r->get();
      if (result->type != REDIS_REPLY_ARRAY || result->elements < 1 ||
          result->element[0]->type != REDIS_REPLY_INTEGER) {
        return Malformed("list for user");
      }
      if (result->element[0]->integer == 0) continue;  // incomplete
      if (result->elements != 2) return Malformed("list for user");
      list = result->element[1];
      break;
    }
    if (list->type != REDIS_REPLY_ARRAY) return Malformed("list for user");
    SessionPage page;
    page.sessions.reserve(std::min(list->elements, static_cast<size_t>(limit)));
    for (size_t k = 0; k < list->elements; ++k) {
      absl::StatusOr<SessionRecord> rec =
          RecordFromReply(list->element[k], "list for user");
      if (!rec.ok()) return rec.status();
      page.sessions.push_back(*std::move(rec));
    }
    if (page.sessions.size() > static_cast<size_t>(limit)) {
      page.sessions.resize(static_cast<size_t>(limit));
      const SessionRecord& last = page.sessions.back();
      page.next = ListCursor{last.last_active_at, last.id};
    }
    return page;
  }

  absl::StatusOr<int64_t> PruneExpired() override {
    int64_t removed = 0;
    while (true) {
      absl::StatusOr<Reply> r =
          Eval(kPrune, {ExpiryKey()}, {absl::StrCat(kPruneBatchSize)});
      if (!r.ok()) return r.status();
      const redisReply* counts = r->get();
      if (counts->type != REDIS_REPLY_ARRAY || counts->elements != 2 ||
          counts->element[0]->type != REDIS_REPLY_INTEGER ||
          counts->element[1]->type != REDIS_REPLY_INTEGER) {
        return Malformed("prune");
      }
      removed += counts->element[0]->integer;
      if (counts->element[1]->integer < kPruneBatchSize) return removed;
    }
  }

  absl::Status Ping() override {
    const absl::Time start = absl::Now();
    absl::StatusOr<Lease> lease = Acquire(start);
    if (!lease.ok()) return ForCall(lease.status());
    absl::StatusOr<Reply> r =
        (*lease)->Run({"PING"}, CommandDeadline(Deadline(start)), "ping");
    if (!r.ok()) return ForCall(r.status());
    if ((*r)->type == REDIS_REPLY_ERROR) {
      return ForCall(StatusFromErrorReply(ReplyText(r->get()), "ping"));
    }
    if ((*r)->type != REDIS_REPLY_STATUS || ReplyText(r->get()) != "PONG") {
      return Malformed("ping");
    }
    return absl::OkStatus();
  }

 private:
  absl::Duration command_timeout() const {
    return pool_.settings().command_timeout;
  }

  // A call started at `start` must be done by then.
  absl::Time Deadline(absl::Time start) const {
    return start + pool_.settings().connect_timeout + command_timeout();
  }

  // When the next command of a call with this deadline must be done.
  absl::Time CommandDeadline(absl::Time deadline) const {
    return std::min(deadline, absl::Now() + command_timeout());
  }

  absl::StatusOr<Lease> Acquire(absl::Time start) {
    const absl::Time deadline = Deadline(start);
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        pool_.Acquire(std::min(start + command_timeout(), deadline), deadline);
    if (!conn.ok()) return conn.status();
    return Lease(&pool_, *std::move(conn));
  }

  // FUNCTION LOAD of the library on `conn`; a server that has it already
  // (another sessiond of this build loaded it) is as good.
  absl::Status LoadLibrary(Connection& conn, absl::Time deadline) {
    const Library& library = TheLibrary();
    constexpr absl::string_view what = "load functions";
    absl::StatusOr<Reply> r = conn.Run({"FUNCTION", "LOAD", library.text},
                                       CommandDeadline(deadline), what);
    if (!r.ok()) return r.status();
    const absl::string_view text = ReplyText(r->get());
    if ((*r)->type == REDIS_REPLY_ERROR) {
      if (absl::StrContains(text, "already exists")) return absl::OkStatus();
      return StatusFromErrorReply(text, what);
    }
    if ((*r)->type != REDIS_REPLY_STRING || text != library.name) {
      return Malformed(what);
    }
    return absl::OkStatus();
  }

  // Runs `script` with FCALL (args = base, now, args...), loading the
  // library again and retrying once if the server does not have it (a
  // restart without persistence, FUNCTION FLUSH). Returns a reply that is
  // not an error.
  // The clock is read once a connection is in hand, as late as the call
  // allows (see valkey_scripts.h on clocks read before the server
  // serialises calls).
  absl::StatusOr<Reply> Eval(Script script,
                             const std::vector<std::string>& keys,
                             const std::vector<std::string>& args) {
    const absl::string_view what = kScripts[script].name;
    const absl::Time start = absl::Now();
    const absl::Time deadline = Deadline(start);
    absl::StatusOr<Lease> lease = Acquire(start);
    if (!lease.ok()) return ForCall(lease.status());
    const std::string now = absl::StrCat(NowMicros());
    const std::string num_keys = absl::StrCat(keys.size());
    std::vector<absl::string_view> argv;
    argv.reserve(5 + keys.size() + args.size());
    argv.push_back("FCALL");
    argv.push_back(TheLibrary().functions[script]);
    argv.push_back(num_keys);
    for (const std::string& k : keys) argv.push_back(k);
    argv.push_back(base_);
    argv.push_back(now);
    for (const std::string& a : args) argv.push_back(a);
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<Reply> reply =
          (*lease)->Run(argv, CommandDeadline(deadline), what);
      if (!reply.ok()) return ForCall(reply.status());
      if ((*reply)->type != REDIS_REPLY_ERROR) return reply;
      const absl::string_view error = ReplyText(reply->get());
      if (attempt == 0 && absl::StartsWith(error, "ERR Function not found")) {
        if (absl::Status s = LoadLibrary(**lease, deadline); !s.ok()) {
          return ForCall(s);
        }
        continue;
      }
      return ForCall(StatusFromErrorReply(error, what));
    }
  }

  int64_t NowMicros() const { return absl::ToUnixMicros(clock_->Now()); }

  std::string SessionKey(absl::string_view id) const {
    return absl::StrCat(base_, "s:", id);
  }
  std::string TokenKey(absl::string_view token_hash) const {
    return absl::StrCat(base_, "t:", token_hash);
  }
  std::string UserKey(absl::string_view user_id) const {
    return absl::StrCat(base_, "u:", user_id);
  }
  std::string ExpiryKey() const { return absl::StrCat(base_, "x"); }

  // Bounds every command of every connection; outlives the pool.
  Watchdog watchdog_;
  Pool pool_;
  const std::string base_;  // "{prefix}:"
  const Clock* const clock_;
  const std::string cap_;  // max_sessions_per_user, as script argument
};

absl::StatusOr<std::string> ReadPassword(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  if (in) content << in.rdbuf();
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("valkey: cannot read password file \"", path, "\""));
  }
  std::string password = content.str();
  while (!password.empty() &&
         (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("valkey: password file \"", path, "\" is empty"));
  }
  return password;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> OpenValkeyStore(
    const ValkeyOptions& options, const Clock* clock,
    const StoreOptions& store_options) {
  auto invalid = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("valkey: ", message));
  };
  if (clock == nullptr) return invalid("clock must not be null");
  if (store_options.max_sessions_per_user < 0) {
    return invalid("max_sessions_per_user must not be negative");
  }
  if (options.host.empty()) return invalid("host must not be empty");
  if (options.port <= 0 || options.port > 65535) {
    return invalid("port must be in 1..65535");
  }
  if (options.database < 0) return invalid("database must not be negative");
  if (options.pool_size <= 0) return invalid("pool_size must be positive");
  for (absl::Duration d : {options.connect_timeout, options.command_timeout}) {
    if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return invalid("timeouts must be positive and finite");
    }
  }
  if (options.key_prefix.empty() ||
      options.key_prefix.find_first_of("{}") != std::string::npos) {
    return invalid("key_prefix must be non-empty, without '{' or '}'");
  }
  if (!options.username.empty() && options.password_file.empty()) {
    return invalid("username needs a password_file");
  }
  ConnectSettings settings;
  settings.host = options.host;
  settings.port = options.port;
  settings.database = options.database;
  settings.username = options.username;
  settings.connect_timeout = options.connect_timeout;
  settings.command_timeout = options.command_timeout;
  if (!options.password_file.empty()) {
    absl::StatusOr<std::string> password = ReadPassword(options.password_file);
    if (!password.ok()) return password.status();
    settings.password = *std::move(password);
  }
  auto store =
      std::make_unique<ValkeyStore>(std::move(settings), options.pool_size,
                                    options.key_prefix, clock, store_options);
  if (absl::Status s = store->LoadScripts(); !s.ok()) return s;
  return std::unique_ptr<SessionStore>(std::move(store));
}

}  // namespace sessiond::storage
