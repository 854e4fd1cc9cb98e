// Package watchlist is the set of watched coins: coins whose price the
// fetchers keep fresh (WATCH_REFRESH_MS) although nobody asks for it.
// Gateways register the coins their stream clients follow and fetchers the
// coins of their WATCH_COINS setting, each registration expiring unless its
// owner renews it, so a coin nobody watches any more drops out by itself.
// The set is one Redis sorted set (price.WatchKey) of "<coin>:<currency>"
// scored by the Redis time its registration expires:
//
//	ZRANGE cp:watch:coins 0 -1 WITHSCORES
package watchlist

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// TTL is how long a registration lasts unless renewed; owners renew theirs
// every third of it, so one lost renewal drops nothing.
const TTL = 30 * time.Second

// Coin is a watched coin in one currency.
type Coin struct {
	ID       string
	Currency string
}

// Member is c's member of the watch set, "<coin>:<currency>".
func (c Coin) Member() string { return c.ID + ":" + c.Currency }

// DefaultCurrency is the currency of a WATCH_COINS entry that names none.
const DefaultCurrency = "usd"

// MaxCoins bounds a WATCH_COINS list: five full upstream calls.
const MaxCoins = 2575

// Parse reads a WATCH_COINS list: comma-separated coin ids, each optionally
// followed by ":<currency>" (usd when absent). Blanks around entries are
// ignored and a coin named twice is kept once; an invalid entry is an
// error naming it.
func Parse(list string) ([]Coin, error) {
	var out []Coin
	seen := map[Coin]bool{}
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, cur, found := strings.Cut(entry, ":")
		if !found {
			cur = DefaultCurrency
		}
		if err := price.ValidateCoinID(id); err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		if err := price.ValidateCurrency(cur); err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		c := Coin{ID: id, Currency: cur}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	if len(out) > MaxCoins {
		return nil, fmt.Errorf("%d coins, at most %d", len(out), MaxCoins)
	}
	return out, nil
}

// ParseMember reads a member of the watch set back into a Coin.
func ParseMember(m string) (Coin, bool) {
	id, cur, ok := strings.Cut(m, ":")
	if !ok || price.ValidateCoinID(id) != nil || price.ValidateCurrency(cur) != nil {
		return Coin{}, false
	}
	return Coin{ID: id, Currency: cur}, true
}

// register (re)registers members until Redis time now+ttl, never
// shortening a registration another owner made for longer, and drops the
// expired ones. KEYS: watch set. ARGV: ttl ms, members... Returns the
// number of members left in the set.
var register = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'GT', until_ms, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
`)

// Register keeps members (price.WatchKey members, "<coin>:<currency>")
// watched for ttl from now on the Redis clock; a registration is renewed by
// registering again. It returns how many coins are watched in all.
func Register(ctx context.Context, rdb redis.Scripter, ttl time.Duration, members ...string) (int, error) {
	args := make([]any, 0, len(members)+1)
	args = append(args, ttl.Milliseconds())
	for _, m := range members {
		args = append(args, m)
	}
	n, err := register.Run(ctx, rdb, []string{price.WatchKey}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("register %d watched coins: %w", len(members), err)
	}
	return n, nil
}
