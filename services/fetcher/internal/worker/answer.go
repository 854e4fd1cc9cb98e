package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
)

// LatestReader is where the newest stored price is found when Redis has
// none (it restarted empty): Postgres.
type LatestReader interface {
	// Latest returns the newest record, pricedb.ErrNoRecord, or an error
	// wrapping pricedb.ErrUnavailable.
	Latest(ctx context.Context, coinID, vsCurrency string) (pricedb.Record, error)
}

var _ LatestReader = (*pricedb.Store)(nil)

// answerer completes batches: it builds each batch's reply and hands it to
// the store, which publishes it to every waiting request.
type answerer struct {
	name        string
	store       *batch.Store
	latest      LatestReader
	staleMaxAge time.Duration
	// feedMaxLen caps the price update feed (PRICE_FEED_MAXLEN).
	feedMaxLen int64
	rdb        redis.Cmdable
	log        *zap.Logger
	m          *metrics
}

// all completes batches with the outcome of their upstream call.
func (a *answerer) all(ctx context.Context, batches []batch.Claimed, quote coingecko.Quote, ferr error) {
	replies, recs := make([]price.Reply, len(batches)), make([]*batch.Record, len(batches))
	for i, c := range batches {
		// fetchedAt is Redis time, the one clock.
		fetchedAt := c.RedisNow()
		replies[i], recs[i] = a.replyFor(c, quote, ferr, fetchedAt)
		if ferr != nil {
			replies[i] = a.staleOr(ctx, c, replies[i], fetchedAt)
		}
	}
	a.complete(ctx, batches, replies, recs)
}

// fromSnapshot completes batches with their coin's newest price, fetched
// less than PRICE_MAX_AGE_MS ago, without an upstream call or a new row.
func (a *answerer) fromSnapshot(ctx context.Context, batches []batch.Claimed) {
	replies := make([]price.Reply, len(batches))
	for i, c := range batches {
		r := a.base(c)
		r.Batch.Source = price.SourceSnapshot
		r.Status, r.Price = http.StatusOK, json.Number(c.Snapshot.Price)
		r.FetchedAt = c.Snapshot.FetchedAt.UTC().Format(price.TimeFormat)
		replies[i] = r
	}
	a.complete(ctx, batches, replies, make([]*batch.Record, len(batches)))
}

// complete hands the batches' replies (and records, nil for none) to the
// store in one round trip: a hot coin's flush holds several batches.
func (a *answerer) complete(ctx context.Context, batches []batch.Claimed, replies []price.Reply, recs []*batch.Record) {
	out := make([]batch.Completion, len(batches))
	for i, c := range batches {
		payload, _ := json.Marshal(replies[i])
		out[i] = batch.Completion{ID: c.ID, Payload: payload, Record: recs[i]}
	}
	ns, errs := a.store.CompleteAll(ctx, a.name, out)
	a.publish(ctx, replies, errs)
	for i, c := range batches {
		r, n, err := replies[i], ns[i], errs[i]
		switch {
		case errors.Is(err, batch.ErrLeaseLost):
			a.log.Warn("batch was taken over before we answered; leaving it to the new owner", zap.String("batch", c.ID))
			continue
		case err != nil:
			// The lease will run out and another fetcher will answer.
			a.log.Error("answering a batch failed", zap.String("batch", c.ID), zap.Error(err))
			continue
		}
		a.m.flushes.WithLabelValues(c.FlushReason, fmt.Sprint(r.Status)).Inc()
		a.m.sizes.Observe(float64(n))
		a.log.Debug("batch answered", zap.String("batch", c.ID), zap.Int("size", n), zap.String("reason", c.FlushReason),
			zap.Int("status", r.Status), zap.String("source", r.Batch.Source), zap.Duration("age", c.Age))
	}
}

// feedTimeout bounds the append to the feed: the replies are out already.
const feedTimeout = time.Second

// publish appends to the price update feed every price that a batch we
// answered obtained, in one round trip right after the answers: a batch
// whose lease was lost is left to its new owner, who appends its own.
func (a *answerer) publish(ctx context.Context, replies []price.Reply, errs []error) {
	var ups []pricefeed.Update
	for i, r := range replies {
		if errs[i] != nil {
			continue
		}
		if u, ok := pricefeed.FromReply(r); ok {
			ups = append(ups, u)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, feedTimeout)
	defer cancel()
	if err := pricefeed.Append(ctx, a.rdb, a.feedMaxLen, ups...); err != nil {
		a.log.Warn("appending to the price feed failed; stream clients miss these prices", zap.Error(err))
	}
}

// shed answers 429 to the requests of waiting batch id whose clients give
// up before cutoff; the next upstream slot comes in wait.
func (a *answerer) shed(ctx context.Context, id string, cutoff time.Time, wait time.Duration) (int, error) {
	r := price.Reply{
		Status: http.StatusTooManyRequests, Message: "Upstream rate limit reached; retry later",
		RetryAfter: max(wait, time.Second).Milliseconds(), Batch: price.Batch{ID: id, Fetcher: a.name},
	}
	payload, _ := json.Marshal(r)
	return a.store.Shed(ctx, id, cutoff, payload)
}

func (a *answerer) base(c batch.Claimed) price.Reply {
	return price.Reply{
		CoinID: c.Coin, VsCurrency: c.Currency,
		Batch: price.Batch{ID: c.ID, Size: c.Size, FlushReason: c.FlushReason, Fetcher: a.name, Attempt: c.Attempt, Source: price.SourceUpstream},
	}
}

// replyFor builds a batch's answer; a fetched price also yields a record.
func (a *answerer) replyFor(c batch.Claimed, q coingecko.Quote, err error, fetchedAt time.Time) (price.Reply, *batch.Record) {
	r := a.base(c)
	if err != nil {
		r.Status, r.Message, r.RetryAfter = statusOf(err)
		return r, nil
	}
	vals, ok := q[c.Coin]
	if !ok {
		r.Status, r.Message = http.StatusNotFound, "Coin not found"
		return r, nil
	}
	p, ok := vals[c.Currency]
	if !ok {
		r.Status, r.Message = http.StatusNotFound, fmt.Sprintf("No %s price for %s", c.Currency, c.Coin)
		return r, nil
	}
	r.Status, r.Price, r.FetchedAt = http.StatusOK, p, fetchedAt.UTC().Format(price.TimeFormat)
	return r, &batch.Record{Coin: c.Coin, Currency: c.Currency, Price: p.String(), BatchID: c.ID, FetchedAt: fetchedAt}
}

// staleLookup bounds the search for a stored price: the clients' margin
// is all there is.
const staleLookup = 300 * time.Millisecond

// staleOr replaces a failed batch's answer with the newest stored price if
// STALE_MAX_AGE_MS allows it: from Redis, else from Postgres. Without one
// young enough, the failure stands. A stale answer is never a new row.
func (a *answerer) staleOr(ctx context.Context, c batch.Claimed, failed price.Reply, now time.Time) price.Reply {
	if a.staleMaxAge <= 0 {
		return failed
	}
	ctx, cancel := context.WithTimeout(ctx, staleLookup)
	defer cancel()
	snap, ok, err := a.store.LastPrice(ctx, c.Coin, c.Currency)
	if err != nil {
		a.log.Warn("reading the newest price from Redis failed", zap.Error(err))
	}
	if !ok && a.latest != nil {
		rec, err := a.latest.Latest(ctx, c.Coin, c.Currency)
		switch {
		case err == nil:
			snap, ok = batch.Snapshot{Price: rec.Price, FetchedAt: rec.FetchedAt, BatchID: rec.BatchID.String}, true
		case !errors.Is(err, pricedb.ErrNoRecord):
			a.log.Warn("reading the newest price from Postgres failed", zap.Error(err))
		}
	}
	if !ok || now.Sub(snap.FetchedAt) >= a.staleMaxAge {
		return failed
	}
	r := failed
	r.Status, r.Message, r.RetryAfter = http.StatusOK, "", 0
	r.Price, r.FetchedAt, r.Stale = json.Number(snap.Price), snap.FetchedAt.UTC().Format(price.TimeFormat), true
	r.Batch.Source = price.SourceStale
	a.log.Info("upstream failed; answering with a stored price", zap.String("batch", c.ID),
		zap.Int("failedStatus", failed.Status), zap.Duration("age", now.Sub(snap.FetchedAt)))
	return r
}

// statusOf maps an upstream failure to what every waiting client gets.
func statusOf(err error) (status int, msg string, retryAfterMS int64) {
	var ce *coingecko.Error
	if !errors.As(err, &ce) {
		return http.StatusServiceUnavailable, "Price service unavailable", 0
	}
	switch ce.Kind {
	case coingecko.RateLimited:
		return http.StatusTooManyRequests, "Upstream rate limit reached; retry later", max(ce.RetryAfter.Milliseconds(), 1000)
	case coingecko.Timeout:
		return http.StatusGatewayTimeout, "Upstream price service timed out", 0
	case coingecko.Unavailable:
		return http.StatusServiceUnavailable, "Upstream price service unavailable", 0
	}
	return http.StatusBadGateway, "Upstream price service failed", 0
}
