package batch

import (
	"strconv"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// The scripts below are the whole batching protocol. Each runs atomically in
// Redis, reads the time from Redis TIME (one clock for every fetcher), and
// builds its batch key names from the batch id. They therefore touch keys
// not passed in KEYS, which a single Redis (not Redis Cluster) allows. Every
// script names its KEYS and ARGV at its top; the prefixes of the keys it
// builds come from libs/price through luaNames.
//
// Keys (named in libs/price/keys.go, all documented in docs/redis.md):
//   cp:batch:open:<coin>:<currency>  id of the batch still taking requests
//   cp:batch:<id>                    hash: coin, currency, size, state, flush_reason, owner, attempt, source, times
//   cp:batch:<id>:requests           list of "<requestId> <replyChannel> <deadlineMs>"
//   cp:batch:due                     zset: batch id -> when it is due, or when its flusher's lease ends
//   cp:batch:seq                     counter for batch ids (<coin>:<currency>:<ms>-<n>)
//   cp:batch:wake                    channel: "<due ms> <now ms>" when a batch comes due sooner than fetchers knew
//   cp:upstream:budget               GCRA theoretical arrival time (ms) of the next upstream call
//   cp:upstream:cooldown             set while CoinGecko asked us to wait (429)
//   cp:price:last:<coin>:<currency>  hash: price, fetched_ms, batch of the newest fetched price
//   cp:watch:coins                   zset: watched "<coin>:<currency>" -> when its registration expires (refresh.go)
//   cp:watch:claim:<coin>:<currency> the fetcher refreshing that coin now, with a lease (refresh.go)

// luaNames is the scripts' preamble: libs/price's key prefixes as Lua
// strings (printable ASCII, which Go and Lua quote alike) and the key
// builders the scripts share, so no script spells a key name.
var luaNames = `
local BATCH_PREFIX, REQUESTS_SUFFIX = ` + strconv.Quote(price.BatchPrefix) + `, ` + strconv.Quote(price.BatchRequestsSuffix) + `
local OPEN_PREFIX, RESULT_PREFIX, LAST_PREFIX = ` + strconv.Quote(price.OpenBatchPrefix) + `, ` +
	strconv.Quote(price.ResultPrefix) + `, ` + strconv.Quote(price.LastPricePrefix) + `
local function batch_key(id) return BATCH_PREFIX .. id end
local function requests_key(id) return BATCH_PREFIX .. id .. REQUESTS_SUFFIX end
local function open_key(coin, cur) return OPEN_PREFIX .. coin .. ':' .. cur end
local function result_key(request_id) return RESULT_PREFIX .. request_id end
local function last_key(coin, cur) return LAST_PREFIX .. coin .. ':' .. cur end
local CLAIM_PREFIX = ` + strconv.Quote(price.RefreshClaimPrefix) + `
`

const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// luaSlot computes when the next upstream call may start: after CoinGecko's
// cooldown, and when the shared budget (GCRA: one call per interval, with a
// burst of tolerance/interval + 1) allows it. take_slot spends the slot.
// Both need the cooldown and budget keys and the interval and tolerance ms;
// an interval of 0 means no budget.
const luaSlot = `
local function slot_at(cooldown_key, budget_key, interval, tolerance)
  local at = now
  local cool = redis.call('PTTL', cooldown_key)
  if cool > 0 then at = now + cool end
  if interval > 0 then
    local tat = tonumber(redis.call('GET', budget_key) or '0')
    if tat - tolerance > at then at = tat - tolerance end
  end
  return at
end
local function take_slot(budget_key, interval)
  if interval > 0 then
    local tat = tonumber(redis.call('GET', budget_key) or '0')
    if tat < now then tat = now end
    redis.call('SET', budget_key, tat + interval, 'PX', tat + interval - now + 60000)
  end
end
local function fresh_snapshot(coin, cur, max_age)
  if max_age <= 0 then return nil end
  local last = redis.call('HMGET', last_key(coin, cur), 'price', 'fetched_ms')
  if last[1] and now - tonumber(last[2]) < max_age then return last end
  return nil
end
`

// enqueue adds one stream entry to its coin's open batch and acknowledges the
// entry in the same step, so an entry is either still pending (and will be
// reclaimed) or in exactly one batch.
//
// A batch is due at the end of its window, or earlier when one of its
// clients would otherwise give up first: lead ms before that client's
// deadline (a request reclaimed from a dead fetcher arrives late). It is due
// at once when it reaches the threshold; it then stops taking requests only
// if it can be answered now (an upstream slot is free, or a fresh snapshot
// exists), so that while the budget is spent one batch per coin gathers
// every waiting request and one call answers them all.
//
// KEYS: stream, due zset, seq, cooldown, budget. ARGV: group, entry id, coin,
// currency, request id, reply channel, timeout ms, window ms, threshold, key
// ttl ms, lead ms, interval ms, tolerance ms, snapshot max age ms, wake
// channel. Returns {batch id, size, outcome, due ms, now}; due ms is 0 when
// the batch's due time did not move.
var enqueue = redis.NewScript(luaNames + luaNow + luaSlot + `
local stream, due_set, seq, cooldown, budget = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, entry_id, coin, cur = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local request_id, reply_to, timeout = ARGV[5], ARGV[6], tonumber(ARGV[7])
local window, threshold, ttl, lead = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local interval, tolerance, max_age = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local wake = ARGV[15]
if redis.call('XACK', stream, group, entry_id) == 0 then
  return {'', 0, 'duplicate', 0, now}
end
local deadline = tonumber(string.match(entry_id, '^(%d+)')) + timeout
if deadline <= now then
  return {'', 0, 'expired', 0, now}
end
local openKey = open_key(coin, cur)
local id = redis.call('GET', openKey)
-- Every redis.call costs more than the work it does, and this runs once
-- per request: the batch's fields are read in one HMGET and written in one
-- HSET, and a new batch's in one HSET with its first request.
local b
if id then
  b = redis.call('HMGET', batch_key(id), 'deadline_ms', 'due_ms', 'state')
  -- An open batch whose hash is gone (expired) is replaced.
  if not b[1] then id = nil end
end
local created = not id
if created then
  -- The Redis time makes ids unique across Redis lifetimes: after a restart
  -- without data the counter starts again, and Postgres already holds rows
  -- keyed by the old ids.
  id = coin .. ':' .. cur .. ':' .. now .. '-' .. redis.call('INCR', seq)
  -- Closed by the claim (or at the threshold), not by expiry: a due batch
  -- waiting for an upstream slot keeps taking requests.
  redis.call('SET', openKey, id, 'PX', ttl)
end
local bkey, rkey = batch_key(id), requests_key(id)
-- The list's length is the batch's size (shed and complete keep it so).
local size = redis.call('RPUSH', rkey, request_id .. ' ' .. reply_to .. ' ' .. deadline)
if size == 1 then
  redis.call('PEXPIRE', rkey, ttl)
end
local set = {'size', size}
local old_deadline, due, state
if created then
  old_deadline, due, state = deadline, now + window, 'open'
  for _, f in ipairs({'id', id, 'coin', coin, 'currency', cur, 'created_ms', now, 'due_ms', due,
      'state', state, 'deadline_ms', deadline, 'attempt', 0}) do
    table.insert(set, f)
  end
else
  old_deadline, due, state = tonumber(b[1]), tonumber(b[2]), b[3]
  if deadline < old_deadline then
    table.insert(set, 'deadline_ms'); table.insert(set, deadline)
  end
end
local moved = 0
if created then moved = due end
local latest = math.max(now, deadline - lead)
if size < threshold and latest < due then
  table.insert(set, 'due_ms'); table.insert(set, latest)
  moved = latest
end
local close = false
if size >= threshold and state ~= 'full' then
  for _, f in ipairs({'state', 'full', 'flush_reason', 'threshold', 'due_ms', now}) do
    table.insert(set, f)
  end
  moved = now
  close = slot_at(cooldown, budget, interval, tolerance) <= now or fresh_snapshot(coin, cur, max_age)
end
redis.call('HSET', bkey, unpack(set))
if created then
  redis.call('PEXPIRE', bkey, ttl)
end
if moved > 0 then
  redis.call('ZADD', due_set, moved, id)
end
if close then
  redis.call('DEL', openKey)
end
-- Due now needs no announcement: the caller claims it at once.
if moved > now then
  redis.call('PUBLISH', wake, moved .. ' ' .. now)
end
return {id, size, 'queued', moved, now}
`)

// claim leases the due batches (and those whose flusher's lease ran out) to
// the caller, as many as one upstream call can carry. A batch whose coin has
// a fresh snapshot is claimed to be answered from it; every other batch
// needs an upstream slot, and the slot is spent here, atomically with the
// claim, so fetchers never spend the budget on calls nobody makes. Batches
// that must wait for a slot stay due and keep taking requests.
//
// KEYS: due zset, cooldown, budget. ARGV: owner, lease ms, max batches,
// interval ms, tolerance ms, snapshot max age ms, key ttl ms, horizon ms.
// Returns {now, claimed, next due ms or -1, slot ms, waiting} where claimed
// rows are {id, coin, currency, size, reason, attempt, deadline_ms,
// created_ms, source, snapshot price, snapshot fetched ms} and waiting rows
// {id, deadline_ms}.
var claim = redis.NewScript(luaNames + luaNow + luaSlot + `
local due_set, cooldown, budget = KEYS[1], KEYS[2], KEYS[3]
local owner, lease, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, tolerance, max_age, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local horizon = tonumber(ARGV[8])
-- Once something is due, the call also carries the batches whose window
-- ends within the horizon: one call instead of several a few ms apart.
local ids = {}
if #redis.call('ZRANGEBYSCORE', due_set, '-inf', now, 'LIMIT', 0, 1) > 0 then
  ids = redis.call('ZRANGEBYSCORE', due_set, '-inf', now + horizon, 'WITHSCORES', 'LIMIT', 0, max)
end
local slot = slot_at(cooldown, budget, interval, tolerance)
local out, waiting, spent = {}, {}, false
for i = 1, #ids, 2 do
  local id, score = ids[i], tonumber(ids[i + 1])
  local bkey = batch_key(id)
  local b = redis.call('HMGET', bkey, 'coin', 'currency', 'size', 'state', 'flush_reason', 'deadline_ms', 'created_ms')
  if not b[1] or b[4] == 'done' then
    redis.call('ZREM', due_set, id)
  elseif score > now and (b[4] == 'flushing' or slot > now) then
    -- A live lease, or an early batch that would only wait: not yet.
  else
    local openKey = open_key(b[1], b[2])
    local snap = fresh_snapshot(b[1], b[2], max_age)
    if snap or slot <= now then
      if redis.call('GET', openKey) == id then
        redis.call('DEL', openKey)
      end
      local reason = b[5]
      if b[4] == 'open' then reason = 'window' end
      local source = 'coingecko'
      if snap then source = 'snapshot' else spent = true end
      local attempt = redis.call('HINCRBY', bkey, 'attempt', 1)
      redis.call('HSET', bkey, 'state', 'flushing', 'flush_reason', reason, 'owner', owner, 'claimed_ms', now, 'source', source)
      redis.call('ZADD', due_set, now + lease, id)
      table.insert(out, {id, b[1], b[2], tonumber(b[3]), reason, attempt, tonumber(b[6]), tonumber(b[7]),
        source, snap and snap[1] or '', snap and tonumber(snap[2]) or 0})
    else
      -- Waiting for a slot: a full batch that closed at its threshold opens
      -- again, so new requests for the coin join it instead of queueing
      -- behind it.
      if b[4] ~= 'flushing' and not redis.call('GET', openKey) then
        redis.call('SET', openKey, id, 'PX', ttl)
      end
      table.insert(waiting, {id, tonumber(b[6])})
    end
  end
end
if spent then
  take_slot(budget, interval)
end
local nxt = redis.call('ZRANGE', due_set, 0, 0, 'WITHSCORES')
local next_due = -1
if nxt[2] then next_due = tonumber(nxt[2]) end
return {now, out, next_due, slot, waiting}
`)

// shed answers, with the given payload, the requests of a waiting batch
// whose deadline comes before the cutoff: they cannot wait for the next
// upstream slot. The rest keep waiting. A batch left empty is done.
// KEYS: due zset. ARGV: batch id, cutoff as ms from now, payload, result
// ttl ms, keep ms.
// Returns the number of requests answered.
var shed = redis.NewScript(luaNames + luaNow + `
local due_set = KEYS[1]
local id, cutoff, payload = ARGV[1], now + tonumber(ARGV[2]), ARGV[3]
local result_ttl, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local bkey, rkey = batch_key(id), requests_key(id)
local b = redis.call('HMGET', bkey, 'coin', 'currency', 'state')
if not b[1] or b[3] == 'done' or b[3] == 'flushing' then
  return 0
end
local reqs = redis.call('LRANGE', rkey, 0, -1)
local kept, n, earliest = {}, 0, nil
for _, r in ipairs(reqs) do
  local rid, channel, dl = string.match(r, '^(%S+) (%S+) (%d+)')
  if rid and tonumber(dl) < cutoff then
    redis.call('SET', result_key(rid), payload, 'PX', result_ttl)
    redis.call('PUBLISH', channel, payload)
    n = n + 1
  else
    table.insert(kept, r)
    if dl and (not earliest or tonumber(dl) < earliest) then earliest = tonumber(dl) end
  end
end
if n == 0 then return 0 end
redis.call('DEL', rkey)
if #kept == 0 then
  local openKey = open_key(b[1], b[2])
  if redis.call('GET', openKey) == id then redis.call('DEL', openKey) end
  redis.call('HSET', bkey, 'state', 'done', 'done_ms', now, 'size', 0)
  redis.call('ZREM', due_set, id)
  redis.call('PEXPIRE', bkey, keep)
else
  redis.call('RPUSH', rkey, unpack(kept))
  redis.call('PEXPIRE', rkey, keep + 600000)
  redis.call('HSET', bkey, 'size', #kept, 'deadline_ms', earliest)
end
return n
`)

// takeSlot spends an upstream slot for a retry if one is free now, and
// otherwise says how long until the next. KEYS: cooldown, budget. ARGV:
// interval ms, tolerance ms. Returns 0 (taken) or the wait in ms.
var takeSlot = redis.NewScript(luaNames + luaNow + luaSlot + `
local cooldown, budget = KEYS[1], KEYS[2]
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = slot_at(cooldown, budget, interval, tolerance)
if at > now then return at - now end
take_slot(budget, interval)
return 0
`)

// renew extends the caller's leases; it returns the ids still the caller's.
// KEYS: due zset. ARGV: owner, lease ms, ids...
var renew = redis.NewScript(luaNames + luaNow + `
local due_set = KEYS[1]
local owner, lease = ARGV[1], tonumber(ARGV[2])
-- ARGV[3] on: the batch ids.
local kept = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local bkey = batch_key(id)
  if redis.call('HGET', bkey, 'owner') == owner and redis.call('HGET', bkey, 'state') == 'flushing' then
    redis.call('ZADD', due_set, 'XX', now + lease, id)
    table.insert(kept, id)
  end
end
return kept
`)

// complete answers every request of a batch the caller still owns: the same
// payload is kept under each request's result key (for a listener that
// missed the publish) and published on its reply channel. A fetched price is
// also queued on the records stream for Postgres and kept as the coin's
// newest price (the snapshot, and the stale fallback), unless a newer one is
// there already. A caller that lost its lease to another fetcher answers
// nothing, so no request is answered twice.
// KEYS: due zset, records stream. ARGV: owner, batch id, payload, result ttl
// ms, keep ms, records maxlen, price (” for none), fetched ms, last-price
// ttl ms, then record fields (field, value, ...) or none.
// Returns the number of requests answered, or -1 when the lease was lost.
var complete = redis.NewScript(luaNames + luaNow + `
local due_set, records = KEYS[1], KEYS[2]
local owner, id, payload = ARGV[1], ARGV[2], ARGV[3]
local result_ttl, keep, records_maxlen = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local last_price, fetched_ms, last_ttl = ARGV[7], ARGV[8], tonumber(ARGV[9])
-- ARGV[10] on: the record's fields and values, or none.
local bkey, rkey = batch_key(id), requests_key(id)
local b = redis.call('HMGET', bkey, 'owner', 'state', 'coin', 'currency')
if b[1] ~= owner or b[2] ~= 'flushing' then
  return -1
end
local reqs = redis.call('LRANGE', rkey, 0, -1)
for _, r in ipairs(reqs) do
  local rid, channel = string.match(r, '^(%S+) (%S+)')
  if rid then
    redis.call('SET', result_key(rid), payload, 'PX', result_ttl)
    redis.call('PUBLISH', channel, payload)
  end
end
redis.call('HSET', bkey, 'state', 'done', 'done_ms', now, 'size', #reqs)
redis.call('ZREM', due_set, id)
redis.call('PEXPIRE', bkey, keep)
redis.call('PEXPIRE', rkey, keep)
if last_price ~= '' then
  local lkey = last_key(b[3], b[4])
  local have = tonumber(redis.call('HGET', lkey, 'fetched_ms') or '0')
  if tonumber(fetched_ms) >= have then
    redis.call('HSET', lkey, 'price', last_price, 'fetched_ms', fetched_ms, 'batch', id)
    redis.call('PEXPIRE', lkey, last_ttl)
  end
end
if #ARGV > 9 then
  local fields = {}
  for i = 10, #ARGV do table.insert(fields, ARGV[i]) end
  redis.call('XADD', records, 'MAXLEN', '~', records_maxlen, '*', unpack(fields))
end
return #reqs
`)
