package worker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/watchlist"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/tools/cgsim"
)

// refreshes are the feed's refresh updates of coin (usd), oldest first.
func (r *rig) refreshes(t *testing.T, coin string) []pricefeed.Update {
	t.Helper()
	var out []pricefeed.Update
	for _, u := range r.feed(t) {
		if u.Coin == coin && u.Currency == "usd" && u.Source == price.SourceRefresh {
			out = append(out, u)
		}
	}
	return out
}

// waitRefreshes waits until coin has at least n refreshes on the feed.
func (r *rig) waitRefreshes(t *testing.T, coin string, n int, within time.Duration) []pricefeed.Update {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ups := r.refreshes(t, coin)
		if len(ups) >= n {
			return ups
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s refreshed %d times within %s, want %d: %+v", coin, len(ups), within, n, ups)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkWithinBudget fails if any 60 s window of the simulator's log holds
// more than perMinute calls, or any call was refused.
func checkWithinBudget(t *testing.T, calls []cgsim.Call, perMinute int) {
	t.Helper()
	for i, c := range calls {
		if c.Status != 200 {
			t.Errorf("call %d %v answered %d", i, c.IDs, c.Status)
		}
		in := 0
		for _, d := range calls[i:] {
			if d.Time.Sub(c.Time) < time.Minute {
				in++
			}
		}
		if in > perMinute {
			t.Errorf("%d calls in the minute from call %d, budget %d", in, i, perMinute)
		}
	}
}

// With the simulator and the fetchers both at 2 calls a minute: request
// batches get both slots of a burst (the watched coin rides along on the
// second call, the simulator's log shows one call with both ids), the
// refresh then due waits instead of spending the budget, and the slot that
// comes free a minute later goes to the batch waiting for it, which the
// watched coin rides along on again. The minute-long wait is the budget's.
func TestRefreshNeverTakesASlotAWaitingBatchNeeded(t *testing.T) {
	r := startRigWith(t, rigOptions{fetchers: 2, window: time.Hour, budget: batch.Budget{PerMinute: 2, Burst: 2},
		simRateLimit: 2, refresh: 3 * time.Second, attempts: 1})
	ctx := context.Background()
	for _, rep := range r.ask(t, "bitcoin", "bitcoin", "bitcoin") {
		if rep.Status != 200 {
			t.Fatalf("first batch of the burst: %+v", rep)
		}
	}
	// A gateway's client starts streaming solana: it is watched from now on.
	if _, err := watchlist.Register(ctx, r.rdb, time.Hour, "solana:usd"); err != nil {
		t.Fatal(err)
	}
	for _, rep := range r.ask(t, "ethereum", "ethereum", "ethereum") {
		if rep.Status != 200 {
			t.Fatalf("second batch of the burst: %+v", rep)
		}
	}
	calls := r.sim.CallLog()
	if len(calls) != 2 || !slices.Equal(calls[0].IDs, []string{"bitcoin"}) || !sameIDs(calls[1].IDs, "ethereum", "solana") {
		t.Fatalf("calls %+v; want bitcoin's, then ethereum's carrying solana", calls)
	}
	// The clients are answered first; the refresh lands on the feed next.
	if ups := r.waitRefreshes(t, "solana", 1, 5*time.Second); len(ups) != 1 || ups[0].FlushReason != price.FlushRefresh || ups[0].BatchSize != 0 {
		t.Fatalf("solana's refreshes on the feed: %+v, want the one that rode along", ups)
	}

	// The budget is spent for a minute; solana is due again after 3 s and
	// waits. A batch that arrives meanwhile waits for the next slot, and
	// gets it.
	time.Sleep(4 * time.Second)
	if n := r.sim.Calls(); n != 2 {
		t.Fatalf("%d calls with the budget spent", n)
	}
	waited := r.askWithin(t, []string{"cardano", "cardano", "cardano"}, []int64{80_000, 80_000, 80_000})
	for _, rep := range waited {
		if rep.Status != 200 {
			t.Errorf("the batch that waited for the slot: %+v", rep)
		}
	}
	calls = r.sim.CallLog()
	if len(calls) != 3 || !sameIDs(calls[2].IDs, "cardano", "solana") {
		t.Errorf("calls %+v; want a third, cardano's, carrying solana", calls)
	}
	checkWithinBudget(t, calls, 2)
	if ups := r.waitRefreshes(t, "solana", 2, 5*time.Second); len(ups) != 2 {
		t.Errorf("solana refreshed %d times, want 2 (both riding along)", len(ups))
	}
}

func sameIDs(got []string, want ...string) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// A coin in WATCH_COINS that nobody asks for is refreshed from spare
// budget, by one fetcher of two each period: one call per refresh, never
// two refreshes closer than the period's refresh point (the ages are on
// the Redis clock, so load cannot make this flaky). Every refresh is on the
// feed and in Postgres, and no request is answered by it.
func TestWatchedCoinIsRefreshedOncePerPeriodFromSpareBudget(t *testing.T) {
	const period = 2 * time.Second
	r := startRigWith(t, rigOptions{fetchers: 2, window: time.Hour, budget: batch.Budget{PerMinute: 600, Burst: 10},
		refresh: period, watch: []watchlist.Coin{{ID: "solana", Currency: "usd"}}})
	ups := r.waitRefreshes(t, "solana", 4, 30*time.Second)
	calls := r.sim.CallLog()
	if len(calls) < len(ups) || len(calls) > len(ups)+1 { // the call of a fifth may be under way
		t.Errorf("%d calls for %d refreshes, want one each: %+v", len(calls), len(ups), calls)
	}
	for _, c := range calls {
		if !slices.Equal(c.IDs, []string{"solana"}) {
			t.Errorf("call %+v, want solana alone", c)
		}
	}
	fetchers := map[string]bool{}
	for i, u := range ups {
		fetchers[u.Fetcher] = true
		if u.FlushReason != price.FlushRefresh || !strings.HasPrefix(u.BatchID, "solana:usd:refresh-") {
			t.Errorf("refresh %d: %+v", i, u)
		}
		if i == 0 {
			continue
		}
		if gap := u.FetchedAt.Sub(ups[i-1].FetchedAt); gap < period-period/5 {
			t.Errorf("refreshes %d and %d only %s apart: two fetchers refreshed the same period", i-1, i, gap)
		}
	}
	t.Logf("%d refreshes by %v in %d calls", len(ups), fetchers, len(calls))
	// Postgres holds every refreshed price, under the refresh's id.
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, total, err := r.db.History(context.Background(), pricedb.HistoryQuery{CoinID: "solana", VsCurrency: "usd", Limit: 100, Page: 1})
		if err == nil && total >= len(ups) {
			ids := map[string]bool{}
			for _, rec := range recs {
				ids[rec.BatchID.String] = true
			}
			for _, u := range ups {
				if !ids[u.BatchID] {
					t.Errorf("refresh %s is not in Postgres", u.BatchID)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refreshed prices not written: %d rows, %v", total, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if keys := r.rdb.Keys(context.Background(), price.ResultPrefix+"*").Val(); len(keys) != 0 {
		t.Errorf("refreshes left answers for requests: %v", keys)
	}
}

// A coin a gateway registered for its stream clients is refreshed and its
// price appears on the feed; once the registration runs out, it is not.
func TestStreamedCoinIsRefreshedOntoTheFeed(t *testing.T) {
	r := startRigWith(t, rigOptions{fetchers: 1, window: time.Hour, budget: batch.Budget{PerMinute: 600, Burst: 10}, refresh: 2 * time.Second})
	ctx := context.Background()
	if _, err := watchlist.Register(ctx, r.rdb, 3*time.Second, "cardano:usd"); err != nil {
		t.Fatal(err)
	}
	u := r.waitRefreshes(t, "cardano", 1, 10*time.Second)[0]
	a := u.Answer()
	if a.Price == "" || a.Batch.Source != price.SourceRefresh || a.Batch.Fetcher != "fetcher-0" {
		t.Errorf("the stream's event would carry %+v", a)
	}
	// The registration lapses (the gateway's client left): refreshes stop.
	time.Sleep(3 * time.Second)
	n := len(r.refreshes(t, "cardano"))
	time.Sleep(3 * time.Second)
	if m := len(r.refreshes(t, "cardano")); m != n {
		t.Errorf("cardano refreshed %d more times after its registration ran out", m-n)
	}
}
