package throttle

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
const slidingWindowCheck = `
-- Rule i's arguments: its log KEYS[i], its limit ARGV[2i-1], its window
-- ARGV[2i]. A function rather than a table of rules: no allocation per check.
local function rule(i)
  return KEYS[i], tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
end

local function check(n)
  local t = redis.call('TIME')
  local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
  local now = tonumber(stamp)

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
      -- exactly as long as it holds anything that counts.
      redis.call('PEXPIRE', key, math.ceil(window / 1000))
      count = count + 1
      reset = window
    elseif count > 0 then
      local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      reset = tonumber(newest[2]) + window - now
      if count >= limit then
        -- The hit whose expiry brings the count below the limit.
        local k = count - limit
        local oldest = redis.call('ZRANGE', key, k, k, 'WITHSCORES')
        retry = tonumber(oldest[2]) + window - now
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
