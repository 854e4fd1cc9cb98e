package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/watchlist"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
)

// refresher keeps watched coins (libs/watchlist) fresh: no price of one
// gets older than the period. A flush that calls CoinGecko anyway asks for
// the watched coins due soon in the same call (ride); a coin that found no
// ride gets a call of its own, but only from spare budget (own). Refreshed
// prices go to the feed and to Postgres; no request waits for them.
type refresher struct {
	name   string
	store  *batch.Store
	call   *caller
	rdb    redis.Cmdable
	log    *zap.Logger
	period time.Duration
	// watch are this fetcher's WATCH_COINS members, kept registered.
	watch      []string
	maxCoins   int
	lease      time.Duration
	feedMaxLen int64
	coins      *prometheus.CounterVec
}

// A coin is refreshed on its own call once its price is older than
// period - lead; a flush, or another coin's own call, takes it along from
// period - 2 lead on. The lead leaves time for a spare slot and the call
// itself, so that the new price lands within the period.
func (r *refresher) lead() time.Duration { return r.period / 5 }

// tick is how often the refresher looks for due coins: at least twice a
// lead, so a coin does not wait past its lead for the look.
func (r *refresher) tick() time.Duration { return min(time.Second, r.lead()/2) }

// ride claims the watched coins due soon that fit in a call carrying
// carried ("<coin>:<currency>" of its batches) over coins distinct ids.
func (r *refresher) ride(ctx context.Context, carried []string, coins int) batch.RefreshClaim {
	if r == nil || coins >= r.maxCoins {
		return batch.RefreshClaim{}
	}
	room := r.maxCoins - coins
	cl, err := r.store.RideAlong(ctx, r.name, r.period-2*r.lead(), r.lease, room, carried)
	if err != nil {
		r.log.Warn("claiming watched coins to ride along failed", zap.Error(err))
	}
	return cl
}

// run registers WATCH_COINS and refreshes, on calls of their own, the
// watched coins no flush took along, until ctx is done.
func (r *refresher) run(ctx context.Context) {
	t := time.NewTicker(r.tick())
	defer t.Stop()
	var registered time.Time
	for {
		if len(r.watch) > 0 && time.Since(registered) > watchlist.TTL/3 {
			if _, err := watchlist.Register(ctx, r.rdb, watchlist.TTL, r.watch...); err != nil {
				r.log.Warn("registering WATCH_COINS failed", zap.Error(err))
			} else {
				registered = time.Now()
			}
		}
		for r.own(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// own makes one call for due watched coins if the budget is spare, and
// reports whether it did (more may be due).
func (r *refresher) own(ctx context.Context) bool {
	cl, err := r.store.OwnCall(ctx, r.name, r.period-r.lead(), r.period-2*r.lead(), r.lease, r.maxCoins)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("claiming watched coins for a refresh failed", zap.Error(err))
		}
		return false
	}
	if len(cl.Coins) == 0 {
		return false
	}
	ids, currencies := make([]string, len(cl.Coins)), make([]string, len(cl.Coins))
	for i, c := range cl.Coins {
		ids[i], currencies[i] = c.ID, c.Currency
	}
	q, ce := r.call.once(ctx, unique(ids), unique(currencies), r.call.timeout, 1)
	if ce != nil {
		return false
	}
	r.deliver(ctx, cl, q, "own")
	return true
}

// deliver records the prices a successful call brought for the claimed
// coins and appends them to the feed. (After a failed call the claims run
// out by themselves and the coins are tried again.)
func (r *refresher) deliver(ctx context.Context, cl batch.RefreshClaim, q coingecko.Quote, how string) {
	if r == nil || len(cl.Coins) == 0 {
		return
	}
	at := cl.RedisNow()
	var recs []batch.Record
	var ups []pricefeed.Update
	var missing []watchlist.Coin
	for _, c := range cl.Coins {
		p, ok := q[c.ID][c.Currency]
		if !ok {
			missing = append(missing, c)
			continue
		}
		id := fmt.Sprintf("%s:%s:%s-%d", c.ID, c.Currency, price.FlushRefresh, at.UnixMilli())
		recs = append(recs, batch.Record{Coin: c.ID, Currency: c.Currency, Price: p.String(), BatchID: id, FetchedAt: at})
		ups = append(ups, pricefeed.Update{Coin: c.ID, Currency: c.Currency, Price: p.String(), FetchedAt: at, BatchID: id,
			FlushReason: price.FlushRefresh, Fetcher: r.name, Attempt: 1, Source: price.SourceRefresh})
	}
	if len(missing) > 0 {
		r.log.Warn("watched coins without a price; asked for again in a period", zap.Any("coins", missing))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), feedTimeout)
	defer cancel()
	if err := r.store.Refreshed(ctx, r.name, recs, missing, r.period); err != nil {
		// A timeout may hide a script that ran: the coins then look fresh
		// for a period, and the feed must have their prices all the same.
		r.log.Warn("recording refreshed prices failed", zap.Error(err))
	}
	if err := pricefeed.Append(ctx, r.rdb, r.feedMaxLen, ups...); err != nil {
		r.log.Warn("appending refreshed prices to the feed failed", zap.Error(err))
	}
	r.coins.WithLabelValues(how).Add(float64(len(recs)))
}
