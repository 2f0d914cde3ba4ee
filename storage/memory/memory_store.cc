#include "storage/memory/memory_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/backend.h"
#include "storage/session_record.h"

namespace sessiond::storage {
namespace {

constexpr int kShards = 64;  // per kind; one bit each in a uint64_t mask

bool Overlaps(absl::string_view s, const char* begin, const char* end) {
  if (s.empty()) return false;
  const std::less<const char*> less;
  return less(s.data(), end) && less(begin, s.data() + s.size());
}

void CopyBytes(char* dst, absl::string_view src) {
  if (!src.empty()) std::memcpy(dst, src.data(), src.size());
}

// The key of a user's list: tenant, NUL, user_id (neither holds a NUL).
std::string UserKey(absl::string_view tenant, absl::string_view user) {
  std::string key;
  key.reserve(tenant.size() + 1 + user.size());
  key.append(tenant.data(), tenant.size());
  key.push_back('\0');
  key.append(user.data(), user.size());
  return key;
}

// One session in one heap block: this header, then the bytes of id, tenant,
// a NUL, user_id and sealed_payload back to back (so that tenant, NUL and
// user_id are the user's UserKey). Fields are guarded as README.md
// describes; the links are guarded by the user shard.
class Entry {
 public:
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;

  // The size of the block New allocates for this content: the header and
  // the bytes, rounded to malloc's 16-byte granularity (the slack is free
  // room for a slightly larger payload later).
  static size_t BlockSize(absl::string_view tenant, absl::string_view id,
                          absl::string_view user, absl::string_view payload) {
    const size_t bytes =
        id.size() + tenant.size() + 1 + user.size() + payload.size();
    return (sizeof(Entry) + bytes + 15) & ~size_t{15};
  }

  static Entry* New(absl::string_view tenant, absl::string_view id,
                    absl::string_view token_hash, absl::string_view user,
                    absl::string_view payload) {
    const size_t block = BlockSize(tenant, id, user, payload);
    void* mem = ::operator new(block);
    Entry* e = new (mem) Entry();
    e->capacity_ = static_cast<uint32_t>(block - sizeof(Entry));
    e->id_len_ = static_cast<uint32_t>(id.size());
    e->tenant_len_ = static_cast<uint32_t>(tenant.size());
    CopyBytes(e->data(), id);
    CopyBytes(e->data() + e->id_len_, tenant);
    e->data()[e->id_len_ + e->tenant_len_] = '\0';
    e->set_token_hash(token_hash);
    e->WriteContent(user, payload);
    return e;
  }

  // A new block with e's id, hash, times and version and the given content.
  // Does not free e; `user`/`payload` may point into e.
  static Entry* CopyWithContent(const Entry* e, absl::string_view user,
                                absl::string_view payload) {
    Entry* n = New(e->tenant(), e->id(), e->token_hash(), user, payload);
    n->created_us = e->created_us;
    n->last_active_us = e->last_active_us;
    n->idle_timeout = e->idle_timeout;
    n->absolute_lifetime = e->absolute_lifetime;
    n->version = e->version;
    return n;
  }

  static void Free(Entry* e) {
    e->~Entry();
    ::operator delete(e);
  }

  // What the entry holds in memory: its block, and its share of the three
  // indexes (hash-set and hash-map slots, a user key), estimated.
  int64_t HeldBytes() const {
    return static_cast<int64_t>(sizeof(Entry) + capacity_) + kIndexBytes;
  }
  static constexpr int64_t kIndexBytes = 128;

  absl::string_view id() const { return {data(), id_len_}; }
  absl::string_view tenant() const { return {data() + id_len_, tenant_len_}; }
  absl::string_view token_hash() const { return {token_hash_, kTokenHashSize}; }
  absl::string_view user_id() const {
    return {data() + user_offset(), user_len_};
  }
  // UserKey(tenant(), user_id()), in place; empty for an anonymous
  // session, which is in no user's list.
  absl::string_view user_key() const {
    if (user_len_ == 0) return {};
    return {data() + id_len_, tenant_len_ + 1 + user_len_};
  }
  absl::string_view payload() const {
    return {data() + user_offset() + user_len_, payload_len_};
  }
  void set_token_hash(absl::string_view h) {
    std::memcpy(token_hash_, h.data(), kTokenHashSize);
  }

  // Whether SetContent may rewrite this block in place (it fits, and does
  // not waste more than half the block).
  bool FitsInPlace(absl::string_view user, absl::string_view payload) const {
    const size_t need = user_offset() + user.size() + payload.size();
    return need <= capacity_ && need * 2 >= capacity_;
  }
  // Requires FitsInPlace. `user`/`payload` may point into this block.
  void SetContent(absl::string_view user, absl::string_view payload) {
    const char* begin = data();
    const char* end = begin + capacity_;
    std::string user_copy, payload_copy;
    if (Overlaps(user, begin, end)) {
      user_copy.assign(user.data(), user.size());
      user = user_copy;
    }
    if (Overlaps(payload, begin, end)) {
      payload_copy.assign(payload.data(), payload.size());
      payload = payload_copy;
    }
    WriteContent(user, payload);
  }

  absl::Time created_at() const { return absl::FromUnixMicros(created_us); }
  absl::Time last_active_at() const {
    return absl::FromUnixMicros(last_active_us);
  }
  absl::Time ExpiresAt() const {
    return std::min(last_active_at() + idle_timeout,
                    created_at() + absolute_lifetime);
  }
  bool IsLiveAt(absl::Time now) const { return now < ExpiresAt(); }

  SessionRecord ToRecord() const {
    SessionRecord r;
    r.tenant = std::string(tenant());
    r.id = std::string(id());
    r.token_hash = std::string(token_hash());
    r.user_id = std::string(user_id());
    r.sealed_payload = std::string(payload());
    r.created_at = created_at();
    r.last_active_at = last_active_at();
    r.idle_timeout = idle_timeout;
    r.absolute_lifetime = absolute_lifetime;
    r.version = version;
    return r;
  }

  // Times in whole microseconds since the Unix epoch.
  int64_t created_us = 0;
  int64_t last_active_us = 0;
  // Whole microseconds (TruncateDurationToMicros), like the times.
  absl::Duration idle_timeout;
  absl::Duration absolute_lifetime;
  int64_t version = 0;
  // The user's list (only while user_id is non-empty).
  Entry* user_prev = nullptr;
  Entry* user_next = nullptr;

 private:
  Entry() = default;
  ~Entry() = default;

  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  size_t user_offset() const { return id_len_ + tenant_len_ + 1; }

  // Sources must not overlap this block.
  void WriteContent(absl::string_view user, absl::string_view payload) {
    user_len_ = static_cast<uint32_t>(user.size());
    payload_len_ = static_cast<uint32_t>(payload.size());
    CopyBytes(data() + user_offset(), user);
    CopyBytes(data() + user_offset() + user_len_, payload);
  }

  char token_hash_[kTokenHashSize] = {};
  uint32_t id_len_ = 0;
  uint32_t tenant_len_ = 0;
  uint32_t user_len_ = 0;
  uint32_t payload_len_ = 0;
  uint32_t capacity_ = 0;  // bytes available after the header
};

// Transparent hashing/equality of Entry* by one of its keys, so that the
// index sets store only a pointer per session and are searched by key.
template <absl::string_view (Entry::*Key)() const>
struct ByKey {
  using is_transparent = void;
  static absl::string_view KeyOf(absl::string_view s) { return s; }
  static absl::string_view KeyOf(const Entry* e) { return (e->*Key)(); }
  template <typename T>
  size_t operator()(const T& t) const {
    return absl::Hash<absl::string_view>()(KeyOf(t));
  }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return KeyOf(a) == KeyOf(b);
  }
};
using TokenIndex = absl::flat_hash_set<Entry*, ByKey<&Entry::token_hash>,
                                       ByKey<&Entry::token_hash>>;
using IdIndex =
    absl::flat_hash_set<Entry*, ByKey<&Entry::id>, ByKey<&Entry::id>>;

struct alignas(64) TokenShard {
  mutable absl::Mutex mu;
  TokenIndex entries;  // owns the entries
};
struct alignas(64) IdShard {
  mutable absl::Mutex mu;
  IdIndex ids;
};
struct alignas(64) UserShard {
  mutable absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry*> heads;  // UserKey -> first entry
};

// Shard numbers; the salt keeps them independent of the in-shard hashing.
int ShardOf(uint8_t salt, absl::string_view key) {
  return static_cast<int>(absl::HashOf(salt, key) % kShards);
}
int TokenShardOf(absl::string_view h) { return ShardOf(1, h); }
int IdShardOf(absl::string_view id) { return ShardOf(2, id); }
int UserShardOf(absl::string_view user_key) { return ShardOf(3, user_key); }

uint64_t Bit(int shard) { return uint64_t{1} << shard; }

// A set of shards of each kind.
struct LockSet {
  uint64_t users = 0;
  uint64_t ids = 0;
  uint64_t tokens = 0;

  bool empty() const { return (users | ids | tokens) == 0; }
  LockSet& operator|=(const LockSet& o) {
    users |= o.users;
    ids |= o.ids;
    tokens |= o.tokens;
    return *this;
  }
};

// A status the retry loop discards; never returned to callers.
absl::Status RetryWithMoreLocks() { return absl::InternalError("retry"); }

absl::Status NotFound() { return absl::NotFoundError("no such session"); }

// Whether `e` lists before `f` (ListsBefore).
bool EntryListsBefore(const Entry* e, const Entry* f) {
  return ListsBefore(e->last_active_at(), e->id(), f->last_active_at(),
                     f->id());
}

class MemoryBackend final : public StorageBackend {
 public:
  MemoryBackend(const Clock* clock, const MemoryOptions& options)
      : clock_(clock), max_bytes_(options.max_bytes) {}

  ~MemoryBackend() override {
    for (TokenShard& s : tokens_) {
      for (Entry* e : s.entries) Entry::Free(e);
    }
  }

  absl::string_view name() const override { return "memory"; }

  absl::StatusOr<SessionRecord> Create(const SessionRecord& record,
                                       const TenantLimits& limits) override;
  absl::StatusOr<SessionRecord> Load(absl::string_view tenant,
                                     absl::string_view token_hash) override;
  absl::StatusOr<SessionRecord> LoadAndTouch(
      absl::string_view tenant, absl::string_view token_hash,
      absl::Duration min_interval) override;
  absl::StatusOr<SessionRecord> Update(absl::string_view tenant,
                                       absl::string_view token_hash,
                                       const SessionUpdate& update) override;
  absl::StatusOr<SessionRecord> Cycle(absl::string_view tenant,
                                      absl::string_view old_token_hash,
                                      const SessionCycle& cycle,
                                      const TenantLimits& limits) override;
  absl::StatusOr<int64_t> DeleteByTokenHash(
      absl::string_view tenant, absl::string_view token_hash) override;
  absl::StatusOr<int64_t> DeleteById(absl::string_view tenant,
                                     absl::string_view id) override;
  absl::StatusOr<int64_t> DeleteForUser(absl::string_view tenant,
                                        absl::string_view user_id,
                                        absl::string_view except_id) override;
  absl::StatusOr<std::vector<SessionRecord>> ListForUser(
      absl::string_view tenant, absl::string_view user_id, int count,
      int64_t max_bytes, const std::optional<ListCursor>& after) override;
  absl::StatusOr<int64_t> CountLive(absl::string_view tenant) override;
  absl::StatusOr<int64_t> PruneExpired(
      std::optional<absl::string_view> tenant) override;
  absl::Status Ping() override { return absl::OkStatus(); }

 private:
  // Holds the locks of a LockSet (taken in the documented order) for its
  // lifetime, and collects the shards a call finds it needs but lacks.
  class Locks {
   public:
    Locks(const MemoryBackend& store, const LockSet& set, bool exclusive)
        : store_(store), held_(set), exclusive_(exclusive) {
      ForEach(held_.users, [&](int i) { Acquire(store_.users_[i].mu); });
      ForEach(held_.ids, [&](int i) { Acquire(store_.ids_[i].mu); });
      ForEach(held_.tokens, [&](int i) { Acquire(store_.tokens_[i].mu); });
    }
    ~Locks() {
      ForEach(held_.tokens, [&](int i) { Release(store_.tokens_[i].mu); });
      ForEach(held_.ids, [&](int i) { Release(store_.ids_[i].mu); });
      ForEach(held_.users, [&](int i) { Release(store_.users_[i].mu); });
    }
    Locks(const Locks&) = delete;
    Locks& operator=(const Locks&) = delete;

    // Each adds the shard of `key` to the set the call wants: returns true
    // if it is held, else records it in missing() and returns false. An
    // empty user key (an anonymous session's) needs no lock.
    bool WantUser(absl::string_view user_key) {
      return user_key.empty() || Want(&LockSet::users, UserShardOf(user_key));
    }
    bool WantId(absl::string_view id) {
      return Want(&LockSet::ids, IdShardOf(id));
    }
    bool WantToken(absl::string_view h) {
      return Want(&LockSet::tokens, TokenShardOf(h));
    }
    // All three shards of e (no short-circuit: records every missing one).
    bool WantAll(const Entry* e) {
      const bool u = WantUser(e->user_key());
      const bool i = WantId(e->id());
      const bool t = WantToken(e->token_hash());
      return u && i && t;
    }

    bool complete() const { return missing_.empty(); }
    const LockSet& held() const { return held_; }
    const LockSet& missing() const { return missing_; }

   private:
    template <typename Fn>
    static void ForEach(uint64_t mask, Fn fn) {
      for (; mask != 0; mask &= mask - 1) fn(__builtin_ctzll(mask));
    }
    void Acquire(absl::Mutex& mu) {
      if (exclusive_) {
        mu.Lock();
      } else {
        mu.ReaderLock();
      }
    }
    void Release(absl::Mutex& mu) {
      if (exclusive_) {
        mu.Unlock();
      } else {
        mu.ReaderUnlock();
      }
    }
    bool Want(uint64_t LockSet::*kind, int shard) {
      if (held_.*kind & Bit(shard)) return true;
      missing_.*kind |= Bit(shard);
      return false;
    }

    const MemoryBackend& store_;
    const LockSet held_;
    const bool exclusive_;
    LockSet missing_;
  };

  absl::Time Now() const { return TruncateToMicros(clock_->Now()); }

  // Runs `body(locks, now)` under `want` (growing it and retrying while the
  // body reports missing shards). The body must not write unless
  // locks.complete(), and then its result is final.
  template <typename Body>
  auto WithLocks(LockSet want, bool exclusive, Body body)
      -> decltype(body(std::declval<Locks&>(), absl::Time())) {
    for (;;) {
      Locks locks(*this, want, exclusive);
      auto result = body(locks, Now());
      if (locks.complete()) return result;
      want |= locks.missing();
    }
  }

  // Lookups; the key's shard must be held.
  Entry* FindByToken(absl::string_view h) const {
    const TokenIndex& index = tokens_[TokenShardOf(h)].entries;
    auto it = index.find(h);
    return it == index.end() ? nullptr : *it;
  }
  Entry* FindById(absl::string_view id) const {
    const IdIndex& index = ids_[IdShardOf(id)].ids;
    auto it = index.find(id);
    return it == index.end() ? nullptr : *it;
  }
  Entry* FirstOfUser(absl::string_view user_key) const {
    const auto& heads = users_[UserShardOf(user_key)].heads;
    auto it = heads.find(user_key);
    return it == heads.end() ? nullptr : it->second;
  }

  // Wants the shards of all sessions of the user `user_key` names (token
  // shards, and id shards if `ids`), as Locks::Want* do. Does nothing until
  // the user's shard is held.
  static void WantSessionsOf(const MemoryBackend& store, Locks& locks,
                             absl::string_view user_key, bool ids) {
    if (user_key.empty() || !locks.WantUser(user_key)) return;
    for (Entry* e = store.FirstOfUser(user_key); e != nullptr;
         e = e->user_next) {
      if (ids) locks.WantId(e->id());
      locks.WantToken(e->token_hash());
    }
  }

  // Index maintenance; all of the entry's shards must be held exclusively.
  void Link(Entry* e) {
    held_bytes_.fetch_add(e->HeldBytes(), std::memory_order_relaxed);
    tokens_[TokenShardOf(e->token_hash())].entries.insert(e);
    ids_[IdShardOf(e->id())].ids.insert(e);
    LinkUser(e);
  }
  void Unlink(Entry* e) {
    held_bytes_.fetch_sub(e->HeldBytes(), std::memory_order_relaxed);
    UnlinkUser(e);
    ids_[IdShardOf(e->id())].ids.erase(e->id());
    tokens_[TokenShardOf(e->token_hash())].entries.erase(e->token_hash());
  }
  void LinkUser(Entry* e) {
    e->user_prev = e->user_next = nullptr;
    if (e->user_key().empty()) return;
    auto& heads = users_[UserShardOf(e->user_key())].heads;
    auto it = heads.find(e->user_key());
    if (it == heads.end()) {
      heads.emplace(std::string(e->user_key()), e);
      return;
    }
    e->user_next = it->second;
    it->second->user_prev = e;
    it->second = e;
  }
  void UnlinkUser(Entry* e) {
    if (e->user_key().empty()) return;
    if (e->user_prev != nullptr) {
      e->user_prev->user_next = e->user_next;
    } else {
      auto& heads = users_[UserShardOf(e->user_key())].heads;
      auto it = heads.find(e->user_key());
      if (e->user_next != nullptr) {
        it->second = e->user_next;
      } else {
        heads.erase(it);
      }
    }
    if (e->user_next != nullptr) e->user_next->user_prev = e->user_prev;
    e->user_prev = e->user_next = nullptr;
  }
  void Destroy(Entry* e) {
    Unlink(e);
    Entry::Free(e);
  }
  // Sets user_id and payload (either may point into e); returns the entry,
  // which may have moved.
  Entry* Replace(Entry* e, absl::string_view user, absl::string_view payload) {
    if (e->FitsInPlace(user, payload)) {
      const bool user_changed = e->user_id() != user;
      if (user_changed) UnlinkUser(e);
      e->SetContent(user, payload);
      if (user_changed) LinkUser(e);
      return e;
    }
    Unlink(e);
    Entry* n = Entry::CopyWithContent(e, user, payload);
    Entry::Free(e);
    Link(n);
    return n;
  }

  // Evicts keep's user's other sessions, least recently active first, until
  // at most `cap` remain (keep included); drops that user's expired
  // entries. Requires the user's shard and all of its sessions' shards.
  void EnforceCap(Entry* keep, int cap, absl::Time now) {
    std::vector<Entry*> live, expired;
    for (Entry* e = FirstOfUser(keep->user_key()); e != nullptr;
         e = e->user_next) {
      if (e == keep) continue;
      (e->IsLiveAt(now) ? live : expired).push_back(e);
    }
    for (Entry* e : expired) Destroy(e);
    const size_t allowed = static_cast<size_t>(cap - 1);
    if (live.size() <= allowed) return;
    // Least recently active first: the reverse of listing order.
    std::sort(live.begin(), live.end(), [](const Entry* a, const Entry* b) {
      return EntryListsBefore(b, a);
    });
    for (size_t i = 0; i < live.size() - allowed; ++i) Destroy(live[i]);
  }

  // Whether `e` exists and is the tenant's live session.
  static bool IsLiveIn(const Entry* e, absl::string_view tenant,
                       absl::Time now) {
    return e != nullptr && e->tenant() == tenant && e->IsLiveAt(now);
  }

  // RESOURCE_EXHAUSTED if storing `record` would take the store past
  // max_bytes_ (0: no bound). Concurrent writes may each pass the check
  // and overshoot it by their own growth.
  absl::Status CheckRoomFor(const SessionRecord& record) const {
    return CheckRoomToGrow(
        static_cast<int64_t>(Entry::BlockSize(
            record.tenant, record.id, record.user_id, record.sealed_payload)) +
        Entry::kIndexBytes);
  }
  // The same for Replace(e, user, payload), which may move e to a larger
  // block.
  absl::Status CheckRoomToReplace(const Entry* e, absl::string_view user,
                                  absl::string_view payload) const {
    if (e->FitsInPlace(user, payload)) return absl::OkStatus();
    return CheckRoomToGrow(static_cast<int64_t>(Entry::BlockSize(
                               e->tenant(), e->id(), user, payload)) +
                           Entry::kIndexBytes - e->HeldBytes());
  }
  absl::Status CheckRoomToGrow(int64_t need) const {
    if (max_bytes_ == 0 || need <= 0) return absl::OkStatus();
    const int64_t held = held_bytes_.load(std::memory_order_relaxed);
    if (held + need <= max_bytes_) return absl::OkStatus();
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory: the store holds ", held, " of its ", max_bytes_,
        " bytes (--memory_max_bytes); sessions must expire or be deleted "
        "first"));
  }

  const Clock* const clock_;
  const int64_t max_bytes_;
  // What the linked entries hold (Entry::HeldBytes), for max_bytes_.
  std::atomic<int64_t> held_bytes_{0};
  std::array<UserShard, kShards> users_;
  std::array<IdShard, kShards> ids_;
  std::array<TokenShard, kShards> tokens_;
};

absl::StatusOr<SessionRecord> MemoryBackend::Create(
    const SessionRecord& record, const TenantLimits& limits) {
  const std::string user_key =
      record.user_id.empty() ? "" : UserKey(record.tenant, record.user_id);
  LockSet want;
  if (!user_key.empty()) want.users = Bit(UserShardOf(user_key));
  want.ids = Bit(IdShardOf(record.id));
  want.tokens = Bit(TokenShardOf(record.token_hash));
  const int cap = limits.max_sessions_per_user;
  const bool capped = cap > 0 && !user_key.empty();
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<SessionRecord> {
        // Ids and token hashes are unique across tenants.
        Entry* by_id = FindById(record.id);
        Entry* by_token = FindByToken(record.token_hash);
        if (by_id != nullptr && by_id->IsLiveAt(now)) {
          return absl::AlreadyExistsError("id in use");
        }
        if (by_token != nullptr && by_token->IsLiveAt(now)) {
          return absl::AlreadyExistsError("token hash in use");
        }
        // Expired holders of the keys are removed in the same step.
        if (by_id != nullptr) locks.WantAll(by_id);
        if (by_token != nullptr) locks.WantAll(by_token);
        if (capped) WantSessionsOf(*this, locks, user_key, /*ids=*/true);
        if (!locks.complete()) return RetryWithMoreLocks();

        if (by_id != nullptr) Destroy(by_id);
        if (by_token != nullptr && by_token != by_id) Destroy(by_token);
        if (absl::Status s = CheckRoomFor(record); !s.ok()) return s;
        // NewSession, in place.
        Entry* e = Entry::New(record.tenant, record.id, record.token_hash,
                              record.user_id, record.sealed_payload);
        e->created_us = e->last_active_us = absl::ToUnixMicros(now);
        e->idle_timeout = record.idle_timeout;
        e->absolute_lifetime = record.absolute_lifetime;
        e->version = 1;
        Link(e);
        if (capped) EnforceCap(e, cap, now);
        return e->ToRecord();
      });
}

absl::StatusOr<SessionRecord> MemoryBackend::Load(
    absl::string_view tenant, absl::string_view token_hash) {
  const TokenShard& shard = tokens_[TokenShardOf(token_hash)];
  absl::ReaderMutexLock lock(&shard.mu);
  const Entry* e = FindByToken(token_hash);
  if (!IsLiveIn(e, tenant, Now())) return NotFound();
  return e->ToRecord();
}

absl::StatusOr<SessionRecord> MemoryBackend::LoadAndTouch(
    absl::string_view tenant, absl::string_view token_hash,
    absl::Duration min_interval) {
  const TokenShard& shard = tokens_[TokenShardOf(token_hash)];
  {
    // Most calls fall within the interval and need only a shared lock.
    absl::ReaderMutexLock lock(&shard.mu);
    const absl::Time now = Now();
    const Entry* e = FindByToken(token_hash);
    if (!IsLiveIn(e, tenant, now)) return NotFound();
    if (!TouchDue(e->last_active_at(), now, min_interval)) {
      return e->ToRecord();
    }
  }
  absl::MutexLock lock(&shard.mu);
  const absl::Time now = Now();
  Entry* e = FindByToken(token_hash);
  if (!IsLiveIn(e, tenant, now)) return NotFound();
  if (TouchDue(e->last_active_at(), now, min_interval)) {
    e->last_active_us = absl::ToUnixMicros(now);
  }
  return e->ToRecord();
}

absl::StatusOr<SessionRecord> MemoryBackend::Update(
    absl::string_view tenant, absl::string_view token_hash,
    const SessionUpdate& update) {
  LockSet want;
  want.tokens = Bit(TokenShardOf(token_hash));
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<SessionRecord> {
        Entry* e = FindByToken(token_hash);
        if (!IsLiveIn(e, tenant, now)) return NotFound();
        if (absl::Status s =
                CheckExpectedVersion(e->version, update.expected_version);
            !s.ok()) {
          return s;
        }
        if (absl::Status s =
                CheckLifetimeOutlivesNow(e->created_at(), update, now);
            !s.ok()) {
          return s;
        }
        if (!locks.WantAll(e)) return RetryWithMoreLocks();
        if (update.sealed_payload.has_value()) {
          if (absl::Status s =
                  CheckRoomToReplace(e, e->user_id(), *update.sealed_payload);
              !s.ok()) {
            return s;
          }
        }

        // ApplyUpdate, in place.
        if (update.sealed_payload.has_value()) {
          e = Replace(e, e->user_id(), *update.sealed_payload);
        }
        if (update.idle_timeout.has_value()) {
          e->idle_timeout = *update.idle_timeout;
        }
        if (update.absolute_lifetime.has_value()) {
          e->absolute_lifetime = *update.absolute_lifetime;
        }
        e->last_active_us =
            absl::ToUnixMicros(ActiveAt(e->last_active_at(), now));
        ++e->version;
        return e->ToRecord();
      });
}

absl::StatusOr<SessionRecord> MemoryBackend::Cycle(
    absl::string_view tenant, absl::string_view old_token_hash,
    const SessionCycle& cycle, const TenantLimits& limits) {
  const std::string new_user_key =
      cycle.user_id.has_value() && !cycle.user_id->empty()
          ? UserKey(tenant, *cycle.user_id)
          : "";
  LockSet want;
  if (!new_user_key.empty()) want.users = Bit(UserShardOf(new_user_key));
  want.tokens = Bit(TokenShardOf(old_token_hash)) |
                Bit(TokenShardOf(cycle.new_token_hash));
  const int cap = limits.max_sessions_per_user;
  const bool capped = cap > 0 && !new_user_key.empty();
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<SessionRecord> {
        Entry* e = FindByToken(old_token_hash);
        if (!IsLiveIn(e, tenant, now)) return NotFound();
        if (absl::Status s =
                CheckExpectedVersion(e->version, cycle.expected_version);
            !s.ok()) {
          return s;
        }
        Entry* occupant = FindByToken(cycle.new_token_hash);
        if (occupant != nullptr && occupant->IsLiveAt(now)) {
          return absl::AlreadyExistsError("new token hash in use");
        }
        locks.WantAll(e);
        if (occupant != nullptr) locks.WantAll(occupant);
        if (capped) WantSessionsOf(*this, locks, new_user_key, /*ids=*/true);
        if (!locks.complete()) return RetryWithMoreLocks();
        const absl::string_view user =
            cycle.user_id.has_value() ? *cycle.user_id : e->user_id();
        const absl::string_view payload = cycle.sealed_payload.has_value()
                                              ? *cycle.sealed_payload
                                              : e->payload();
        if (absl::Status s = CheckRoomToReplace(e, user, payload); !s.ok()) {
          return s;
        }

        // ApplyCycle, in place.
        if (occupant != nullptr) Destroy(occupant);
        tokens_[TokenShardOf(old_token_hash)].entries.erase(old_token_hash);
        e->set_token_hash(cycle.new_token_hash);
        tokens_[TokenShardOf(cycle.new_token_hash)].entries.insert(e);
        if (user != e->user_id() || payload != e->payload()) {
          e = Replace(e, user, payload);
        }
        e->last_active_us =
            absl::ToUnixMicros(ActiveAt(e->last_active_at(), now));
        ++e->version;
        if (capped) EnforceCap(e, cap, now);
        return e->ToRecord();
      });
}

absl::StatusOr<int64_t> MemoryBackend::DeleteByTokenHash(
    absl::string_view tenant, absl::string_view token_hash) {
  LockSet want;
  want.tokens = Bit(TokenShardOf(token_hash));
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<int64_t> {
        Entry* e = FindByToken(token_hash);
        if (e == nullptr || e->tenant() != tenant) return 0;
        if (!locks.WantAll(e)) return RetryWithMoreLocks();
        const bool live = e->IsLiveAt(now);
        Destroy(e);
        return live ? 1 : 0;
      });
}

absl::StatusOr<int64_t> MemoryBackend::DeleteById(absl::string_view tenant,
                                                  absl::string_view id) {
  LockSet want;
  want.ids = Bit(IdShardOf(id));
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<int64_t> {
        Entry* e = FindById(id);
        if (e == nullptr || e->tenant() != tenant) return 0;
        if (!locks.WantAll(e)) return RetryWithMoreLocks();
        const bool live = e->IsLiveAt(now);
        Destroy(e);
        return live ? 1 : 0;
      });
}

absl::StatusOr<int64_t> MemoryBackend::DeleteForUser(
    absl::string_view tenant, absl::string_view user_id,
    absl::string_view except_id) {
  const std::string user_key = UserKey(tenant, user_id);
  LockSet want;
  want.users = Bit(UserShardOf(user_key));
  return WithLocks(
      want, /*exclusive=*/true,
      [&](Locks& locks, absl::Time now) -> absl::StatusOr<int64_t> {
        WantSessionsOf(*this, locks, user_key, /*ids=*/true);
        if (!locks.complete()) return RetryWithMoreLocks();
        std::vector<Entry*> doomed;
        for (Entry* e = FirstOfUser(user_key); e != nullptr; e = e->user_next) {
          if (except_id.empty() || e->id() != except_id) {
            doomed.push_back(e);
          }
        }
        int64_t removed = 0;
        for (Entry* e : doomed) {
          if (e->IsLiveAt(now)) ++removed;
          Destroy(e);
        }
        return removed;
      });
}

absl::StatusOr<std::vector<SessionRecord>> MemoryBackend::ListForUser(
    absl::string_view tenant, absl::string_view user_id, int count,
    int64_t max_bytes, const std::optional<ListCursor>& after) {
  const std::string user_key = UserKey(tenant, user_id);
  LockSet want;
  want.users = Bit(UserShardOf(user_key));
  return WithLocks(
      want, /*exclusive=*/false,
      [&](Locks& locks,
          absl::Time now) -> absl::StatusOr<std::vector<SessionRecord>> {
        WantSessionsOf(*this, locks, user_key, /*ids=*/false);
        if (!locks.complete()) return RetryWithMoreLocks();
        std::vector<const Entry*> found;
        for (const Entry* e = FirstOfUser(user_key); e != nullptr;
             e = e->user_next) {
          if (!e->IsLiveAt(now)) continue;
          if (after.has_value() &&
              !ListsBefore(after->last_active_at, after->id,
                           e->last_active_at(), e->id())) {
            continue;
          }
          found.push_back(e);
        }
        const size_t take = std::min(found.size(), static_cast<size_t>(count));
        std::partial_sort(found.begin(), found.begin() + take, found.end(),
                          EntryListsBefore);
        std::vector<SessionRecord> records;
        int64_t held_bytes = 0;
        for (size_t i = 0; i < take && ListHasRoom(i, held_bytes, max_bytes);
             ++i) {
          held_bytes += static_cast<int64_t>(found[i]->payload().size());
          records.push_back(found[i]->ToRecord());
        }
        return records;
      });
}

absl::StatusOr<int64_t> MemoryBackend::CountLive(absl::string_view tenant) {
  // One shard at a time: the total is exact for a store no call is
  // changing, and off by at most the calls that ran meanwhile otherwise.
  int64_t live = 0;
  for (const TokenShard& shard : tokens_) {
    absl::ReaderMutexLock lock(&shard.mu);
    const absl::Time now = Now();
    for (const Entry* e : shard.entries) {
      if (IsLiveIn(e, tenant, now)) ++live;
    }
  }
  return live;
}

absl::StatusOr<int64_t> MemoryBackend::PruneExpired(
    std::optional<absl::string_view> tenant) {
  auto prunable = [&](const Entry* e, absl::Time now) {
    return !e->IsLiveAt(now) && (!tenant.has_value() || e->tenant() == *tenant);
  };
  int64_t removed = 0;
  for (int shard = 0; shard < kShards; ++shard) {
    {
      // Skip shards with nothing to prune under a shared lock.
      absl::ReaderMutexLock lock(&tokens_[shard].mu);
      const absl::Time now = Now();
      bool any = false;
      for (const Entry* e : tokens_[shard].entries) {
        if (prunable(e, now)) {
          any = true;
          break;
        }
      }
      if (!any) continue;
    }
    LockSet want;
    want.tokens = Bit(shard);
    // A few rounds to collect the entries' user and id shards; whatever is
    // still out of reach after that is left for the next call.
    for (int round = 0;; ++round) {
      Locks locks(*this, want, /*exclusive=*/true);
      const absl::Time now = Now();
      std::vector<Entry*> expired;
      for (Entry* e : tokens_[shard].entries) {
        if (prunable(e, now)) expired.push_back(e);
      }
      std::vector<Entry*> reachable;
      for (Entry* e : expired) {
        if (locks.WantAll(e)) reachable.push_back(e);
      }
      if (!locks.complete() && round < 3) {
        want |= locks.missing();
        continue;
      }
      for (Entry* e : reachable) Destroy(e);
      removed += static_cast<int64_t>(reachable.size());
      break;
    }
  }
  return removed;
}

}  // namespace

std::unique_ptr<StorageBackend> NewMemoryBackend(const Clock* clock,
                                                 const MemoryOptions& options) {
  return std::make_unique<MemoryBackend>(clock, options);
}

absl::StatusOr<std::unique_ptr<SessionStore>> OpenMemoryStore(
    const Clock* clock, const StoreOptions& options,
    const MemoryOptions& memory_options) {
  return SessionStore::Open(
      clock, options, [&]() -> absl::StatusOr<std::unique_ptr<StorageBackend>> {
        if (memory_options.max_bytes < 0) {
          return absl::InvalidArgumentError(
              "memory: max_bytes must not be negative");
        }
        return NewMemoryBackend(clock, memory_options);
      });
}

}  // namespace sessiond::storage
