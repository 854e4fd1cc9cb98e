package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/throttle"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
)

// Upstream is the price source the flusher calls.
type Upstream interface {
	// SimplePrice returns prices or a *coingecko.Error.
	SimplePrice(ctx context.Context, ids, currencies []string) (coingecko.Quote, error)
}

var _ Upstream = (*coingecko.Client)(nil)

// CooldownKey holds, while it exists, CoinGecko's last "wait before asking
// again": every fetcher honours it.
const CooldownKey = "cp:upstream:cooldown"

// FlusherConfig tunes the flusher.
type FlusherConfig struct {
	Name         string
	Poll         time.Duration // how often to look for due batches
	MaxBatches   int           // batches (coins) per upstream call, at most 515
	Concurrency  int           // flushes in flight at once
	CallTimeout  time.Duration // one upstream call
	MaxAttempts  int           // calls per flush
	Margin       time.Duration // answer this long before a client's deadline
	Lease        time.Duration
	BudgetPerMin int // upstream calls per minute shared by all fetchers; 0 = no budget
}

// Flusher claims due batches and answers them.
type Flusher struct {
	cfg      FlusherConfig
	rdb      *redis.Client
	store    *batch.Store
	upstream Upstream
	budget   *throttle.Limiter
	log      *zap.Logger
	m        metrics
}

type metrics struct {
	calls    *prometheus.CounterVec
	flushes  *prometheus.CounterVec
	sizes    prometheus.Histogram
	takeover prometheus.Counter
}

// NewFlusher returns a Flusher and registers its metrics.
func NewFlusher(cfg FlusherConfig, rdb *redis.Client, store *batch.Store, up Upstream, log *zap.Logger, reg prometheus.Registerer) *Flusher {
	m := metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fetcher_upstream_calls_total", Help: "CoinGecko calls by outcome.",
		}, []string{"outcome"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fetcher_batches_flushed_total", Help: "Batches answered, by flush reason and HTTP status.",
		}, []string{"reason", "status"}),
		sizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fetcher_batch_size", Help: "Requests per flushed batch.", Buckets: []float64{1, 2, 3, 5, 10, 50, 100, 1000},
		}),
		takeover: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fetcher_batch_takeovers_total", Help: "Batches finished after another fetcher's lease ran out.",
		}),
	}
	reg.MustRegister(m.calls, m.flushes, m.sizes, m.takeover)
	return &Flusher{cfg: cfg, rdb: rdb, store: store, upstream: up, budget: throttle.New(rdb), log: log, m: m}
}

// Run claims and answers batches until ctx is done, then waits for the
// flushes it holds to finish: a stopping fetcher still answers its clients.
func (f *Flusher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, f.cfg.Concurrency)
	tick := time.NewTicker(f.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			claimed, err := f.store.Claim(ctx, f.cfg.Name, f.cfg.MaxBatches)
			if err != nil || len(claimed) == 0 {
				<-slots
				if err != nil && ctx.Err() == nil {
					f.log.Warn("claiming batches failed", zap.Error(err))
				}
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				// Detached from ctx: once claimed, a batch is answered even
				// while the fetcher shuts down.
				f.flush(context.WithoutCancel(ctx), claimed)
			}()
		}
	}
}

// flush makes one upstream call for every claimed batch and answers each.
func (f *Flusher) flush(ctx context.Context, claimed []batch.Claimed) {
	// A batch whose clients are about to give up (taken over late, or
	// holding a request reclaimed from a dead fetcher) must not shorten the
	// call that answers the others: it is answered on its own.
	var live, late []batch.Claimed
	for _, c := range claimed {
		if c.Attempt > 1 {
			f.m.takeover.Inc()
			f.log.Info("taking over a batch whose fetcher stopped renewing its lease",
				zap.String("batch", c.ID), zap.Int("attempt", c.Attempt))
		}
		if time.Until(c.Deadline.Add(-f.cfg.Margin)) < minCallTime {
			late = append(late, c)
			continue
		}
		live = append(live, c)
	}
	if len(late) > 0 {
		f.answer(ctx, late, nil, &coingecko.Error{Kind: coingecko.Timeout, Msg: "no time left before the clients' deadline"})
	}
	if len(live) == 0 {
		return
	}
	deadline := live[0].Deadline
	ids := make([]string, len(live))
	coins, currencies := []string{}, []string{}
	for i, c := range live {
		ids[i] = c.ID
		coins = append(coins, c.Coin)
		currencies = append(currencies, c.Currency)
		if c.Deadline.Before(deadline) {
			deadline = c.Deadline
		}
	}
	stopRenew := f.keepLeases(ctx, ids)
	quote, ferr := f.fetch(ctx, coins, currencies, deadline.Add(-f.cfg.Margin))
	stopRenew()
	f.answer(ctx, live, quote, ferr)
}

// minCallTime is the least time worth starting an upstream call with.
const minCallTime = 200 * time.Millisecond

// answer completes each batch with the outcome of its upstream call.
func (f *Flusher) answer(ctx context.Context, batches []batch.Claimed, quote coingecko.Quote, ferr error) {
	// fetchedAt is Redis time, the one clock; without it the batch is left
	// to run out its lease and be answered by whoever takes it next.
	fetchedAt, err := f.store.Now(ctx)
	if err != nil {
		f.log.Error("reading Redis time failed; leaving the batches to another fetcher", zap.Error(err))
		return
	}
	for _, c := range batches {
		r, rec := f.replyFor(c, quote, ferr, fetchedAt)
		payload, _ := json.Marshal(r)
		n, err := f.store.Complete(ctx, f.cfg.Name, c.ID, payload, rec)
		switch {
		case errors.Is(err, batch.ErrLeaseLost):
			f.log.Warn("batch was taken over before we answered; leaving it to the new owner", zap.String("batch", c.ID))
			continue
		case err != nil:
			// The lease will run out and another fetcher will answer.
			f.log.Error("answering a batch failed", zap.String("batch", c.ID), zap.Error(err))
			continue
		}
		f.m.flushes.WithLabelValues(c.FlushReason, fmt.Sprint(r.Status)).Inc()
		f.m.sizes.Observe(float64(n))
		f.log.Info("batch answered", zap.String("batch", c.ID), zap.Int("size", n), zap.String("reason", c.FlushReason),
			zap.Int("status", r.Status), zap.Duration("age", c.Age), zap.Int("coinsInCall", len(batches)))
	}
}

// keepLeases renews the leases until the returned stop is called.
func (f *Flusher) keepLeases(ctx context.Context, ids []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(f.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := f.store.Renew(ctx, f.cfg.Name, ids); err != nil {
					f.log.Warn("renewing batch leases failed", zap.Error(err))
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// errBudget is our own shared budget running out before the deadline.
type errBudget struct{ wait time.Duration }

func (e errBudget) Error() string {
	return fmt.Sprintf("upstream call budget spent; next slot in %s", e.wait)
}

// fetch calls the upstream, retrying within the shared budget and before
// the deadline.
func (f *Flusher) fetch(ctx context.Context, coins, currencies []string, deadline time.Time) (coingecko.Quote, error) {
	var last error
	for attempt := 1; attempt <= f.cfg.MaxAttempts; attempt++ {
		if err := f.waitForUpstream(ctx, deadline); err != nil {
			if last != nil && !isRateLimit(err) {
				return nil, last
			}
			return nil, err
		}
		remaining := time.Until(deadline)
		if remaining < minCallTime {
			if last != nil {
				return nil, last
			}
			return nil, &coingecko.Error{Kind: coingecko.Timeout, Msg: "no time left before the clients' deadline"}
		}
		cctx, cancel := context.WithTimeout(ctx, min(f.cfg.CallTimeout, remaining))
		q, err := f.upstream.SimplePrice(cctx, coins, currencies)
		cancel()
		if err == nil {
			f.m.calls.WithLabelValues("ok").Inc()
			return q, nil
		}
		var ce *coingecko.Error
		if !errors.As(err, &ce) {
			ce = &coingecko.Error{Kind: coingecko.Failed, Msg: err.Error()}
		}
		f.m.calls.WithLabelValues(string(ce.Kind)).Inc()
		f.log.Warn("upstream call failed", zap.Int("attempt", attempt), zap.Error(ce))
		last = ce
		if ce.Kind == coingecko.RateLimited {
			// Tell every fetcher to hold off, then see whether the wait fits.
			_ = f.rdb.Set(ctx, CooldownKey, ce.Status, max(ce.RetryAfter, time.Millisecond)).Err()
			continue
		}
		if !ce.Retryable() {
			return nil, ce
		}
		backoff := time.Duration(100<<attempt) * time.Millisecond
		if time.Until(deadline) < backoff+200*time.Millisecond {
			return nil, ce
		}
		time.Sleep(backoff)
	}
	return nil, last
}

func isRateLimit(err error) bool {
	var ce *coingecko.Error
	var be errBudget
	return errors.As(err, &be) || (errors.As(err, &ce) && ce.Kind == coingecko.RateLimited)
}

// waitForUpstream waits out CoinGecko's cooldown and our shared call budget
// if that fits before the deadline, and otherwise says how long it would be.
func (f *Flusher) waitForUpstream(ctx context.Context, deadline time.Time) error {
	for {
		cool, err := f.rdb.PTTL(ctx, CooldownKey).Result()
		if err == nil && cool > 0 {
			if time.Now().Add(cool).After(deadline) {
				return &coingecko.Error{Kind: coingecko.RateLimited, Status: http.StatusTooManyRequests, RetryAfter: cool, Msg: "CoinGecko asked us to wait"}
			}
			time.Sleep(cool)
			continue
		}
		if f.cfg.BudgetPerMin <= 0 {
			return nil
		}
		d, err := f.budget.Allow(ctx, throttle.Rule{Policy: "upstream", Subject: "coingecko", Limit: f.cfg.BudgetPerMin, Window: time.Minute})
		if err != nil {
			return fmt.Errorf("upstream budget: %w", err)
		}
		if d.Allowed {
			return nil
		}
		if time.Now().Add(d.RetryAfter).After(deadline) {
			return errBudget{wait: d.RetryAfter}
		}
		time.Sleep(d.RetryAfter)
	}
}

// replyFor builds a batch's answer; a fetched price also yields a record.
func (f *Flusher) replyFor(c batch.Claimed, q coingecko.Quote, err error, fetchedAt time.Time) (price.Reply, *batch.Record) {
	r := price.Reply{
		CoinID: c.Coin, VsCurrency: c.Currency,
		Batch: price.Batch{ID: c.ID, Size: c.Size, FlushReason: c.FlushReason, Fetcher: f.cfg.Name, Attempt: c.Attempt},
	}
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

// statusOf maps an upstream failure to what every waiting client gets.
func statusOf(err error) (status int, msg string, retryAfterMS int64) {
	var be errBudget
	if errors.As(err, &be) {
		return http.StatusTooManyRequests, "Upstream rate limit reached; retry later", be.wait.Milliseconds()
	}
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
