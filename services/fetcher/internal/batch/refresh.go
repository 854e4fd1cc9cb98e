package batch

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/libs/watchlist"
)

// Watched coins (price.WatchKey) are refreshed by exactly one fetcher at a
// time: a fetcher claims a coin (price.RefreshClaimKey, with a lease) in the
// same atomic step that finds it due, and the claim ends when the
// refreshed price is recorded, or by itself when the lease runs out (its
// fetcher died, or the call failed). A coin is due when its newest price
// (any fetch: a batch's or a refresh) is older than the age asked for.

// luaRefreshClaims is shared by both claims. claim_due claims, for owner,
// up to max watched coins whose newest price is at least min_age old,
// skipping the members in skip, and returns them; any_due says whether a
// coin not claimed by anyone is at least min_age old.
var luaRefreshClaims = `
local function age(m)
  return now - tonumber(redis.call('HGET', LAST_PREFIX .. m, 'fetched_ms') or '0')
end
local function any_due(watch_set, min_age)
  for _, m in ipairs(redis.call('ZRANGE', watch_set, 0, -1)) do
    if age(m) >= min_age and redis.call('EXISTS', CLAIM_PREFIX .. m) == 0 then return true end
  end
  return false
end
local function claim_due(watch_set, owner, min_age, lease, max, skip)
  local out = {}
  if max <= 0 then return out end
  for _, m in ipairs(redis.call('ZRANGE', watch_set, 0, -1)) do
    if not skip[m] and age(m) >= min_age and redis.call('SET', CLAIM_PREFIX .. m, owner, 'NX', 'PX', lease) then
      table.insert(out, m)
      if #out >= max then break end
    end
  end
  return out
end
`

// rideAlong claims the watched coins due for a call that is being made
// anyway. KEYS: watch set. ARGV: owner, min age ms, lease ms, max, then the
// members the call carries already. Returns {now, members}.
var rideAlong = redis.NewScript(luaNames + luaNow + luaRefreshClaims + `
local skip = {}
for i = 5, #ARGV do skip[ARGV[i]] = true end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {now, claim_due(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), skip)}
`)

// ownCall claims the due watched coins for a call of their own, only from
// spare budget: when no request batch is open, due, waiting or in flight
// (it would need the slot, and a refresh rides along on its call instead),
// when CoinGecko asked for no cooldown, and when the budget is full (every
// burst slot free). Once one coin is due, the call also takes the coins old
// enough to ride along, so that coins watched at different times come due
// together after one period and share calls. It spends the slot
// atomically with the claim.
// KEYS: watch set, due zset, cooldown, budget. ARGV: owner, due age ms,
// ride age ms, lease ms, max, interval ms. Returns {now, members}; none
// when nothing is due or the budget is not spare.
var ownCall = redis.NewScript(luaNames + luaNow + luaSlot + luaRefreshClaims + `
local watch_set, due_set, cooldown, budget = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, due_age, ride_age, lease, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local interval = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', watch_set, '-inf', now)
if redis.call('ZCARD', due_set) > 0 or slot_at(cooldown, budget, interval, 0) > now or not any_due(watch_set, due_age) then
  return {now, {}}
end
local out = claim_due(watch_set, owner, ride_age, lease, max, {})
if #out > 0 then take_slot(budget, interval) end
return {now, out}
`)

// refreshed records refreshed prices like any fetched price: each is kept
// as its coin's newest price (unless a newer one is there) and queued for
// Postgres, and the owner's claim on the coin ends. The claims on coins the
// call brought no price for (unknown to CoinGecko) are held for hold ms
// instead, so that they are not asked for again at every lease.
// KEYS: records stream. ARGV: owner, records maxlen, last-price ttl ms,
// hold ms, the number n of coins without a price, those n members, then
// per price: coin, currency, price, fetched ms, fetched at (RFC 3339),
// batch id.
var refreshed = redis.NewScript(luaNames + `
local owner, maxlen, last_ttl, hold = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local missing = tonumber(ARGV[5])
for i = 6, 5 + missing do
  local claim = CLAIM_PREFIX .. ARGV[i]
  if redis.call('GET', claim) == owner then redis.call('PEXPIRE', claim, hold) end
end
for i = 6 + missing, #ARGV, 6 do
  local coin, cur, p, ms, at, id = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local lkey = last_key(coin, cur)
  if tonumber(ms) >= tonumber(redis.call('HGET', lkey, 'fetched_ms') or '0') then
    redis.call('HSET', lkey, 'price', p, 'fetched_ms', ms, 'batch', id)
    redis.call('PEXPIRE', lkey, last_ttl)
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', '` + RecCoin + `', coin, '` + RecCurrency + `', cur,
    '` + RecPrice + `', p, '` + RecFetchedAt + `', at, '` + RecBatchID + `', id)
  local claim = CLAIM_PREFIX .. coin .. ':' .. cur
  if redis.call('GET', claim) == owner then redis.call('DEL', claim) end
end
return 0
`)

// RefreshClaim is a set of watched coins claimed for one upstream call.
type RefreshClaim struct {
	Coins []watchlist.Coin
	// The claim's Redis time and the local time it was read at.
	claimedRedis, claimedLocal time.Time
}

// RedisNow is the Redis clock now, read off the claim's time.
func (c RefreshClaim) RedisNow() time.Time { return c.claimedRedis.Add(time.Since(c.claimedLocal)) }

// RideAlong claims for owner, for lease, up to max watched coins whose
// newest price is at least minAge old and which the call does not carry
// already (carried, "<coin>:<currency>").
func (s *Store) RideAlong(ctx context.Context, owner string, minAge, lease time.Duration, max int, carried []string) (RefreshClaim, error) {
	args := []any{owner, minAge.Milliseconds(), lease.Milliseconds(), max}
	return refreshClaim("ride along", rideAlong.Run(ctx, s.rdb, []string{price.WatchKey}, append(args, toAny(carried)...)...))
}

// OwnCall claims for owner, for lease, once a watched coin's newest price
// is dueAge old, up to max watched coins at least rideAge old, for a call
// of their own, and spends its upstream slot; it claims nothing unless the
// budget is spare (see ownCall).
func (s *Store) OwnCall(ctx context.Context, owner string, dueAge, rideAge, lease time.Duration, max int) (RefreshClaim, error) {
	interval, _ := s.set.Budget.gcra()
	return refreshClaim("refresh call", ownCall.Run(ctx, s.rdb, []string{price.WatchKey, price.DueKey, price.CooldownKey, price.BudgetKey},
		owner, dueAge.Milliseconds(), rideAge.Milliseconds(), lease.Milliseconds(), max, interval))
}

func refreshClaim(what string, cmd *redis.Cmd) (RefreshClaim, error) {
	res, err := cmd.Result()
	if err != nil {
		return RefreshClaim{}, fmt.Errorf("claim watched coins for a %s: %w", what, err)
	}
	local := time.Now()
	f := decode("claim watched coins", res, 2)
	now, members := f.int(0), f.list(1)
	if f.err != nil {
		return RefreshClaim{}, f.err
	}
	out := RefreshClaim{claimedRedis: time.UnixMilli(now), claimedLocal: local}
	for _, m := range members {
		s, _ := m.(string)
		if c, ok := watchlist.ParseMember(s); ok {
			out.Coins = append(out.Coins, c)
		}
	}
	return out, nil
}

// Refreshed records refreshed prices (their records carry the refresh's
// batch id) and ends owner's claims on their coins; the claims on missing
// coins (no price in the answer) are held for hold.
func (s *Store) Refreshed(ctx context.Context, owner string, recs []Record, missing []watchlist.Coin, hold time.Duration) error {
	if len(recs) == 0 && len(missing) == 0 {
		return nil
	}
	args := make([]any, 0, 5+len(missing)+6*len(recs))
	args = append(args, owner, s.set.RecordsMaxLen, s.set.LastTTL.Milliseconds(), hold.Milliseconds(), len(missing))
	for _, c := range missing {
		args = append(args, c.Member())
	}
	for _, r := range recs {
		args = append(args, r.Coin, r.Currency, r.Price, r.FetchedAt.UnixMilli(), r.FetchedAt.UTC().Format(time.RFC3339Nano), r.BatchID)
	}
	if err := refreshed.Run(ctx, s.rdb, []string{price.RecordsStream}, args...).Err(); err != nil {
		return fmt.Errorf("record %d refreshed prices: %w", len(recs), err)
	}
	return nil
}
