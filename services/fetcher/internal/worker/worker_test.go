package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/watchlist"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
	"cryptopulse/testkit"
	"cryptopulse/tools/cgsim"
)

// rig runs two fetchers' loops in-process (so the race detector sees them)
// against real Redis, real Postgres and the simulator.
type rig struct {
	rdb   *redis.Client
	sim   *cgsim.Server
	db    *pricedb.Store
	store *batch.Store
	seq   atomic.Int64 // request ids stay unique across asks
}

// rigOptions shape a rig; zero values are the defaults of startRig.
type rigOptions struct {
	fetchers    int
	window      time.Duration
	budget      batch.Budget
	priceMaxAge time.Duration
	staleMaxAge time.Duration
	attempts    int
	timeout     time.Duration // the upstream call's
	lease       time.Duration
	// simRateLimit is the simulator's calls per minute (0: unlimited).
	simRateLimit int
	// refresh and watch are the flusher's WATCH_REFRESH_MS and WATCH_COINS.
	refresh time.Duration
	watch   []watchlist.Coin
}

func startRig(t *testing.T, fetchers int, window time.Duration) *rig {
	t.Helper()
	return startRigWith(t, rigOptions{fetchers: fetchers, window: window, budget: batch.Budget{PerMinute: 1000, Burst: 100}})
}

func startRigWith(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.attempts == 0 {
		o.attempts = 2
	}
	if o.timeout == 0 {
		o.timeout = time.Second
	}
	if o.lease == 0 {
		o.lease = 600 * time.Millisecond
	}
	fetchers, window := o.fetchers, o.window
	rdb := testkit.StartRedis(t).Client(t)
	dbURL := testkit.StartPostgres(t).NewDatabase(t)
	pg, err := pricedb.Open(dbURL, pricedb.Options{PoolSize: 4, QueryTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	sim := cgsim.New(cgsim.Config{RateLimit: o.simRateLimit})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	up, err := coingecko.New(srv.URL, "", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	store, err := batch.NewStore(rdb, batch.Settings{Window: window, Threshold: 3, Lease: o.lease,
		KeyTTL: window + time.Minute, Keep: time.Minute, ResultTTL: time.Minute, RecordsMaxLen: 1000,
		Budget: o.budget, SnapshotMaxAge: o.priceMaxAge, Coalesce: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureGroup(context.Background(), rdb, price.StreamKey, price.Group); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range fetchers {
		name := fmt.Sprint("fetcher-", i)
		log := zap.NewNop()
		// A safety poll far longer than any test's wait: batches must be
		// flushed by their wake-ups, not found by polling.
		reg := prometheus.NewRegistry()
		f, err := NewFlusher(FlusherConfig{Name: name, SafetyPoll: time.Minute, MaxBatches: 50, Concurrency: 2,
			CallTimeout: o.timeout, MaxAttempts: o.attempts, Margin: 100 * time.Millisecond, Lease: o.lease, StaleMaxAge: o.staleMaxAge,
			Refresh: o.refresh, Watch: o.watch},
			rdb, store, up, pg, log, reg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewConsumer(ConsumerConfig{Name: name, ReclaimIdle: time.Second, Count: 10, Block: 200 * time.Millisecond}, rdb, store, f.Due, log)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPersister(PersisterConfig{Name: name}, rdb, pg, func(ctx context.Context) error { return pricedb.Migrate(ctx, dbURL) }, log, reg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(3)
		go func() { defer wg.Done(); f.Run(ctx) }()
		go func() { defer wg.Done(); c.Run(ctx) }()
		go func() { defer wg.Done(); p.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &rig{rdb: rdb, sim: sim, db: pg, store: store}
}

// ask publishes requests as gateways do and collects their replies.
func (r *rig) ask(t *testing.T, coins ...string) []price.Reply {
	t.Helper()
	timeouts := make([]int64, len(coins))
	for i := range timeouts {
		timeouts[i] = 5000
	}
	return r.askWithin(t, coins, timeouts)
}

// askWithin is ask with a client timeout per request.
func (r *rig) askWithin(t *testing.T, coins []string, timeoutMS []int64) []price.Reply {
	t.Helper()
	ctx := context.Background()
	// A gateway name of its own: concurrent asks must not read each
	// other's replies.
	gw := fmt.Sprint("gw", r.seq.Add(1))
	ps := r.rdb.PSubscribe(ctx, price.ReplyPattern(gw))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for i, coin := range coins {
		req := price.Request{ID: fmt.Sprint("req-", i), Coin: coin, Currency: "usd", TimeoutMS: timeoutMS[i], Gateway: gw}
		req.ReplyTo = price.ReplyChannel(gw, req.ID)
		if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: req.Values()}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]price.Reply, 0, len(coins))
	longest := int64(0)
	for _, ms := range timeoutMS {
		longest = max(longest, ms)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Duration(longest)*time.Millisecond+time.Second)
	defer cancel()
	for range coins {
		m, err := ps.ReceiveMessage(rctx)
		if err != nil {
			t.Fatalf("waiting for replies: %v (got %d)", err, len(out))
		}
		var rep price.Reply
		if err := json.Unmarshal([]byte(m.Payload), &rep); err != nil {
			t.Fatal(err)
		}
		out = append(out, rep)
	}
	return out
}

func TestTwoFetchersAnswerABatchOnceAndPersistIt(t *testing.T) {
	r := startRig(t, 2, time.Second)
	replies := r.ask(t, "bitcoin", "bitcoin", "bitcoin")
	for _, rep := range replies {
		if rep.Status != 200 || rep.Price != replies[0].Price || rep.Batch.ID != replies[0].Batch.ID || rep.Batch.Size != 3 {
			t.Errorf("reply %+v differs from %+v", rep, replies[0])
		}
	}
	if n := r.sim.Calls(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, total, err := r.db.History(context.Background(), pricedb.HistoryQuery{CoinID: "bitcoin", VsCurrency: "usd", Limit: 10, Page: 1})
		if err == nil && total == 1 {
			if recs[0].Price != replies[0].Price.String() || recs[0].BatchID.String != replies[0].Batch.ID {
				t.Errorf("row %+v does not match reply %+v", recs[0], replies[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("row not written: total %d err %v", total, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCoinsDueTogetherShareOneCall(t *testing.T) {
	r := startRig(t, 2, 300*time.Millisecond)
	replies := r.ask(t, "bitcoin", "ethereum", "solana", "no-such-coin")
	status := map[string]int{}
	for _, rep := range replies {
		status[rep.CoinID] = rep.Status
	}
	want := map[string]int{"bitcoin": 200, "ethereum": 200, "solana": 200, "no-such-coin": 404}
	for k, v := range want {
		if status[k] != v {
			t.Errorf("%s: status %d, want %d", k, status[k], v)
		}
	}
	// Their windows end within a few ms of each other: the first call
	// carries all four (BATCH_COALESCE_MS).
	if n := r.sim.Calls(); n != 1 {
		t.Errorf("upstream calls = %d for 4 coins due together, want 1", n)
	}
}

func TestRateLimitedUpstreamAnswers429ToEveryone(t *testing.T) {
	r := startRig(t, 2, time.Second)
	r.sim.SetFault(cgsim.Fault{Kind: cgsim.RateLimited, RetryAfter: time.Minute})
	for _, rep := range r.ask(t, "cardano", "cardano", "cardano") {
		if rep.Status != 429 || rep.RetryAfter < 59_000 {
			t.Errorf("reply %+v, want 429 with about a minute to wait", rep)
		}
	}
	// The cooldown is shared: a second batch does not call the upstream.
	before := r.sim.Calls()
	for _, rep := range r.ask(t, "ripple", "ripple", "ripple") {
		if rep.Status != 429 {
			t.Errorf("during cooldown: %+v", rep)
		}
	}
	if after := r.sim.Calls(); after != before {
		t.Errorf("upstream called %d more times during the cooldown", after-before)
	}
}

// A batch whose client is about to give up is answered on its own; it does
// not spoil the upstream call of fresh batches claimed with it.
func TestLateBatchDoesNotSpoilFreshOnes(t *testing.T) {
	r := startRig(t, 1, time.Second)
	replies := r.askWithin(t, []string{"bitcoin", "bitcoin", "bitcoin", "ethereum"}, []int64{5000, 5000, 5000, 250})
	for _, rep := range replies {
		want := 200
		if rep.CoinID == "ethereum" {
			want = 504
		}
		if rep.Status != want {
			t.Errorf("%s: status %d (%s), want %d", rep.CoinID, rep.Status, rep.Message, want)
		}
	}
	for _, c := range r.sim.CallLog() {
		for _, id := range c.IDs {
			if id == "ethereum" {
				t.Errorf("the late coin was sent upstream: %+v", c)
			}
		}
	}
}
