"""The Redis store's Lua scripts: each compare-and-set or multi-key change of a port is one script, atomic on
the server against every replica's calls. ARGV[1] is always the key prefix; keys are built from it in the
script (one Redis server or a primary with replicas, not Redis Cluster, whose slots would need every key in KEYS).

Floats travel as Python's `repr` (exact round trip); "" stands for None. Key layout (prefix P):
`P:seq` the seq counter; `P:job:ID` a job's hash; `P:jobs` the listed records by seq; `P:ended` the listed
ended records in the order they ended (`P:endseq`); `P:q:POOL:ready` / `:delayed` / `:n` a pool's FIFO,
held-back set (by `not_before`) and queued count (reserved places included); `P:pile:ID` a pile's hash, `:m`
its members, `:log` its result log (a list: a position is an index); `P:piles` piles by last activity (by
completion once complete), `P:piles:open`; `P:keys`, `P:keys:order`, `P:keys:n` idempotency keys.
"""

from __future__ import annotations

from .leases import _REAP_EXPIRED

__all__ = ["SCRIPTS"]

# Shared: evict(P, id) strips a job's hash for the pile that keeps it (it reads as Evicted) or deletes it;
# counts(P, pool) is {queued, delayed, false (the caller's result), version (counts by every replica's call)}.
_HELPERS = """
local function evict(P, id)
  local k = P .. ':job:' .. id
  redis.call('ZREM', P .. ':jobs', id)
  local pile = redis.call('HGET', k, 'pile')
  if pile and pile ~= '' and redis.call('EXISTS', P .. ':pile:' .. pile) == 1 then
    redis.call('HDEL', k, 'spec', 'result', 'error', 'attempts')
    redis.call('HSET', k, 'listed', '0', 'evicted', '1')
  else
    redis.call('DEL', k)
  end
end
-- hash(k): the hash at k as one JSON object (one bulk string to parse, not two per field)
local function hash(k)
  local flat, m = redis.call('HGETALL', k), {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return cjson.encode(m)
end
-- push(P, pool, id, not_before): onto the pool's ready list, or its delayed set ('' = not held back)
local function push(P, pool, id, not_before)
  local q = P .. ':q:' .. pool
  if not_before == '' then
    redis.call('RPUSH', q .. ':ready', id)
  else
    redis.call('ZADD', q .. ':delayed', not_before, id)
    redis.call('DECR', q .. ':n')
  end
end
-- take_head(P, pool, at): the head of the pool's ready list, marked running at `at` → its id and key, or
-- nil if none is queued (an id whose job ended while queued, i.e. was discarded, is dropped on the way)
local function take_head(P, pool, at)
  local q = P .. ':q:' .. pool
  while true do
    local id = redis.call('LPOP', q .. ':ready')
    if not id then return nil end
    local k = P .. ':job:' .. id
    if redis.call('HGET', k, 'status') == 'queued' then
      redis.call('HSET', k, 'status', 'running', 'started', at)
      redis.call('DECR', q .. ':n')
      return id, k
    end
  end
end
-- log_result(P, pile, id, status, at): the ended job at the end of its pile's result log → {position, the
-- pile's hash (JSON)}, or false if the pile has expired; a job logged already keeps its position
local function log_result(P, pile, id, status, at)
  local pk = P .. ':pile:' .. pile
  if redis.call('EXISTS', pk) == 0 then return false end
  local logged = tonumber(redis.call('HGET', P .. ':job:' .. id, 'pos') or '-1')
  if logged >= 0 then return {logged, hash(pk)} end
  local position = redis.call('RPUSH', pk .. ':log', id) - 1
  redis.call('HINCRBY', pk, 'done', 1)
  redis.call('HINCRBY', pk, status, 1)
  redis.call('HSET', pk, 'active', at)
  redis.call('ZADD', P .. ':piles', at, pile)
  redis.call('HSET', P .. ':job:' .. id, 'pos', position)
  if redis.call('HGET', pk, 'closed') == '1' and redis.call('HGET', pk, 'finished') == ''
     and redis.call('HGET', pk, 'done') == redis.call('HGET', pk, 'n') then
    redis.call('HSET', pk, 'finished', at)
  end
  return {position, hash(pk)}
end
local function counts(P, pool)
  local q = P .. ':q:' .. pool
  local n = tonumber(redis.call('GET', q .. ':n') or '0')
  return {n, redis.call('ZCARD', q .. ':delayed'), false, redis.call('INCR', q .. ':v')}
end
"""

SCRIPTS = {
    # ARGV: P, id, then the hash's fields and values but `seq` → the new record's seq
    "add": """
local P, id = ARGV[1], ARGV[2]
local seq = redis.call('INCR', P .. ':seq')
local k = P .. ':job:' .. id
redis.call('HSET', k, 'seq', seq, unpack(ARGV, 3))
redis.call('ZADD', P .. ':jobs', seq, id)
return seq
""",
    # ARGV: P, id, status, result, error, at, max_records → false if it had ended, else {was, started, attempt,
    # its pile's log_result or false}: a pile's member is logged in the same step, so no outcome is ever
    # stored without its place in the pile's stream (or the other way round)
    "finish": _HELPERS + """
local P, id = ARGV[1], ARGV[2]
local k = P .. ':job:' .. id
local was = redis.call('HGET', k, 'status')
if was ~= 'queued' and was ~= 'running' then return false end
redis.call('HSET', k, 'status', ARGV[3], 'result', ARGV[4], 'error', ARGV[5], 'finished', ARGV[6])
local pile = redis.call('HGET', k, 'pile')
local logged = pile ~= '' and log_result(P, pile, id, ARGV[3], ARGV[6])
local started, attempt = redis.call('HGET', k, 'started'), redis.call('HGET', k, 'attempt')
local ended = P .. ':ended'
redis.call('ZADD', ended, redis.call('INCR', P .. ':endseq'), id)
local over = redis.call('ZCARD', ended) - tonumber(ARGV[7])
if over > 0 then
  local old = redis.call('ZPOPMIN', ended, over)
  for i = 1, #old, 2 do evict(P, old[i]) end
end
return {was, started, attempt, logged}
""",
    # ARGV: P, horizon, batch → how many records were evicted, oldest ended first (a full batch: call again)
    "expire_jobs": _HELPERS + """
local P = ARGV[1]
local horizon = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', P .. ':ended', 0, tonumber(ARGV[3]) - 1)
for n, id in ipairs(ids) do
  local k = P .. ':job:' .. id
  if tonumber(redis.call('HGET', k, 'finished')) > horizon then return n - 1 end
  redis.call('ZREM', P .. ':ended', id)
  redis.call('ZREM', P .. ':jobs', id)
  local pile = redis.call('HGET', k, 'pile')
  if pile and pile ~= '' and redis.call('EXISTS', P .. ':pile:' .. pile) == 1 then
    redis.call('HSET', k, 'listed', '0')  -- its pile still reads its result
  else
    redis.call('DEL', k)
  end
end
return #ids
""",
    # ARGV: P, id, attempt seen, attempts json, attempt, not_before → 1 if it was running that attempt
    "retry": """
local k = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', k, 'status') ~= 'running' or redis.call('HGET', k, 'attempt') ~= ARGV[3] then return 0 end
redis.call('HSET', k, 'status', 'queued', 'started', '', 'attempts', ARGV[4], 'attempt', ARGV[5], 'nb', ARGV[6])
return 1
""",
    # ARGV: P, pool, count, limit → {queued, delayed, 1 reserved / 0 not, version}
    "reserve": _HELPERS + """
local c = counts(ARGV[1], ARGV[2])
local count = tonumber(ARGV[3])
if c[1] + c[2] + count > tonumber(ARGV[4]) then c[3] = 0 return c end
c[1], c[3] = redis.call('INCRBY', ARGV[1] .. ':q:' .. ARGV[2] .. ':n', count), 1
return c
""",
    # ARGV: P, pool, id, not_before ("" none) → {queued, delayed, -, version}
    "push": _HELPERS + """
push(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return counts(ARGV[1], ARGV[2])
""",
    # ARGV: P, pool, at → {queued, delayed, earliest not_before still held or false, version}
    "release_due": _HELPERS + """
local P, q = ARGV[1], ARGV[1] .. ':q:' .. ARGV[2]
local due = redis.call('ZRANGEBYSCORE', q .. ':delayed', '-inf', ARGV[3])
for _, id in ipairs(due) do
  redis.call('ZREM', q .. ':delayed', id)
  if redis.call('HGET', P .. ':job:' .. id, 'status') == 'queued' then
    redis.call('RPUSH', q .. ':ready', id)
    redis.call('INCR', q .. ':n')
  end
end
local c = counts(P, ARGV[2])
local first = redis.call('ZRANGE', q .. ':delayed', 0, 0, 'WITHSCORES')
c[3] = first[2] or false
return c
""",
    # ARGV: P, pool, at → {queued, delayed, the taken job's hash (JSON) or false, version}
    "take": _HELPERS + """
local id, k = take_head(ARGV[1], ARGV[2], ARGV[3])
local c = counts(ARGV[1], ARGV[2])
if id then c[3] = hash(k) end
return c
""",
    # ARGV: P, pool, replica, token, lease ms, at → {queued, delayed, the taken job's hash (JSON) or false,
    # version, 1 the lease is held / 0 not}. A cluster slot's next job in one step (leases.py's keys): the lease
    # `token` is kept (renewed; released if more than the pool's size are held) or, if new, granted while fewer
    # than the size are held; then the head of the queue is taken and bound to it, or the lease is released.
    "lease_take": _HELPERS + """
local P, pool, token = ARGV[1], ARGV[2], ARGV[4]
local base = P .. ':pool:' .. pool
local KEYS = {base .. ':leases', base .. ':owners', base .. ':lapsed', P .. ':limits'}
""" + _REAP_EXPIRED + """
local bound = base .. ':bound'
local function released(drop, leased)  -- leased: 1 the lease was held (no job: released now), 0 not held
  if drop then
    redis.call('ZREM', KEYS[1], token)
    redis.call('HDEL', KEYS[2], token)
    redis.call('HDEL', bound, token)
  end
  local c = counts(P, pool)
  c[5] = leased
  return c
end
local size = tonumber(redis.call('HGET', KEYS[4], pool) or '0')
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], token) then
  if held > size then return released(true, 0) end
elseif redis.call('HEXISTS', KEYS[3], token) == 1 or held >= size then
  return released(false, 0)
else
  redis.call('HSET', KEYS[2], token, ARGV[3])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), token)
local id, k = take_head(P, pool, ARGV[6])
if not id then return released(true, 1) end
redis.call('HSET', bound, token, id .. ' ' .. redis.call('HGET', k, 'attempt'))
local c = counts(P, pool)
c[3], c[5] = hash(k), 1
return c
""",
    # ARGV: P, a JSON list of calls ["add", id, field, value…] | ["add_job", pile, job, submitted_at] |
    # ["push", pool, id, not_before] (all strings), run in order as the scripts of those names would →
    # JSON [each call's seq or index (0 for a push), {pool, queued, delayed, version} of each pool pushed to]
    "enqueue": _HELPERS + """
local P = ARGV[1]
local out, pushed = {}, {}
for i, op in ipairs(cjson.decode(ARGV[2])) do
  local kind = op[1]
  if kind == 'add' then
    local seq = redis.call('INCR', P .. ':seq')
    redis.call('HSET', P .. ':job:' .. op[2], 'seq', seq, unpack(op, 3))
    redis.call('ZADD', P .. ':jobs', seq, op[2])
    out[i] = seq
  elseif kind == 'add_job' then
    local pk = P .. ':pile:' .. op[2]
    local index = redis.call('RPUSH', pk .. ':m', op[3]) - 1
    redis.call('HSET', pk, 'n', index + 1, 'active', op[4])
    redis.call('ZADD', P .. ':piles', op[4], op[2])
    redis.call('HSET', P .. ':job:' .. op[3], 'idx', index)
    out[i] = index
  else
    push(P, op[2], op[3], op[4])
    pushed[op[2]] = true
    out[i] = 0
  end
end
local pools = {}
for pool in pairs(pushed) do
  local c = counts(P, pool)
  pools[#pools + 1] = {pool, c[1], c[2], c[4]}
end
return cjson.encode({out, pools})  -- one bulk string: thousands of integers parse in C, not one by one
""",
    # ARGV: P, pool, id → {queued, delayed, -, version}: a job ended while queued no longer counts
    "discard": _HELPERS + """
local q = ARGV[1] .. ':q:' .. ARGV[2]
if redis.call('ZREM', q .. ':delayed', ARGV[3]) == 0 then redis.call('DECR', q .. ':n') end
return counts(ARGV[1], ARGV[2])
""",
    # ARGV: P, pile, job, submitted_at → the job's index in the pile
    "add_job": """
local P, pk = ARGV[1], ARGV[1] .. ':pile:' .. ARGV[2]
local index = redis.call('RPUSH', pk .. ':m', ARGV[3]) - 1
redis.call('HSET', pk, 'n', index + 1, 'active', ARGV[4])
redis.call('ZADD', P .. ':piles', ARGV[4], ARGV[2])
redis.call('HSET', P .. ':job:' .. ARGV[3], 'idx', index)
return index
""",
    # ARGV: P, pile, at → the pile's hash (JSON)
    "close": _HELPERS + """
local P, pk = ARGV[1], ARGV[1] .. ':pile:' .. ARGV[2]
redis.call('HSET', pk, 'closed', '1', 'active', ARGV[3])
redis.call('SREM', P .. ':piles:open', ARGV[2])
if redis.call('HGET', pk, 'finished') == '' and redis.call('HGET', pk, 'done') == redis.call('HGET', pk, 'n') then
  redis.call('HSET', pk, 'finished', ARGV[3])
end
local finished = redis.call('HGET', pk, 'finished')
redis.call('ZADD', P .. ':piles', finished ~= '' and finished or ARGV[3], ARGV[2])
return hash(pk)
""",
    # ARGV: P, pile, job, status, at → {position, the pile's hash (JSON)}, false if the pile is gone
    "append": _HELPERS + """
return log_result(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
""",
    # ARGV: P, pile, start, count (-1: all), submitted (1/0) → false (no pile) or {end, closed, n, job hashes (JSON)}
    "read": _HELPERS + """
local P, pk = ARGV[1], ARGV[1] .. ':pile:' .. ARGV[2]
if redis.call('EXISTS', pk) == 0 then return false end
local start, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local stop = count < 0 and -1 or start + count - 1
local submitted = ARGV[5] == '1'
local ids = redis.call('LRANGE', pk .. (submitted and ':m' or ':log'), start, stop)
local records = {}
for _, id in ipairs(ids) do
  local k = P .. ':job:' .. id
  if submitted then
    local status = redis.call('HGET', k, 'status')
    if status == 'queued' or status == 'running' then break end
  end
  records[#records + 1] = hash(k)
end
local h = redis.call('HMGET', pk, 'closed', 'n')
return {start + #records, h[1], h[2], records}
""",
    # ARGV: P, horizon → the ids of the piles expired now (their lists are left for `clean_pile`)
    "expire_piles": """
local P = ARGV[1]
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':piles', '-inf', ARGV[2])) do
  local pk = P .. ':pile:' .. id
  local h = redis.call('HMGET', pk, 'closed', 'finished', 'done', 'n')
  if h[2] ~= '' or (h[1] == '0' and h[3] == h[4]) then
    redis.call('DEL', pk)
    redis.call('ZREM', P .. ':piles', id)
    redis.call('SREM', P .. ':piles:open', id)
    gone[#gone + 1] = id
  end
end
return gone
""",
    # ARGV: P, pile, batch → members left (0: the pile's lists are gone); deletes records only the pile kept
    "clean_pile": """
local P, pk = ARGV[1], ARGV[1] .. ':pile:' .. ARGV[2]
local batch = tonumber(ARGV[3])
local ids = redis.call('LRANGE', pk .. ':m', 0, batch - 1)
for _, id in ipairs(ids) do
  local k = P .. ':job:' .. id
  if redis.call('HGET', k, 'listed') == '0' then redis.call('DEL', k) end
end
redis.call('LTRIM', pk .. ':m', batch, -1)
if #ids < batch then redis.call('DEL', pk .. ':m', pk .. ':log') return 0 end
return #ids
""",
    # ARGV: P, key, value, limit → false if claimed now, else the value stored
    "claim": """
local P = ARGV[1]
local found = redis.call('HGET', P .. ':keys', ARGV[2])
if found then return found end
redis.call('HSET', P .. ':keys', ARGV[2], ARGV[3])
redis.call('ZADD', P .. ':keys:order', redis.call('INCR', P .. ':keys:n'), ARGV[2])
local over = redis.call('HLEN', P .. ':keys') - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZPOPMIN', P .. ':keys:order', over)
  for i = 1, #old, 2 do redis.call('HDEL', P .. ':keys', old[i]) end
end
return false
""",
    # ARGV: P, key, value → 1 if forgotten (it still held that value)
    "unclaim": """
local P = ARGV[1]
if redis.call('HGET', P .. ':keys', ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HDEL', P .. ':keys', ARGV[2])
redis.call('ZREM', P .. ':keys:order', ARGV[2])
return 1
""",
}
