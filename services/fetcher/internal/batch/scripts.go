package batch

import "github.com/redis/go-redis/v9"

// The scripts below are the whole batching protocol. Each runs atomically in
// Redis, reads the time from Redis TIME (one clock for every fetcher), and
// builds its batch key names from the batch id. They therefore touch keys
// not passed in KEYS, which a single Redis (not Redis Cluster) allows.
//
// Keys (all documented in the README):
//   cp:batch:open:<coin>:<currency>  id of the batch still taking requests
//   cp:batch:<id>                    hash: coin, currency, size, state, flush_reason, owner, attempt, times
//   cp:batch:<id>:requests           list of "<requestId> <replyChannel> <deadlineMs>"
//   cp:batch:due                     zset: batch id -> when it is due, or when its flusher's lease ends
//   cp:batch:seq                     counter for batch ids (<coin>:<currency>:<ms>-<n>)

const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// enqueue adds one stream entry to its coin's open batch and acknowledges the
// entry in the same step, so an entry is either still pending (and will be
// reclaimed) or in exactly one batch.
// KEYS: stream, due zset, seq. ARGV: group, entry id, coin, currency,
// request id, reply channel, timeout ms, window ms, threshold, key ttl ms,
// lead ms. A batch is due at the end of its window, or earlier when one of
// its clients would otherwise give up first: lead ms before that client's
// deadline (a request reclaimed from a dead fetcher arrives late).
var enqueue = redis.NewScript(luaNow + `
local window, threshold, ttl, lead = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {'', 0, 'duplicate'}
end
local deadline = tonumber(string.match(ARGV[2], '^(%d+)')) + tonumber(ARGV[7])
if deadline <= now then
  return {'', 0, 'expired'}
end
local coin, cur = ARGV[3], ARGV[4]
local openKey = 'cp:batch:open:' .. coin .. ':' .. cur
local id = redis.call('GET', openKey)
if not id then
  -- The Redis time makes ids unique across Redis lifetimes: after a restart
  -- without data the counter starts again, and Postgres already holds rows
  -- keyed by the old ids.
  id = coin .. ':' .. cur .. ':' .. now .. '-' .. redis.call('INCR', KEYS[3])
  redis.call('HSET', 'cp:batch:' .. id, 'id', id, 'coin', coin, 'currency', cur, 'created_ms', now,
    'due_ms', now + window, 'size', 0, 'state', 'open', 'deadline_ms', deadline, 'attempt', 0)
  redis.call('PEXPIRE', 'cp:batch:' .. id, ttl)
  redis.call('SET', openKey, id, 'PX', window)
  redis.call('ZADD', KEYS[2], now + window, id)
end
local bkey = 'cp:batch:' .. id
redis.call('RPUSH', bkey .. ':requests', ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. deadline)
redis.call('PEXPIRE', bkey .. ':requests', ttl)
local size = redis.call('HINCRBY', bkey, 'size', 1)
if deadline < tonumber(redis.call('HGET', bkey, 'deadline_ms')) then
  redis.call('HSET', bkey, 'deadline_ms', deadline)
end
local latest = math.max(now, deadline - lead)
if size < threshold and latest < tonumber(redis.call('HGET', bkey, 'due_ms')) then
  redis.call('HSET', bkey, 'due_ms', latest)
  redis.call('ZADD', KEYS[2], latest, id)
end
if size >= threshold then
  redis.call('DEL', openKey)
  redis.call('HSET', bkey, 'state', 'full', 'flush_reason', 'threshold', 'due_ms', now)
  redis.call('ZADD', KEYS[2], now, id)
end
return {id, size, 'queued'}
`)

// claim takes the batches that are due, or whose flusher's lease ran out,
// and leases them to the caller. A window flush closes the batch to new
// requests here; a threshold flush closed it when it filled.
// KEYS: due zset. ARGV: owner, lease ms, max batches.
// Returns {now, {id, coin, currency, size, reason, attempt, deadline_ms, created_ms}...}.
var claim = redis.NewScript(luaNow + `
local lease, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max)
local out = {}
for _, id in ipairs(ids) do
  local bkey = 'cp:batch:' .. id
  local b = redis.call('HMGET', bkey, 'coin', 'currency', 'size', 'state', 'flush_reason', 'deadline_ms', 'created_ms')
  if not b[1] or b[4] == 'done' then
    redis.call('ZREM', KEYS[1], id)
  else
    local reason = b[5]
    if b[4] == 'open' then
      local openKey = 'cp:batch:open:' .. b[1] .. ':' .. b[2]
      if redis.call('GET', openKey) == id then
        redis.call('DEL', openKey)
      end
      reason = 'window'
    end
    local attempt = redis.call('HINCRBY', bkey, 'attempt', 1)
    redis.call('HSET', bkey, 'state', 'flushing', 'flush_reason', reason, 'owner', ARGV[1], 'claimed_ms', now)
    redis.call('ZADD', KEYS[1], now + lease, id)
    table.insert(out, {id, b[1], b[2], tonumber(b[3]), reason, attempt, tonumber(b[6]), tonumber(b[7])})
  end
end
return {now, out}
`)

// renew extends the caller's leases; it returns the ids still the caller's.
// KEYS: due zset. ARGV: owner, lease ms, ids...
var renew = redis.NewScript(luaNow + `
local lease = tonumber(ARGV[2])
local kept = {}
for i = 3, #ARGV do
  local bkey = 'cp:batch:' .. ARGV[i]
  if redis.call('HGET', bkey, 'owner') == ARGV[1] and redis.call('HGET', bkey, 'state') == 'flushing' then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
    table.insert(kept, ARGV[i])
  end
end
return kept
`)

// complete answers every request of a batch the caller still owns: the same
// payload is kept under each request's result key (for a listener that
// missed the publish) and published on its reply channel. A fetched price is
// also queued on the records stream for Postgres. A caller that lost its
// lease to another fetcher answers nothing, so no request is answered twice.
// KEYS: due zset, records stream. ARGV: owner, batch id, payload, result ttl
// ms, keep ms, records maxlen, then record fields (field, value, ...) or none.
// Returns the number of requests answered, or -1 when the lease was lost.
var complete = redis.NewScript(luaNow + `
local bkey = 'cp:batch:' .. ARGV[2]
if redis.call('HGET', bkey, 'owner') ~= ARGV[1] or redis.call('HGET', bkey, 'state') ~= 'flushing' then
  return -1
end
local reqs = redis.call('LRANGE', bkey .. ':requests', 0, -1)
for _, r in ipairs(reqs) do
  local id, channel = string.match(r, '^(%S+) (%S+)')
  if id then
    redis.call('SET', 'cp:price:result:' .. id, ARGV[3], 'PX', tonumber(ARGV[4]))
    redis.call('PUBLISH', channel, ARGV[3])
  end
end
redis.call('HSET', bkey, 'state', 'done', 'done_ms', now)
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('PEXPIRE', bkey, tonumber(ARGV[5]))
redis.call('PEXPIRE', bkey .. ':requests', tonumber(ARGV[5]))
if #ARGV > 6 then
  local fields = {}
  for i = 7, #ARGV do table.insert(fields, ARGV[i]) end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(fields))
end
return #reqs
`)
