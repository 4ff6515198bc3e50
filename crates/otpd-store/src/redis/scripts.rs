//! The Lua scripts of the Redis hot store: each multi-step change is one script, so Redis
//! runs it atomically (no other command interleaves). `redis::Script` sends them with
//! EVALSHA and falls back to EVAL once after a server restart forgot them.
//!
//! Every key a script touches carries the same hash tag (`{h}` for verification state,
//! `{r.<service or key>}` for a group of rate buckets), so the scripts run unchanged on a
//! Redis Cluster. Keys built inside a script (the verification an index names, the
//! lockout keys of its subjects) are in the tag of the declared ones.

use std::sync::LazyLock;

use redis::Script;

/// Finds a verification for a check, with the lock ends of its subjects: one round trip.
///
/// KEYS[1]: the verification key (by id) or the recipient key (by recipient).
/// ARGV: prefix, `id`|`to`.
/// Returns `{}` when there is none, else `{id, lock_to, lock_entity, field, value, …}`
/// (a lock end is `''` when that subject is not locked).
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pre = ARGV[1]
local vkey = KEYS[1]
local id
if ARGV[2] == 'to' then
  id = redis.call('HGET', KEYS[1], 'v')
  if not id then return {} end
  vkey = pre .. 'v:' .. id
else
  id = string.sub(vkey, string.len(pre) + 3)
end
local h = redis.call('HGETALL', vkey)
if #h == 0 then return {} end
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local lt = redis.call('GET', pre .. 'lk:' .. f.s .. ':to:' .. f.t) or ''
local le = ''
if f.en then le = redis.call('GET', pre .. 'lk:' .. f.s .. ':entity:' .. f.en) or '' end
local out = {id, lt, le}
for i = 1, #h do out[#out + 1] = h[i] end
return out
"#,
    )
});

/// Applies a check decision if the verification is still as it was read (pending, same
/// attempt count): status, attempts, lockout failures and locks, and the journal entry.
///
/// KEYS[1]: verification, KEYS[2]: journal.
/// ARGV: prefix, expected attempts, decision (`approve`|`reject`|`exhaust`|`expire`), now
/// (ms), nonce, max failures, window (ms), lock duration (ms), actor JSON, id.
/// Returns `{'ok', status, attempts}`, `{'changed'}`, `{'gone'}` or `{'locked', until}`.
pub static APPLY_CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pre, vkey = ARGV[1], KEYS[1]
local r = redis.call('HMGET', vkey, 'st', 'a', 's', 't', 'en', 'e')
local st, a, s, t, en, e = r[1], r[2], r[3], r[4], r[5], r[6]
if not st then return {'gone'} end
if st ~= 'pending' or a ~= ARGV[2] then return {'changed'} end
local now = tonumber(ARGV[4])
local dec = ARGV[3]
if dec == 'expire' then
  if now < tonumber(e) then return {'changed'} end
  redis.call('HSET', vkey, 'st', 'expired', 'u', ARGV[4])
  redis.call('XADD', KEYS[2], '*', 'k', 'check', 'vid', ARGV[10], 'svc', s, 'd', dec,
    'st', 'expired', 'a', a, 'at', ARGV[4], 'actor', ARGV[9], 't', t)
  return {'ok', 'expired', a}
end
if now >= tonumber(e) then return {'changed'} end
local subjects = {'to:' .. t}
if en then subjects[2] = 'entity:' .. en end
local lock = 0
for _, sub in ipairs(subjects) do
  local l = tonumber(redis.call('GET', pre .. 'lk:' .. s .. ':' .. sub) or '0')
  if l > now and l > lock then lock = l end
end
if lock > 0 then return {'locked', tostring(lock)} end
local na = tonumber(a) + 1
local nst = 'pending'
if dec == 'approve' then nst = 'approved' elseif dec == 'exhaust' then nst = 'max_attempts_reached' end
redis.call('HSET', vkey, 'st', nst, 'a', na, 'u', ARGV[4])
local entry = {'k', 'check', 'vid', ARGV[10], 'svc', s, 'd', dec, 'st', nst, 'a', na,
  'at', ARGV[4], 'actor', ARGV[9], 't', t}
if en then entry[#entry + 1] = 'en'; entry[#entry + 1] = en end
if dec == 'approve' then
  for _, sub in ipairs(subjects) do redis.call('DEL', pre .. 'lf:' .. s .. ':' .. sub) end
else
  local maxf, win, dur = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  for i, sub in ipairs(subjects) do
    local fk = pre .. 'lf:' .. s .. ':' .. sub
    redis.call('ZADD', fk, now, ARGV[5])
    redis.call('ZREMRANGEBYSCORE', fk, '-inf', now - win)
    local n = redis.call('ZCARD', fk)
    redis.call('PEXPIRE', fk, win)
    if n >= maxf then
      local u = now + dur
      redis.call('SET', pre .. 'lk:' .. s .. ':' .. sub, u, 'PXAT', u)
      redis.call('DEL', fk)
      entry[#entry + 1] = (i == 1) and 'lt' or 'le'
      entry[#entry + 1] = u .. '|' .. n
    end
  end
end
redis.call('XADD', KEYS[2], '*', unpack(entry))
return {'ok', nst, tostring(na)}
"#,
    )
});

/// Creates a verification or resends the pending one, with the lockout and send-limit
/// checks, the send log, the idempotency record and the journal entry (which carries the
/// delivery job): invariant 3's one atomic step.
///
/// KEYS[1]: recipient hash (`v` latest id, `sn` send times), KEYS[2]: recipient lock,
/// KEYS[3]: new verification, KEYS[4]: journal, KEYS[5]: idempotency record.
/// ARGV: prefix, now, sends allowed, window (ms), expiry (ms), grace (ms), payload JSON,
/// request digest (`''`: no idempotency key), idempotency TTL (ms), channel, entity
/// (`''`: none), new id, the queued delivery (`dl`: `id channel provider ms`, `''`: none;
/// kept until the spooler has put it in the durable outbox, so reads show it at once),
/// then the new verification's fields and values.
/// Returns `{'conflict'}`, `{'replay', id}`, `{'locked', until}`, `{'limited', oldest}`, or
/// `{'created'|'resent', id, field, value, …}`.
pub static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pre = ARGV[1]
local now = tonumber(ARGV[2])
if ARGV[8] ~= '' then
  local r = redis.call('HMGET', KEYS[5], 'r', 'v')
  if r[1] then
    if r[1] ~= ARGV[8] then return {'conflict'} end
    return {'replay', r[2]}
  end
end
local lu = redis.call('GET', KEYS[2])
if lu and tonumber(lu) > now then return {'locked', lu} end
local win = tonumber(ARGV[4])
local rc = redis.call('HMGET', KEYS[1], 'v', 'sn')
local existing, sends = rc[1], {}
if rc[2] then
  for x in string.gmatch(rc[2], '[^,]+') do
    if tonumber(x) > now - win then sends[#sends + 1] = x end
  end
end
if #sends >= tonumber(ARGV[3]) then return {'limited', sends[1]} end
local stale, vid, vkey, kind = '', nil, nil, nil
if existing then
  local ek = pre .. 'v:' .. existing
  local r = redis.call('HMGET', ek, 'st', 'e')
  if r[1] == 'pending' then
    if now >= tonumber(r[2]) then
      redis.call('HSET', ek, 'st', 'expired', 'u', ARGV[2])
      stale = existing
    else
      vid, vkey, kind = existing, ek, 'resent'
    end
  end
end
local keep = tonumber(ARGV[2]) + win
if kind == 'resent' then
  redis.call('HSET', vkey, 'c', ARGV[10], 'u', ARGV[2])
  if ARGV[11] ~= '' then redis.call('HSETNX', vkey, 'en', ARGV[11]) end
  if ARGV[13] ~= '' then redis.call('HSET', vkey, 'dl', ARGV[13]) end
  local ttl = redis.call('PTTL', vkey)
  if ttl > 0 and now + ttl > keep then keep = now + ttl end
else
  vid, vkey, kind = ARGV[12], KEYS[3], 'created'
  local fields = {}
  for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
  if ARGV[13] ~= '' then fields[#fields + 1] = 'dl'; fields[#fields + 1] = ARGV[13] end
  redis.call('HSET', vkey, unpack(fields))
  local ttl_at = tonumber(ARGV[5]) + tonumber(ARGV[6])
  redis.call('PEXPIREAT', vkey, ttl_at)
  if ttl_at > keep then keep = ttl_at end
end
sends[#sends + 1] = ARGV[2]
redis.call('HSET', KEYS[1], 'v', vid, 'sn', table.concat(sends, ','))
redis.call('PEXPIREAT', KEYS[1], keep)
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[5], 'r', ARGV[8], 'v', vid)
  redis.call('PEXPIRE', KEYS[5], ARGV[9])
end
redis.call('XADD', KEYS[4], '*', 'k', kind, 'vid', vid, 'stale', stale, 'at', ARGV[2], 'p', ARGV[7])
local out = {kind, vid}
for _, x in ipairs(redis.call('HGETALL', vkey)) do out[#out + 1] = x end
return out
"#,
    )
});

/// Ends a pending verification out of band (cancel, approve), with its journal entry. An
/// approval of a verification past its expiry expires it instead; a cancel of one leaves
/// it (as the SQLite store does).
///
/// KEYS[1]: verification, KEYS[2]: journal. ARGV: now, `canceled`|`approved`, actor, id.
/// Returns `{'gone'}`, or whether it changed (`'1'`/`'0'`) and the verification's fields
/// and values after.
pub static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local r = redis.call('HMGET', KEYS[1], 'st', 'e', 'a', 's')
if not r[1] then return {'gone'} end
local now = tonumber(ARGV[1])
local nst
if r[1] == 'pending' then
  if now < tonumber(r[2]) then nst = ARGV[2]
  elseif ARGV[2] == 'approved' then nst = 'expired' end
end
if nst then
  redis.call('HSET', KEYS[1], 'st', nst, 'u', ARGV[1])
  redis.call('XADD', KEYS[2], '*', 'k', 'end', 'vid', ARGV[4], 'svc', r[4], 'st', nst,
    'a', r[3], 'at', ARGV[1], 'actor', ARGV[3])
end
local out = {nst and '1' or '0'}
for _, x in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = x end
return out
"#,
    )
});

/// GCRA over several buckets of one hash tag, all or none (see `guards::rate::take`).
///
/// KEYS: the buckets' arrival-time keys. ARGV: now in ms (`''`: the server's `TIME`), then
/// per bucket its interval and period in ms.
/// Returns `{1, 0, 0}` when taken, else `{0, index of the refusing bucket, wait ms}`.
pub static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local nexts = {}
local worst, wi = -1, 0
for i, k in ipairs(KEYS) do
  local interval, period = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', k) or now)
  if tat < now then tat = now end
  local nt = tat + interval
  local allow = nt - period
  if allow <= now then
    nexts[i] = nt
  else
    local w = allow - now
    if w > worst then worst, wi = w, i end
  end
end
if wi > 0 then return {0, wi, worst} end
-- Relative TTLs: with the caller's clock, `now` need not be Redis's.
for i, k in ipairs(KEYS) do redis.call('SET', k, nexts[i], 'PX', nexts[i] - now) end
return {1, 0, 0}
"#,
    )
});

/// Gives back the tokens a [`GCRA`] call took (the second phase when a call's buckets span
/// two hash tags and the later group refused).
///
/// KEYS and ARGV as for [`GCRA`].
pub static GCRA_REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
for i, k in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', k) or '0')
  local back = tat - tonumber(ARGV[2 * i])
  if back > now then redis.call('SET', k, back, 'PX', back - now) else redis.call('DEL', k) end
end
return 1
"#,
    )
});

/// Records a wrong authenticator or backup code against the entity's lockout in Redis,
/// so that sent codes and factors share one lockout.
///
/// KEYS[1]: failures, KEYS[2]: lock. ARGV: now, nonce, max failures, window, duration (ms).
/// Returns `{lock end or 0, failures}`.
pub static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, win = tonumber(ARGV[1]), tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
local n = redis.call('ZCARD', KEYS[1])
redis.call('PEXPIRE', KEYS[1], win)
if n >= tonumber(ARGV[3]) then
  local u = now + tonumber(ARGV[5])
  redis.call('SET', KEYS[2], u, 'PXAT', u)
  redis.call('DEL', KEYS[1])
  return {u, n}
end
return {0, n}
"#,
    )
});

/// Forgets a verification's queued delivery (`dl`) once the spooler has put it in the
/// durable outbox, unless a later send replaced it.
///
/// KEYS[1]: verification. ARGV: the delivery id.
pub static CLEAR_QUEUED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local dl = redis.call('HGET', KEYS[1], 'dl')
if dl and string.sub(dl, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then
  redis.call('HDEL', KEYS[1], 'dl')
end
return 1
"#,
    )
});

/// Brings what the delivery worker changed in the durable record into the hot state of a
/// pending verification: its channel (a fallback channel took over) and a `failed` status
/// (no delivery could be made; a new send then starts a new verification).
///
/// KEYS[1]: verification. ARGV: status, channel.
pub static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'st') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
if ARGV[1] == 'failed' then redis.call('HSET', KEYS[1], 'st', 'failed') end
return 1
"#,
    )
});
