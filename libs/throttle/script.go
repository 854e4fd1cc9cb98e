package throttle

// logLua are the Lua functions every script uses on a log: a sorted set of
// hits scored by the microsecond they count from.
const logLua = `
-- clock is Redis's time: a microsecond stamp, as a string and as a number.
local function clock()
  local t = redis.call('TIME')
  local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
  return stamp, tonumber(stamp)
end

-- untilFree is how long until the log of key, holding count >= limit hits,
-- holds fewer than limit: until the hit whose expiry brings it below leaves.
local function untilFree(key, count, limit, window, now)
  local k = count - limit
  local oldest = redis.call('ZRANGE', key, k, k, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end

-- untilEmpty is how long until the non-empty log of key holds no hits.
local function untilEmpty(key, window, now)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  return tonumber(newest[2]) + window - now
end

-- keepFor makes key live at least window microseconds from now, never
-- shortening a longer life, and returns how long it will live, in
-- microseconds. PTTL is -1 for a key without an expiry, as a new one is.
local function keepFor(key, window)
  local ms = math.ceil(window / 1000)
  local ttl = redis.call('PTTL', key)
  if ttl < ms then
    redis.call('PEXPIRE', key, ms)
    return window
  end
  return ttl * 1000
end
`

// slidingWindowCheck is the Lua function both scripts share: check(n) checks
// the first n keys' rules and, only if all of them allow the request, records
// the hit in each, all in one atomic step on the server.
//
// KEYS[i] is rule i's log: a sorted set of accepted hits scored by the
// microsecond Redis saw them. ARGV[2i-1] is rule i's limit, ARGV[2i] its window
// in microseconds. The reply is {allowed, count_1, retry_1, reset_1, ...}:
// count is the hits in the window (including this one when allowed), retry is
// how long until rule i has a free slot (0 when it has one), reset is how long
// until its window holds no hits; times in microseconds.
//
// The clock is Redis's TIME, so gateways with skewed clocks still share one
// timeline. Redis 5+ replicates a script's effects rather than the script, so
// reading TIME before writing is allowed.
const slidingWindowCheck = logLua + `
-- Rule i's arguments: its log KEYS[i], its limit ARGV[2i-1], its window
-- ARGV[2i]. A function rather than a table of rules: no allocation per check.
local function rule(i)
  return KEYS[i], tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
end

local function check(n)
  local stamp, now = clock()

  -- A hit counts while it is less than a window old: the window is (now-W, now].
  local counts, allowed = {}, 1
  for i = 1, n do
    local key, limit, window = rule(i)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    counts[i] = redis.call('ZCARD', key)
    if counts[i] >= limit then allowed = 0 end
  end

  local out = {allowed}
  for i = 1, n do
    local key, limit, window = rule(i)
    local count, retry, reset = counts[i], 0, 0
    if allowed == 1 then
      -- Hits in the same microsecond get distinct suffixes; a plain ZADD would
      -- overwrite the first with the second and undercount.
      local seq = 0
      while redis.call('ZADD', key, 'NX', stamp, stamp .. '-' .. seq) == 0 do
        seq = seq + 1
      end
      -- The newest hit is the last to leave the window, so the key lives
      -- exactly as long as it holds anything that counts; a lease (see
      -- leaseLua) may hold slots that count for longer, and then the key
      -- keeps its longer life.
      reset = keepFor(key, window)
      count = count + 1
    elseif count > 0 then
      reset = untilEmpty(key, window, now)
      if count >= limit then
        retry = untilFree(key, count, limit, window, now)
      end
    end
    out[#out + 1] = count
    out[#out + 1] = retry
    out[#out + 1] = reset
  end
  return out, allowed
end
`

// slidingWindowLua is a check of every key's rule.
const slidingWindowLua = slidingWindowCheck + `
local out = check(#KEYS)
return out
`

// slidingWindowAddLua is a check of every key's rule but the last, and, only
// when it allows the request, XADD to the stream named by the last key: the
// reply then ends with the new entry's id. After the rules' ARGV come the
// stream's approximate MAXLEN (0: no trimming) and the entry's field/value
// pairs. A denied request never reaches the stream, and an allowed one costs
// one round trip instead of two.
const slidingWindowAddLua = slidingWindowCheck + `
local n = #KEYS - 1
-- After the rules: the stream (the last key), its MAXLEN, and from ARGV
-- index first_field on, the entry's field/value pairs.
local stream, maxlen, first_field = KEYS[n + 1], ARGV[2*n + 1], 2*n + 2
local out, allowed = check(n)
if allowed == 1 then
  if maxlen == '0' then
    out[#out + 1] = redis.call('XADD', stream, '*', unpack(ARGV, first_field))
  else
    out[#out + 1] = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, first_field))
  end
end
return out
`

// leaseLua takes up to ARGV[3] slots at once from the rule of KEYS[1] (limit
// ARGV[1], window ARGV[2] microseconds) for a lease that the caller spends
// within ARGV[4] microseconds (its term), one slot a request. ARGV[5] on
// name slots of the caller's last lease to give back first.
//
// Leased slots are logged, scored at the END of the term: a slot spent at
// any instant of the term then counts at least as long as a hit logged when
// it was spent would, so the check (hits scored after now-window, plus the
// slots wanted, within the limit) still lets at most limit requests through
// in any span of one window, whatever mix of leases and single hits made
// them. The price is that a slot counts up to one term longer than needed.
//
// The members are <prefix>1 .. <prefix>n, so the caller can give back the
// slots it did not spend (ZREM) when the term ends. The reply is {granted,
// count, retry, reset, prefix}: count is the hits logged after the grant;
// retry and reset are as in check, in microseconds.
const leaseLua = logLua + `
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local wanted, term = tonumber(ARGV[3]), tonumber(ARGV[4])
local stamp, now = clock()

-- From ARGV[5] on: the unspent slots of this instance's last lease, given
-- back before counting.
if #ARGV > 4 then
  redis.call('ZREM', key, unpack(ARGV, 5))
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local granted = math.max(math.min(wanted, limit - count), 0)
local retry, reset, prefix = 0, 0, ''
if granted > 0 then
  -- Two leases in one microsecond get distinct prefixes.
  local seq = 0
  repeat
    prefix = 'lease-' .. stamp .. '-' .. seq .. '-'
    seq = seq + 1
  until redis.call('ZSCORE', key, prefix .. '1') == false
  local score = now + term
  local args = {}
  for i = 1, granted do
    args[#args + 1] = score
    args[#args + 1] = prefix .. i
  end
  redis.call('ZADD', key, unpack(args))
  reset = keepFor(key, window + term)
  count = count + granted
end
if count >= limit then
  retry = untilFree(key, count, limit, window, now)
end
if granted == 0 and count > 0 then
  reset = untilEmpty(key, window, now)
end
return {granted, count, retry, reset, prefix}
`

// giveBackLua removes the lease slots named in ARGV from the log KEYS[1].
const giveBackLua = `return redis.call('ZREM', KEYS[1], unpack(ARGV))`
