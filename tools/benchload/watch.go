package benchload

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/watchlist"
)

const (
	// watchedCoins are kept fresh besides the open loop's 100 request
	// coins: with them a call carries up to 200 ids, within CoinGecko's 515.
	watchedCoins = 100
	// watchPeriod is WATCH_REFRESH_MS, the demo plan's default.
	watchPeriod = time.Minute
)

// runWatch runs the open loop while 100 other coins are watched, registered
// as a gateway registers the coins its stream clients follow, and checks on
// the feed that each watched coin got a new price at least every period:
// from the registration to its first price, between prices, and from its
// last price to the end. Full mode runs 2.5 periods; quick mode's 20 s only
// shows the first refreshes.
func runWatch(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	ids := make([]string, watchedCoins)
	members := make([]string, watchedCoins)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-watch-%03d", i+1)
		members[i] = watchlist.Coin{ID: ids[i], Currency: "usd"}.Member()
	}
	if err := simCoins(ctx, st, ids); err != nil {
		return Measurement{}, err
	}
	opt, err := redis.ParseURL(st.RedisURL)
	if err != nil {
		return Measurement{}, err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	d := h.duration(150*time.Second, 20*time.Second)
	start, err := rdb.Time(ctx).Result()
	if err != nil {
		return Measurement{}, err
	}
	if _, err := watchlist.Register(ctx, rdb, d+watchPeriod, members...); err != nil {
		return Measurement{}, err
	}
	m, err := openLoop(ctx, h, st, d)
	if err != nil {
		return m, err
	}
	end, err := rdb.Time(ctx).Result()
	if err != nil {
		return m, err
	}
	seen := map[string][]time.Time{}
	sources := map[string]int{}
	from := fmt.Sprint(start.UnixMilli())
	for {
		msgs, err := rdb.XRangeN(ctx, pricefeed.Key, from, "+", 10_000).Result()
		if err != nil {
			return m, err
		}
		for _, msg := range msgs {
			u, err := pricefeed.Parse(msg)
			if err != nil {
				continue
			}
			if k := u.Coin + ":" + u.Currency; strings.HasPrefix(u.Coin, "bench-watch-") {
				seen[k] = append(seen[k], u.FetchedAt)
				sources[u.Source]++
			}
		}
		if len(msgs) < 10_000 {
			break
		}
		from = "(" + msgs[len(msgs)-1].ID
	}
	var longest time.Duration
	var worst string
	late, prices := 0, 0
	for _, k := range members {
		prices += len(seen[k])
		last, gap := start, time.Duration(0)
		for _, at := range append(seen[k], end) {
			gap = max(gap, at.Sub(last))
			last = at
		}
		if gap > longest {
			longest, worst = gap, k
		}
		if gap > watchPeriod {
			late++
		}
	}
	if late > 0 {
		m.Why = fmt.Sprintf("%d of %d watched coins went over %v without a new price (longest %s, %s)", late, watchedCoins, watchPeriod, ms(longest), worst)
	}
	m.Detail += fmt.Sprintf("; %d watched coins: %d new prices (by source %v), longest without one %s", watchedCoins, prices, sources, ms(longest))
	return m, nil
}
