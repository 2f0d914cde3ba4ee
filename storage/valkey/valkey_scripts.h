// The server-side Lua functions of the Valkey backend (private to
// valkey_store.cc), one per StorageBackend call. Each runs atomically on
// the server; the calls whose work grows with the data (PruneExpired,
// DeleteForUser, and ListForUser when it meets many dead index entries) run
// theirs, each a bounded share of the work, until it is done. README.md
// describes the key layout they maintain.
//
// They carry out storage/backend.h's record rules, which the conformance
// suite checks: Create stores NewSession (created_at = last_active_at =
// now, version 1); Update (ApplyUpdate) and Cycle (ApplyCycle) set
// last_active_at to ActiveAt (active_at below: max(stored, now)) and add
// one to the version, and fail with ABORTED, writing nothing, exactly when
// CheckExpectedVersion would; Update never changes the user; LoadAndTouch
// writes now only when TouchDue (now later than last_active_at, and at
// least min_interval after it).
//
// valkey_store.cc assembles one library from them: the helpers below,
// defined once when the library loads, then one registered function per
// body below.
//
// Calling convention (every function):
//   ARGV[1]  the key base "{<prefix>}:" that every key name starts with;
//   ARGV[2]  now, in Unix microseconds, from sessiond's Clock (the server's
//            TIME is never used, so an injected clock decides expiry);
//   ARGV[3]  the tenant the call is for (IsValidTenantName);
//   ARGV[4]… the call's own arguments, listed above each body.
//   KEYS     the keys the call is known to touch before it runs (always at
//            least one), for routing; the function derives further keys of
//            the same hash slot from ARGV[1].
// Expected failures are error replies whose first word is a status code
// (NOT_FOUND, ABORTED, ALREADY_EXISTS). The server does not roll back a
// function's writes, so a function fails before writing anything, except
// that removing an expired session it met (which is as good as missing)
// stays.
//
// Tenants: session hashes and token keys are shared by all tenants (ids and
// token hashes are unique across them); a hash's `n` field names its
// tenant, and a hash without one belongs to the default tenant (every
// session stored before tenants existed). A call finds, changes and
// removes only sessions of its tenant: one of another tenant is as good as
// missing, except that Create and Cycle refuse an id or token hash that a
// live session of any tenant holds (and remove an expired holder of any
// tenant, with its own tenant's index entries). Index entries whose session
// has gone, or now belongs to another user or tenant, are dead and dropped
// where met.
//
// Calls can arrive with their times out of order (valkey_store.h). The
// functions keep session_store.h's guarantees regardless: last_active_at
// never moves back (active_at), and a session that any call of its tenant
// has found expired is removed at once (live_by_token, list, cap), so no
// call that read an older time can bring it back.
#ifndef SESSIOND_STORAGE_VALKEY_VALKEY_SCRIPTS_H_
#define SESSIOND_STORAGE_VALKEY_VALKEY_SCRIPTS_H_

namespace sessiond::storage::valkey_internal {

// Helpers shared by every function: the start of the library.
//
// A session hash has the fields th (token hash, raw bytes), u (user id),
// p (sealed payload), c (created_at), a (last_active_at), i (idle timeout),
// l (absolute lifetime), v (version) and, for tenants other than the
// default one only, n (tenant); times are Unix microseconds and durations
// microseconds (int64 max: infinite), all as decimal text.
//
// Numbers handed to redis.call are formatted with int(): Lua's own
// number-to-string conversion keeps only 14 digits.
inline constexpr char kPrelude[] = R"lua(
local DEFAULT = 'default'
-- The calling convention's values for the call in progress; begin(args)
-- sets them as each function starts (the server runs one at a time).
-- T is the tenant, TB the start of its own key names (README.md), XKEY its
-- expiry index, TENANTS the set of tenants other than the default one.
local ARGV, B, NOW, T, TB, XKEY, TENANTS
-- The start of the names of tenant t's user and expiry indexes: the key
-- base itself for the default tenant (the names of the layout before
-- tenants), 'n:<tenant>:' after it for the others (a tenant name holds no
-- ':', so these cannot meet each other or any other name).
local function base_of(t)
  if t == DEFAULT then return B end
  return B .. 'n:' .. t .. ':'
end
local function set_tenant(t)
  T, TB = t, base_of(t)
  XKEY = TB .. 'x'
end
local function begin(args)
  ARGV, B, NOW = args, args[1], tonumber(args[2])
  TENANTS = B .. 'n'
  set_tenant(args[3])
end
-- Native key expiry is a backstop only: it fires GRACE_MS after the
-- session's expiry as computed from the `now` passed in, and is not set at
-- all for sessions that outlive MAX_NATIVE_MS.
local GRACE_MS = 1000
local MAX_NATIVE_MS = 315360000000

local function int(n) return string.format('%.0f', n) end
-- Bytewise s < t (Lua's own < on strings follows the locale).
local function bytes_lt(s, t)
  local n = math.min(#s, #t)
  for k = 1, n do
    local x, y = string.byte(s, k), string.byte(t, k)
    if x ~= y then return x < y end
  end
  return #s < #t
end
-- Key names are plain concatenations (README.md).
local function skey(id) return B .. 's:' .. id end
local function tkey(th) return B .. 't:' .. th end
local function ukey_of(t, u) return base_of(t) .. 'u:' .. u end
local function xkey_of(t) return base_of(t) .. 'x' end
local function ukey(u) return TB .. 'u:' .. u end
-- The expiry index member: user .. NUL .. id (neither holds a NUL), so
-- that prune can find the user index entry of a session whose hash has
-- already gone.
local function xmember(u, id) return u .. '\0' .. id end

local function load(id)
  local f = redis.call('HMGET', skey(id), 'th', 'u', 'p', 'c', 'a', 'i', 'l',
                       'v', 'n')
  if not f[1] then return nil end
  return {id = id, th = f[1], u = f[2] or '', p = f[3] or '', c = f[4],
          a = f[5], i = f[6], l = f[7], v = f[8], n = f[9] or DEFAULT}
end
-- The session (of any tenant) whose token hash is th, or nil.
local function by_token(th)
  local id = redis.call('GET', tkey(th))
  if not id then return nil end
  local s = load(id)
  if s == nil or s.th ~= th then return nil end
  return s
end
-- Whether s is a session of the call's tenant.
local function mine(s) return s ~= nil and s.n == T end
local function expires(s)
  return math.min(tonumber(s.a) + tonumber(s.i), tonumber(s.c) + tonumber(s.l))
end
local function live(s) return s ~= nil and NOW < expires(s) end
local function reply(s)
  return {s.id, s.th, s.u, s.p, s.c, s.a, s.i, s.l, s.v, s.n}
end
local function fail(code, message)
  return redis.error_reply(code .. ' ' .. message)
end

-- Deletes every key and index entry of s (of whichever tenant).
local function remove(s)
  redis.call('DEL', skey(s.id))
  local tk = tkey(s.th)
  if redis.call('GET', tk) == s.id then redis.call('DEL', tk) end
  if s.u ~= '' then redis.call('ZREM', ukey_of(s.n, s.u), s.id) end
  redis.call('ZREM', xkey_of(s.n), xmember(s.u, s.id))
end
-- Removes session s (if not nil); 1 if it was live, else 0.
local function remove_counting(s)
  if s == nil then return 0 end
  local n = live(s) and 1 or 0
  remove(s)
  return n
end

-- The tenant's live session with token hash th, or nil. An expired one is
-- removed on the way: once a call has found a session expired, no later
-- call, even one whose clock reading is older, can find it live again.
local function live_by_token(th)
  local s = by_token(th)
  if not mine(s) then return nil end
  if not live(s) then
    remove(s)
    return nil
  end
  return s
end

-- ActiveAt: last_active_at for a write now, max(stored, NOW), so that it
-- never moves back when a call with a later clock reading got here first.
local function active_at(s)
  if NOW > tonumber(s.a) then return ARGV[2] end
  return s.a
end

-- Milliseconds until the native expiry of a session expiring at e, or nil
-- for none. Relative to NOW, so a clock that differs from the server's
-- cannot make it fire early.
local function native_ms(e)
  local ms = math.ceil((e - NOW) / 1000)
  if ms > MAX_NATIVE_MS then return nil end
  if ms < 0 then ms = 0 end
  return ms + GRACE_MS
end

-- After s (of the call's tenant) was written (old_user: its user as stored
-- before, or nil for a new session): the token key, native expiry, the
-- expiry index, the user index and the set of tenants.
local function reindex(s, old_user)
  local e = expires(s)
  local ms = native_ms(e)
  if ms then
    redis.call('PEXPIRE', skey(s.id), int(ms))
    redis.call('SET', tkey(s.th), s.id, 'PX', int(ms))
  else
    redis.call('PERSIST', skey(s.id))
    redis.call('SET', tkey(s.th), s.id)
  end
  if old_user ~= nil and old_user ~= s.u then
    if old_user ~= '' then redis.call('ZREM', ukey(old_user), s.id) end
    redis.call('ZREM', XKEY, xmember(old_user, s.id))
  end
  redis.call('ZADD', XKEY, int(e), xmember(s.u, s.id))
  if T ~= DEFAULT then redis.call('ZADD', TENANTS, 'NX', 0, T) end
  if s.u ~= '' then
    -- The user index lives at least as long as its longest session.
    local uk = ukey(s.u)
    local existed = redis.call('EXISTS', uk) == 1
    redis.call('ZADD', uk, s.a, s.id)
    if ms == nil then
      redis.call('PERSIST', uk)
    elseif not existed then
      redis.call('PEXPIRE', uk, int(ms))
    else
      local ttl = redis.call('PTTL', uk)
      if ttl >= 0 and ttl < ms then redis.call('PEXPIRE', uk, int(ms)) end
    end
  end
end

-- The per-user cap after s was written for its user: evicts the least
-- recently active other live sessions (the user index orders by
-- last_active_at, then id bytewise) until at most cap remain. Expired
-- sessions met on the way are removed, and dead index entries (of vanished
-- sessions, or ones of another user or tenant now) dropped.
local function enforce_cap(s, cap)
  if cap <= 0 or s.u == '' then return end
  local uk = ukey(s.u)
  local others = {}
  for _, id in ipairs(redis.call('ZRANGE', uk, 0, -1)) do
    if id ~= s.id then
      local o = load(id)
      if o == nil or o.u ~= s.u or o.n ~= T then
        redis.call('ZREM', uk, id)
      elseif not live(o) then
        remove(o)
      else
        others[#others + 1] = o
      end
    end
  end
  for k = 1, #others - (cap - 1) do remove(others[k]) end
end
)lua";

// ARGV[4] token hash. Returns the live session, unchanged (an expired one
// is removed).
inline constexpr char kLoadScript[] = R"lua(
local s = live_by_token(ARGV[4])
if s == nil then return fail('NOT_FOUND', 'no live session') end
return reply(s)
)lua";

// ARGV[4] token hash, ARGV[5] min_interval (us, rounded up). Sets
// last_active_at to now if TouchDue.
inline constexpr char kLoadAndTouchScript[] = R"lua(
local s = live_by_token(ARGV[4])
if s == nil then return fail('NOT_FOUND', 'no live session') end
local a = tonumber(s.a)
local touch_due = NOW > a and NOW - a >= tonumber(ARGV[5])
if touch_due then
  s.a = ARGV[2]
  redis.call('HSET', skey(s.id), 'a', s.a)
  reindex(s, s.u)
end
return reply(s)
)lua";

// ARGV[4] id, [5] token hash, [6] user, [7] payload, [8] idle (us),
// [9] lifetime (us), [10] per-user cap (0: none). ALREADY_EXISTS if a live
// session of any tenant holds the id or the token hash; expired holders
// are removed first.
inline constexpr char kCreateScript[] = R"lua(
local id, th = ARGV[4], ARGV[5]
local by_id = load(id)
if live(by_id) then return fail('ALREADY_EXISTS', 'id in use') end
local by_th = by_token(th)
if live(by_th) then return fail('ALREADY_EXISTS', 'token hash in use') end
if by_id ~= nil then remove(by_id) end
if by_th ~= nil and by_th.id ~= id then remove(by_th) end
-- Nothing of an earlier hash by this name (say, its tenant) may remain.
redis.call('DEL', skey(id))
local s = {id = id, th = th, u = ARGV[6], p = ARGV[7], c = ARGV[2],
           a = ARGV[2], i = ARGV[8], l = ARGV[9], v = '1', n = T}
redis.call('HSET', skey(id), 'th', s.th, 'u', s.u, 'p', s.p, 'c', s.c,
           'a', s.a, 'i', s.i, 'l', s.l, 'v', s.v)
-- The default tenant's hashes keep the shape they had before tenants.
if T ~= DEFAULT then redis.call('HSET', skey(id), 'n', T) end
reindex(s, nil)
enforce_cap(s, tonumber(ARGV[10]))
return reply(s)
)lua";

// ARGV[4] token hash, [5] '1' to set the payload to [6], [7] idle (us) or
// '', [8] lifetime (us) or '', [9] expected version or ''. ApplyUpdate
// (with CheckLifetimeOutlivesNow): the user stays, and no cap applies.
inline constexpr char kUpdateScript[] = R"lua(
local s = live_by_token(ARGV[4])
if s == nil then return fail('NOT_FOUND', 'no live session') end
if ARGV[9] ~= '' and ARGV[9] ~= s.v then
  return fail('ABORTED', 'version mismatch')
end
if ARGV[8] ~= '' and tonumber(s.c) + tonumber(ARGV[8]) <= NOW then
  return fail('OUT_OF_RANGE', 'absolute lifetime already over')
end
if ARGV[5] == '1' then s.p = ARGV[6] end
s.a = active_at(s)
if ARGV[7] ~= '' then s.i = ARGV[7] end
if ARGV[8] ~= '' then s.l = ARGV[8] end
s.v = int(tonumber(s.v) + 1)
redis.call('HSET', skey(s.id), 'p', s.p, 'a', s.a, 'i', s.i, 'l', s.l,
           'v', s.v)
reindex(s, s.u)
return reply(s)
)lua";

// ARGV[4] old token hash, [5] new token hash, [6] '1' to set the user to
// [7], [8] '1' to set the payload to [9], [10] expected version or '',
// [11] per-user cap (0: none). ApplyCycle, with NOT_FOUND before ABORTED
// before ALREADY_EXISTS (a live session of any tenant with the new hash).
inline constexpr char kCycleScript[] = R"lua(
local s = live_by_token(ARGV[4])
if s == nil then return fail('NOT_FOUND', 'no live session') end
if ARGV[10] ~= '' and ARGV[10] ~= s.v then
  return fail('ABORTED', 'version mismatch')
end
local occupant = by_token(ARGV[5])
if live(occupant) then
  return fail('ALREADY_EXISTS', 'new token hash in use')
end
if occupant ~= nil then remove(occupant) end
local old_user = s.u
redis.call('DEL', tkey(ARGV[4]))
s.th, s.a = ARGV[5], active_at(s)
if ARGV[6] == '1' then s.u = ARGV[7] end
if ARGV[8] == '1' then s.p = ARGV[9] end
s.v = int(tonumber(s.v) + 1)
redis.call('HSET', skey(s.id), 'th', s.th, 'u', s.u, 'p', s.p, 'a', s.a,
           'v', s.v)
reindex(s, old_user)
if ARGV[6] == '1' then enforce_cap(s, tonumber(ARGV[11])) end
return reply(s)
)lua";

// ARGV[4] token hash. Returns 1 if a live session of the tenant was removed
// (an expired one is removed too, and counts 0).
inline constexpr char kDeleteByTokenHashScript[] = R"lua(
local s = by_token(ARGV[4])
if not mine(s) then return 0 end
return remove_counting(s)
)lua";

// ARGV[4] id. As kDeleteByTokenHashScript.
inline constexpr char kDeleteByIdScript[] = R"lua(
local s = load(ARGV[4])
if not mine(s) then return 0 end
return remove_counting(s)
)lua";

// ARGV[4] user, [5] id to keep ('' keeps none), [6] batch size. Removes the
// sessions of (at most) the first batch size + 1 entries of the user's
// index, except the kept one, and drops dead entries. Returns {live
// sessions removed, 1 if that was the last batch else 0}. The caller runs
// it until the last batch, so that no run has to go through all of a
// user's sessions at once.
inline constexpr char kDeleteForUserScript[] = R"lua(
local u, keep, batch = ARGV[4], ARGV[5], tonumber(ARGV[6])
local uk = ukey(u)
-- One entry more than the batch: the kept session is among them at most
-- once, so every batch but the last removes at least batch entries.
local got = redis.call('ZRANGE', uk, 0, int(batch))
local n = 0
for _, id in ipairs(got) do
  local s = load(id)
  if s == nil or s.u ~= u or s.n ~= T then
    redis.call('ZREM', uk, id)
  elseif keep ~= '' and id == keep then
    if not live(s) then remove(s) end
  else
    if live(s) then n = n + 1 end
    remove(s)
  end
end
return {n, #got <= batch and 1 or 0}
)lua";

// ARGV[4] user, [5] count, [6] '' (from the start) or 'after' (strictly
// after (ARGV[7], ARGV[8]) = (last_active_at, id)), [9] budget: the most
// index entries to look at (> count), [10] max bytes: past the second
// session, it takes one only while the sealed payloads of those it holds
// total at most this (ListHasRoom in backend.h), so the reply it builds
// stays near the page the caller can use.
//
// The user index orders by (last_active_at, id bytewise), the reverse of
// the listing order. The function finds where the cursor's position falls
// in it by score (ZCOUNT with an exclusive bound) and, within the entries
// that share the cursor's score, by a binary search on id; then it reads
// entries by rank from there, in batches: each read costs O(log n + batch),
// never a walk over the entries before it (as a growing LIMIT offset
// would).
// Ranks stay put while the function runs: it removes nothing until the end.
//
// Returns up to count live sessions in listing order; or nil (false) when
// it used up its budget before it had count sessions or reached the end of
// the index: the dead entries it met (of expired sessions, removed with
// them, and of vanished or moved ones) are gone, so running it again from
// the same position gets further, and in the end all the sessions come
// from one run.
inline constexpr char kListForUserScript[] = R"lua(
local u, count, mode = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local budget, max_bytes = tonumber(ARGV[9]), tonumber(ARGV[10])
local uk = ukey(u)
local total = redis.call('ZCARD', uk)
-- Reverse rank of the first entry after the cursor.
local pos = 0
if mode ~= '' then
  pos = redis.call('ZCOUNT', uk, '(' .. ARGV[7], '+inf')
  -- Entries with the cursor's score come by id descending: skip those
  -- whose id is not below the cursor's.
  local up = pos + redis.call('ZCOUNT', uk, ARGV[7], ARGV[7])
  while pos < up do
    local mid = math.floor((pos + up) / 2)
    local id = redis.call('ZRANGE', uk, int(mid), int(mid), 'REV')[1]
    if bytes_lt(id, ARGV[8]) then up = mid else pos = mid + 1 end
  end
end
local out, dead, expired = {}, {}, {}
local looked, held = 0, 0
local full = function() return #out == count or (#out >= 2 and held > max_bytes) end
while pos < total and not full() and looked < budget do
  local n = math.min(128, budget - looked)
  local got = redis.call('ZRANGE', uk, int(pos), int(pos + n - 1), 'REV')
  if #got == 0 then pos = total end  -- cannot happen: nothing changed
  for _, id in ipairs(got) do
    looked = looked + 1
    pos = pos + 1
    local s = load(id)
    if s == nil or s.u ~= u or s.n ~= T then
      dead[#dead + 1] = id
    elseif not live(s) then
      expired[#expired + 1] = s
    else
      out[#out + 1] = reply(s)
      held = held + #s.p
      if full() then break end
    end
  end
end
for _, id in ipairs(dead) do redis.call('ZREM', uk, id) end
for _, s in ipairs(expired) do remove(s) end
if not full() and pos < total then return false end
return out
)lua";

// No arguments. The tenant's live sessions: the entries of its expiry
// index due after now (every write keeps a session's entry at its expiry).
inline constexpr char kCountLiveScript[] = R"lua(
return redis.call('ZCOUNT', XKEY, '(' .. ARGV[2], '+inf')
)lua";

// ARGV[4] batch size, [5] '1' to go on to the following tenants (every
// tenant: the default one first, then the others in the tenant set by
// name), else only the tenant's own.
//
// Looks at up to batch size expiry index entries due by now: removes their
// sessions if expired (counted), drops the entries of sessions that are
// gone (native expiry) along with their user index entry, and re-files
// entries of sessions that are still live. Each tenant it moves on to
// counts as one entry, so a run visits at most batch size tenants. A
// tenant whose expiry index it leaves empty leaves the tenant set (its
// next write puts it back). Returns {removed, 1 if that was the last batch
// else 0, the tenant to go on with}.
inline constexpr char kPruneScript[] = R"lua(
local budget, all = tonumber(ARGV[4]), ARGV[5] == '1'
local removed = 0
while true do
  local got = redis.call('ZRANGEBYSCORE', XKEY, '-inf', ARGV[2], 'LIMIT', 0,
                         int(budget))
  for _, m in ipairs(got) do
    local sep = string.find(m, '\0', 1, true)
    local u, id = '', m
    if sep then u, id = string.sub(m, 1, sep - 1), string.sub(m, sep + 1) end
    local s = load(id)
    if s ~= nil and s.u == u and s.n == T then
      if live(s) then
        redis.call('ZADD', XKEY, int(expires(s)), m)
      else
        remove(s)
        removed = removed + 1
      end
    else
      redis.call('ZREM', XKEY, m)
      if u ~= '' then redis.call('ZREM', ukey(u), id) end
    end
  end
  if #got >= budget then return {removed, 0, T} end
  budget = budget - #got
  if T ~= DEFAULT and redis.call('EXISTS', XKEY) == 0 then
    redis.call('ZREM', TENANTS, T)
  end
  if not all then return {removed, 1, T} end
  local min = '-'
  if T ~= DEFAULT then min = '(' .. T end
  local nxt = redis.call('ZRANGE', TENANTS, min, '+', 'BYLEX', 'LIMIT', 0, 1)
  if #nxt == 0 then return {removed, 1, T} end
  budget = budget - 1
  if budget <= 0 then return {removed, 0, nxt[1]} end
  set_tenant(nxt[1])
end
)lua";

}  // namespace sessiond::storage::valkey_internal

#endif  // SESSIOND_STORAGE_VALKEY_VALKEY_SCRIPTS_H_
