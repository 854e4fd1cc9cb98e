package worker

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/watchlist"
	"cryptopulse/services/fetcher/internal/batch"
)

// Flusher claims due batches the moment they are due and answers them: a
// full batch wakes it at once, a window ends on its timer, and a spent
// budget sets the timer to the next upstream slot. Its parts are the waker
// (when to claim), the caller (the upstream call, its retries and budget
// waits) and the answerer (replies, snapshots and stale prices).
type Flusher struct {
	cfg    FlusherConfig
	store  *batch.Store
	wake   *waker
	call   *caller
	answer *answerer
	// refresh keeps watched coins fresh; nil when refreshing is off.
	refresh *refresher
	log     *zap.Logger
	m       metrics
}

type metrics struct {
	calls    *prometheus.CounterVec
	flushes  *prometheus.CounterVec
	sizes    prometheus.Histogram
	takeover prometheus.Counter
	shed     prometheus.Counter
}

// NewFlusher returns a Flusher and registers its metrics. latest, if not
// nil, is where stale prices are looked up when Redis has none.
func NewFlusher(cfg FlusherConfig, rdb *redis.Client, store *batch.Store, up Upstream, latest LatestReader, log *zap.Logger, reg prometheus.Registerer) (*Flusher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
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
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fetcher_requests_shed_total", Help: "Requests answered 429 because their deadline came before the next upstream slot.",
		}),
	}
	budget := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fetcher_upstream_budget_remaining",
		Help: "Upstream calls that could start now within the shared CoinGecko budget (-1: no budget).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		n, err := store.Remaining(ctx)
		if err != nil {
			return 0
		}
		return float64(n)
	})
	refreshed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fetcher_watch_refreshed_total", Help: "Watched coins refreshed, by how: ride (on a flush's call) or own (a call from spare budget).",
	}, []string{"how"})
	if err := register(reg, m.calls, m.flushes, m.sizes, m.takeover, m.shed, budget, refreshed); err != nil {
		return nil, err
	}
	feedMaxLen := cmp.Or(cfg.FeedMaxLen, pricefeed.DefaultMaxLen)
	f := &Flusher{
		cfg: cfg, store: store, log: log, m: m,
		wake:   newWaker(rdb, log),
		call:   &caller{store: store, upstream: up, timeout: cfg.CallTimeout, attempts: cfg.MaxAttempts, log: log, calls: m.calls},
		answer: &answerer{name: cfg.Name, store: store, latest: latest, staleMaxAge: cfg.StaleMaxAge, feedMaxLen: feedMaxLen, rdb: rdb, log: log, m: &m},
	}
	if cfg.Refresh > 0 {
		watch := make([]string, len(cfg.Watch))
		for i, c := range cfg.Watch {
			watch[i] = c.Member()
		}
		f.refresh = &refresher{
			name: cfg.Name, store: store, call: f.call, rdb: rdb, log: log, period: cfg.Refresh, watch: watch,
			// Refreshes fill a call up to CoinGecko's id cap, not just to
			// BATCH_MAX_COINS, which bounds the batches one claim takes:
			// with every request coin waiting, watched coins still ride.
			maxCoins: maxCoinsPerCall, feedMaxLen: feedMaxLen, coins: refreshed,
			// A claim outlives the longest flush; it runs out only when
			// its fetcher died or the call failed.
			lease: time.Duration(cfg.MaxAttempts)*cfg.CallTimeout + 5*time.Second,
		}
	}
	return f, nil
}

// Due tells the flusher that a batch comes due at t: the consumer calls it
// when its enqueue filled a batch (t is now) or started one.
func (f *Flusher) Due(t time.Time) { f.wake.at(t) }

// Run claims and answers batches until ctx is done, then waits for the
// flushes it holds to finish: a stopping fetcher still answers its clients.
func (f *Flusher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); f.wake.listen(ctx) }()
	if f.refresh != nil {
		wg.Add(1)
		go func() { defer wg.Done(); f.refresh.run(ctx) }()
	}
	slots := make(chan struct{}, f.cfg.Concurrency)
	// The first round finds whatever came due while no fetcher ran.
	f.wake.now()
	for f.wake.wait(ctx, f.cfg.SafetyPoll) {
		f.round(ctx, slots, &wg)
	}
}

// round claims until nothing more is due now, starting one flush per claim,
// and arms the waker for what comes due next.
func (f *Flusher) round(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) {
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		cl, err := f.store.Claim(ctx, f.cfg.Name, f.cfg.MaxBatches)
		if err != nil {
			<-slots
			if ctx.Err() == nil {
				f.log.Warn("claiming batches failed", zap.Error(err))
				f.wake.at(time.Now().Add(250 * time.Millisecond))
			}
			return
		}
		if len(cl.Waiting) > 0 {
			f.shedLate(ctx, cl)
			f.wake.at(cl.SlotAt)
		}
		if !cl.NextDue.IsZero() && cl.NextDue.After(time.Now()) {
			f.wake.at(cl.NextDue)
		}
		if len(cl.Batches) == 0 {
			<-slots
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			// Detached from ctx: once claimed, a batch is answered even
			// while the fetcher shuts down.
			f.flush(context.WithoutCancel(ctx), cl.Batches)
		}()
		if len(cl.Batches) < f.cfg.MaxBatches {
			return
		}
	}
}

// minCallTime is the least time worth starting an upstream call with.
const minCallTime = 200 * time.Millisecond

// shedLate answers 429 to the waiting clients that would give up before the
// next upstream slot; the others keep waiting for it.
func (f *Flusher) shedLate(ctx context.Context, cl batch.Claim) {
	cutoff := cl.SlotAt.Add(f.cfg.Margin + minCallTime)
	for _, w := range cl.Waiting {
		if !w.Deadline.Before(cutoff) {
			continue
		}
		n, err := f.answer.shed(ctx, w.ID, cutoff, time.Until(cl.SlotAt))
		if err != nil {
			f.log.Warn("answering requests that cannot wait failed", zap.String("batch", w.ID), zap.Error(err))
			continue
		}
		f.m.shed.Add(float64(n))
	}
}

// flush answers claimed batches: from their snapshot, or with one upstream
// call for all the rest.
func (f *Flusher) flush(ctx context.Context, claimed []batch.Claimed) {
	// A batch whose clients are about to give up (taken over late, or
	// holding a request reclaimed from a dead fetcher) must not shorten the
	// call that answers the others: it is answered on its own.
	var live, late, snap []batch.Claimed
	for _, c := range claimed {
		if c.Attempt > 1 {
			f.m.takeover.Inc()
			f.log.Info("taking over a batch whose fetcher stopped renewing its lease",
				zap.String("batch", c.ID), zap.Int("attempt", c.Attempt))
		}
		switch {
		case c.Source == price.SourceSnapshot:
			snap = append(snap, c)
		case time.Until(c.Deadline.Add(-f.cfg.Margin)) < minCallTime:
			late = append(late, c)
		default:
			live = append(live, c)
		}
	}
	if len(snap) > 0 {
		f.answer.fromSnapshot(ctx, snap)
	}
	if len(late) > 0 {
		f.answer.all(ctx, late, nil, errNoTime)
	}
	if len(live) == 0 {
		return
	}
	deadline := live[0].Deadline
	ids, carried := make([]string, len(live)), make([]string, len(live))
	coins, currencies := []string{}, []string{}
	for i, c := range live {
		ids[i], carried[i] = c.ID, watchlist.Coin{ID: c.Coin, Currency: c.Currency}.Member()
		coins = append(coins, c.Coin)
		currencies = append(currencies, c.Currency)
		if c.Deadline.Before(deadline) {
			deadline = c.Deadline
		}
	}
	// Watched coins due soon ride along in the same ids= list.
	ride := f.refresh.ride(ctx, carried, len(unique(coins)))
	for _, c := range ride.Coins {
		coins, currencies = append(coins, c.ID), append(currencies, c.Currency)
	}
	stopRenew := f.keepLeases(ctx, ids)
	quote, ferr := f.call.fetch(ctx, coins, currencies, deadline.Add(-f.cfg.Margin))
	stopRenew()
	f.answer.all(ctx, live, quote, ferr)
	if ferr == nil {
		f.refresh.deliver(ctx, ride, quote, "ride")
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
