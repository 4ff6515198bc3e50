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

/// How a verification's state is kept: one string per verification (memory per live
/// verification is a benchmark target; a hash would pay for a name and two length bytes
/// per field). The scripts that touch it start with these helpers and work on a table
/// with the fields' logical values as text (`st` status, `a` attempts, `m` max attempts,
/// `c` channel, `ca` created, `e` expiry, `u` updated (ms), `s` service, `t` recipient,
/// `l` locale, `h` code hash, and when present `en` entity, `md` metadata, `sn` send log,
/// `dl` queued delivery), the fields the hash used to have.
///
/// Layout: a fixed head `>c1BBi6I4i4c32` (status code, attempts, max attempts, created,
/// expiry − created, updated − created, code hash), then channel, service, recipient and
/// locale as a length byte and the bytes (a service id `svc_` + 32 lowercase hex as a zero
/// byte and its 16 bytes), then each optional field present as a tag letter, a 4-byte
/// length and the bytes (`sn` only when the sends are not just the creation).
///
/// A verification id is its 16 bytes in key names and in the recipient index when it has
/// the usual shape (`ver_` + 32 lowercase hex), else its text (see `mod.rs`, `id_bytes`).
const VERIFICATION_CODEC: &str = r#"
local HEAD = '>c1BBi6I4i4c32'
local ST = {pending = 'p', approved = 'a', canceled = 'c', expired = 'e',
  max_attempts_reached = 'm', failed = 'f'}
local STN = {}
for k, v in pairs(ST) do STN[v] = k end
local OPT = {en = 'E', md = 'M', sn = 'S', dl = 'D'}
local OPTN = {E = 'en', M = 'md', S = 'sn', D = 'dl'}
local SVC = '^svc_' .. string.rep('[0-9a-f]', 32) .. '$'
local function hex(b)
  return (string.gsub(b, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function unhex(h)
  return (string.gsub(h, '..', function(x) return string.char(tonumber(x, 16)) end))
end
local function idtext(raw)
  if #raw == 16 then return 'ver_' .. hex(raw) end
  return raw
end
local function short(v)
  if #v > 255 then error('otpd: verification field too long') end
  return string.char(#v) .. v
end
local function ms(n) return string.format('%d', n) end
local function vpack(f)
  local ca, a, m = tonumber(f.ca), tonumber(f.a), tonumber(f.m)
  if not ST[f.st] or a > 255 or m > 255 or #f.h ~= 32 then
    error('otpd: verification out of range')
  end
  local out = {struct.pack(HEAD, ST[f.st], a, m, ca, tonumber(f.e) - ca, tonumber(f.u) - ca, f.h),
    short(f.c)}
  if string.match(f.s, SVC) then
    out[#out + 1] = '\0' .. unhex(string.sub(f.s, 5))
  else
    out[#out + 1] = short(f.s)
  end
  out[#out + 1] = short(f.t)
  out[#out + 1] = short(f.l)
  for _, k in ipairs({'en', 'md', 'sn', 'dl'}) do
    local v = f[k]
    if k == 'sn' and v == f.ca then v = nil end
    if v then out[#out + 1] = OPT[k] .. struct.pack('>I4', #v) .. v end
  end
  return table.concat(out)
end
local function vunpack(b)
  local st, a, m, ca, e, u, h, i = struct.unpack(HEAD, b)
  local f = {st = STN[st], a = tostring(a), m = tostring(m), ca = ms(ca), e = ms(ca + e),
    u = ms(ca + u), h = h}
  local function short_at()
    local n = string.byte(b, i)
    local v = string.sub(b, i + 1, i + n)
    i = i + 1 + n
    return v
  end
  f.c = short_at()
  if string.byte(b, i) == 0 then
    f.s = 'svc_' .. hex(string.sub(b, i + 1, i + 16))
    i = i + 17
  else
    f.s = short_at()
  end
  f.t = short_at()
  f.l = short_at()
  while i <= #b do
    local n = struct.unpack('>I4', b, i + 1)
    f[OPTN[string.sub(b, i, i)]] = string.sub(b, i + 5, i + 4 + n)
    i = i + 5 + n
  end
  f.sn = f.sn or f.ca
  return f
end
local function vload(k)
  local b = redis.call('GET', k)
  if not b then return nil end
  return vunpack(b)
end
local function vsave(k, f) redis.call('SET', k, vpack(f), 'KEEPTTL') end
-- The recipient index: `base` (`P:{h}:r:<svc>`, a string: the level new entries go to)
-- names its shards `base:<the first l hex digits of the recipient's SHA-256 (dg)>`.
-- Returns the entry's value and shard, looking at every level (an entry stays where it
-- was written until its recipient's next send moves it).
local function ifind(base, dg, field)
  for l = 1, #dg do
    local k = base .. ':' .. string.sub(dg, 1, l)
    local v = redis.call('HGET', k, field)
    if v then return v, k end
  end
  return nil, nil
end
local function vpairs(f, out)
  for _, k in ipairs({'s', 't', 'c', 'st', 'h', 'e', 'ca', 'u', 'm', 'a', 'l', 'md', 'en', 'dl'}) do
    if f[k] then
      out[#out + 1] = k
      out[#out + 1] = f[k]
    end
  end
  return out
end
"#;

/// A script that works on verification state: [`VERIFICATION_CODEC`], then `body`.
fn with_codec(body: &str) -> Script {
    Script::new(&[VERIFICATION_CODEC, body].concat())
}

/// Finds a verification for a check, with the lock ends of its subjects: one round trip.
///
/// KEYS[1]: the verification key (by id) or the service's recipient index (by recipient).
/// ARGV: prefix, `id`|`to`, the id (by id) or the recipient's index field and digest (by
/// recipient).
/// Returns `{}` when there is none, else `{id, lock_to, lock_entity, field, value, …}`
/// (a lock end is `''` when that subject is not locked).
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    with_codec(
        r#"
local pre = ARGV[1]
local vkey, id = KEYS[1], ARGV[3]
if ARGV[2] == 'to' then
  local raw = ifind(KEYS[1], ARGV[4], ARGV[3])
  if not raw then return {} end
  vkey, id = pre .. 'v:' .. raw, idtext(raw)
end
local f = vload(vkey)
if not f then return {} end
local lt = redis.call('GET', pre .. 'lk:' .. f.s .. ':to:' .. f.t) or ''
local le = ''
if f.en then le = redis.call('GET', pre .. 'lk:' .. f.s .. ':entity:' .. f.en) or '' end
return vpairs(f, {id, lt, le})
"#,
    )
});

/// Applies a check decision if the verification is still as it was read (pending, same
/// attempt count): status, attempts, lockout failures and locks, and the journal entry.
/// What changes is decided in `otpd_core` (`CheckDecision::effects`) and passed in; the
/// script only applies it atomically.
///
/// KEYS[1]: verification, KEYS[2]: journal.
/// ARGV: prefix, expected attempts, decision's journal name, now (ms), nonce, max failures,
/// window (ms), lock duration (ms), actor JSON, id, change (`attempt`: one attempt counted,
/// `expire`: ended as expired), the status after it, lockout (`keep`|`clear`|`count`).
/// Returns `{'ok', status, attempts}`, `{'changed'}`, `{'gone'}` or `{'locked', until}`.
pub static APPLY_CHECK: LazyLock<Script> = LazyLock::new(|| {
    with_codec(
        r#"
local pre, vkey = ARGV[1], KEYS[1]
local f = vload(vkey)
if not f then return {'gone'} end
local st, a, s, t, en, e = f.st, f.a, f.s, f.t, f.en, f.e
if st ~= 'pending' or a ~= ARGV[2] then return {'changed'} end
local now = tonumber(ARGV[4])
local dec, change, nst, lk = ARGV[3], ARGV[11], ARGV[12], ARGV[13]
if change == 'expire' then
  if now < tonumber(e) then return {'changed'} end
  f.st, f.u = nst, ARGV[4]
  vsave(vkey, f)
  redis.call('XADD', KEYS[2], '*', 'k', 'check', 'vid', ARGV[10], 'svc', s, 'd', dec,
    'st', nst, 'a', a, 'at', ARGV[4], 'actor', ARGV[9], 't', t)
  return {'ok', nst, a}
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
f.st, f.a, f.u = nst, tostring(na), ARGV[4]
vsave(vkey, f)
local entry = {'k', 'check', 'vid', ARGV[10], 'svc', s, 'd', dec, 'st', nst, 'a', na,
  'at', ARGV[4], 'actor', ARGV[9], 't', t}
if en then entry[#entry + 1] = 'en'; entry[#entry + 1] = en end
if lk == 'clear' then
  for _, sub in ipairs(subjects) do redis.call('DEL', pre .. 'lf:' .. s .. ':' .. sub) end
elseif lk == 'count' then
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

/// Reads what the rules of a start (`otpd_core::start::decide_start`) decide on, in one
/// round trip: the idempotency record, the recipient's latest verification (from the
/// index) and the locks of its subjects. [`START_APPLY`] then applies the decision if
/// nothing it was decided on changed meanwhile.
///
/// KEYS[1]: the service's recipient index, KEYS[2]: recipient lock, KEYS[3]: idempotency
/// record.
/// ARGV: prefix, the recipient's index field and digest, the prefix of the service's user
/// lock keys (`…lk:<svc>:entity:`), the entity the send names (`''`: none).
/// Returns `{idem digest, idem id, latest raw id, lock to, lock of the named user, lock of
/// the latest's user, status, expiry, user, send log, the latest's stored value}`, `''`
/// for what is missing.
pub static START_READ: LazyLock<Script> = LazyLock::new(|| {
    with_codec(
        r#"
local pre = ARGV[1]
local r = redis.call('HMGET', KEYS[3], 'r', 'v')
local raw = ifind(KEYS[1], ARGV[3], ARGV[2])
local old = nil
if raw then old = vload(pre .. 'v:' .. raw) end
if not old then raw = nil end
local function lock(en)
  if not en or en == '' then return '' end
  return redis.call('GET', ARGV[4] .. en) or ''
end
local out = {r[1] or '', r[2] or '', raw or '', redis.call('GET', KEYS[2]) or '', lock(ARGV[5])}
if old then
  out[6] = lock(old.en)
  out[7], out[8], out[9], out[10] = old.st, old.e, old.en or '', old.sn
  out[11] = redis.call('GET', pre .. 'v:' .. raw)
else
  for i = 6, 11 do out[i] = '' end
end
return out
"#,
    )
});

/// Applies a start decided in `otpd_core::start` (create or resend, with the expiry of a
/// stale pending verification), with the send log, the idempotency record and the
/// journal entry (which carries the delivery job): invariant 3's one atomic step. It
/// decides nothing: it first checks that what the decision was made on is unchanged (no
/// idempotency record, the same latest verification stored exactly as it was read, no
/// lock in force), else returns `{'raced'}` and the caller reads and decides again.
///
/// The recipient's latest verification is a field of an index shard (`to` → id); the
/// send log is in the verification (`sn`, carried over to the next one), which is kept
/// while a send of its log is in the window. Each send also looks at [`PRUNE_SAMPLE`]
/// random entries of the shard and removes those whose verification has left Redis, so
/// a shard in steady use holds few stale entries (fields have no TTL of their own). A
/// send that finds its shard at [`INDEX_SPLIT`] entries moves the service's new entries
/// one level down (16 times as many shards): few shard keys while a service has few live
/// verifications, and shards small enough for Redis's compact hash encoding when it has
/// many.
///
/// KEYS[1]: the service's recipient index, KEYS[2]: recipient lock, KEYS[3]: new verification,
/// KEYS[4]: journal, KEYS[5]: idempotency record.
/// ARGV: prefix, now, expected latest raw id (`''`: none), its stored value as read,
/// `create`|`resend`, whether the latest ends as expired (`1`|`0`), the send log
/// after this send, the window (ms), expiry (ms), grace (ms), payload JSON, request digest
/// (`''`: no idempotency key), idempotency TTL (ms), channel, entity (`''`: none), new id,
/// the queued delivery (`dl`: `id channel provider ms`, `''`: none; kept until the spooler
/// has put it in the durable outbox, so reads show it at once), the recipient's index field
/// and digest, the prefix of the service's user lock keys, then the new verification's
/// fields and values.
/// Returns `{'raced'}` or `{'created'|'resent', id, field, value, …}`.
pub static START_APPLY: LazyLock<Script> = LazyLock::new(|| {
    with_codec(&format!(
        r#"
local PRUNE_SAMPLE, INDEX_SPLIT, LEVEL_TTL = {PRUNE_SAMPLE}, {INDEX_SPLIT}, {LEVEL_TTL_MS}
local pre = ARGV[1]
local now = tonumber(ARGV[2])
if ARGV[12] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then return {{'raced'}} end
local base, to, dg = KEYS[1], ARGV[18], ARGV[19]
local existing, at = ifind(base, dg, to)
local ek, old = nil, nil
if existing then
  ek = pre .. 'v:' .. existing
  old = vload(ek)
end
if not old then existing = nil end
if (existing or '') ~= ARGV[3] then return {{'raced'}} end
if old and redis.call('GET', ek) ~= ARGV[4] then return {{'raced'}} end
local function locked(k)
  local u = redis.call('GET', k)
  return u and tonumber(u) > now
end
if locked(KEYS[2]) then return {{'raced'}} end
for _, en in ipairs({{ARGV[15], (old and old.st == 'pending' and old.en) or ''}}) do
  if en ~= '' and locked(ARGV[20] .. en) then return {{'raced'}} end
end
local stale, vid, vkey, kind, f = '', nil, nil, nil, nil
if ARGV[6] == '1' then
  old.st, old.u = 'expired', ARGV[2]
  vsave(ek, old)
  stale = idtext(existing)
end
local win = tonumber(ARGV[8])
local keep = now + win
if ARGV[5] == 'resend' then
  vid, vkey, kind, f = existing, ek, 'resent', old
  f.c, f.u, f.sn = ARGV[14], ARGV[2], ARGV[7]
  if ARGV[15] ~= '' and not f.en then f.en = ARGV[15] end
  if ARGV[17] ~= '' then f.dl = ARGV[17] end
  vsave(vkey, f)
  local ttl = redis.call('PTTL', vkey)
  if ttl > 0 and now + ttl > keep then keep = now + ttl end
  redis.call('PEXPIREAT', vkey, keep)
else
  vid, vkey, kind = string.sub(KEYS[3], string.len(pre) + 3), KEYS[3], 'created'
  f = {{}}
  for i = 21, #ARGV, 2 do f[ARGV[i]] = ARGV[i + 1] end
  if ARGV[17] ~= '' then f.dl = ARGV[17] end
  f.sn = ARGV[7]
  local ttl_at = tonumber(ARGV[9]) + tonumber(ARGV[10])
  if ttl_at > keep then keep = ttl_at end
  redis.call('SET', vkey, vpack(f), 'PXAT', keep)
end
local id = idtext(vid)
if kind == 'created' then id = ARGV[16] end
local level = tonumber(redis.call('GET', base) or '1')
local idx = base .. ':' .. string.sub(dg, 1, level)
if at and at ~= idx then redis.call('HDEL', at, to) end
redis.call('HSET', idx, to, vid)
local ittl = redis.call('PTTL', idx)
if ittl < 0 or now + ittl < keep then redis.call('PEXPIREAT', idx, keep) end
local sample = redis.call('HRANDFIELD', idx, PRUNE_SAMPLE, 'WITHVALUES')
for i = 1, #sample, 2 do
  if redis.call('EXISTS', pre .. 'v:' .. sample[i + 1]) == 0 then
    redis.call('HDEL', idx, sample[i])
  end
end
if level < #dg and redis.call('HLEN', idx) >= INDEX_SPLIT then
  redis.call('SET', base, level + 1, 'PX', LEVEL_TTL)
elseif level > 1 then
  redis.call('PEXPIRE', base, LEVEL_TTL)
end
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[5], 'r', ARGV[12], 'v', id)
  redis.call('PEXPIRE', KEYS[5], ARGV[13])
end
redis.call('XADD', KEYS[4], '*', 'k', kind, 'vid', id, 'stale', stale, 'at', ARGV[2], 'p', ARGV[11])
return vpairs(f, {{kind, id}})
"#
    ))
});

/// Entries of an index shard at which new entries go one level down: half of Redis's
/// default `hash-max-listpack-entries` (512), leaving room for uneven shards and for
/// stale entries.
pub const INDEX_SPLIT: usize = 256;

/// How long a service's index level outlives its last send (after it the level starts
/// again at 1 and grows back as shards fill; every level is always looked at).
pub const LEVEL_TTL_MS: u64 = 86_400_000;

/// Index entries a send looks at for ones whose verification has left Redis: with `k`
/// looked at per send, about `1/k` of a busy shard's entries are stale (each send adds at
/// most one entry that will go stale and removes `k` × the stale share).
pub const PRUNE_SAMPLE: usize = 4;

/// Ends a pending verification out of band (cancel, approve), with its journal entry. An
/// approval of a verification past its expiry expires it instead; a cancel of one leaves
/// it (as the SQLite store does).
///
/// KEYS[1]: verification, KEYS[2]: journal. ARGV: now, `canceled`|`approved`, actor, id.
/// Returns `{'gone'}`, or whether it changed (`'1'`/`'0'`) and the verification's fields
/// and values after.
pub static END: LazyLock<Script> = LazyLock::new(|| {
    with_codec(
        r#"
local f = vload(KEYS[1])
if not f then return {'gone'} end
local now = tonumber(ARGV[1])
local nst
if f.st == 'pending' then
  if now < tonumber(f.e) then nst = ARGV[2]
  elseif ARGV[2] == 'approved' then nst = 'expired' end
end
if nst then
  f.st, f.u = nst, ARGV[1]
  vsave(KEYS[1], f)
  redis.call('XADD', KEYS[2], '*', 'k', 'end', 'vid', ARGV[4], 'svc', f.s, 'st', nst,
    'a', f.a, 'at', ARGV[1], 'actor', ARGV[3])
end
return vpairs(f, {nst and '1' or '0'})
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
    with_codec(
        r#"
local f = vload(KEYS[1])
if f and f.dl and string.sub(f.dl, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then
  f.dl = nil
  vsave(KEYS[1], f)
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
    with_codec(
        r#"
local f = vload(KEYS[1])
if not f or f.st ~= 'pending' then return 0 end
f.c = ARGV[2]
if ARGV[1] == 'failed' then f.st = 'failed' end
vsave(KEYS[1], f)
return 1
"#,
    )
});

/// Appends to a service's pumping log. KEYS: the position counter, the log (a sorted set
/// scored by position, members `seq TAB entry`). ARGV: the entry, the caller's last seen
/// position, the oldest `at` kept. Returns the new position and the members between.
/// Forgets up to 64 entries older than the oldest kept (the entry's second field is its
/// `at`).
pub static PUMPING_APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, seq .. '\t' .. ARGV[1])
local between = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '(' .. seq)
if seq % 16 == 0 then
  local oldest = tonumber(ARGV[3])
  local first = redis.call('ZRANGE', KEYS[2], 0, 63)
  local n = 0
  for i, m in ipairs(first) do
    local at = tonumber(string.match(m, '^%d+\t(%-?%d+)\t'))
    if at and at < oldest then n = i else break end
  end
  if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - 1) end
end
return {seq, between}
"#,
    )
});
