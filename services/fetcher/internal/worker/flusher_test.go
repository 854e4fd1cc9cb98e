package worker

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/tools/cgsim"
)

// batchTimes reads a finished batch's own timestamps from Redis (Redis
// time): when it came due and when a fetcher claimed it.
func (r *rig) batchTimes(t *testing.T, id string) (due, claimed int64) {
	t.Helper()
	v, err := r.rdb.HMGet(context.Background(), price.BatchKey(id), "due_ms", "claimed_ms").Result()
	if err != nil {
		t.Fatal(err)
	}
	due, _ = strconv.ParseInt(v[0].(string), 10, 64)
	claimed, _ = strconv.ParseInt(v[1].(string), 10, 64)
	return due, claimed
}

// The safety poll is a minute in the rig: these batches are flushed by
// their wake-ups alone, and within a few milliseconds of coming due (the
// former poll period was 100 ms).
func TestFullBatchIsClaimedTheMomentItFills(t *testing.T) {
	r := startRig(t, 2, time.Hour)
	for round := range 5 {
		replies := r.ask(t, "bitcoin", "bitcoin", "bitcoin")
		for _, rep := range replies {
			if rep.Status != 200 || rep.Batch.FlushReason != price.FlushThreshold {
				t.Fatalf("round %d: %+v", round, rep)
			}
		}
		due, claimed := r.batchTimes(t, replies[0].Batch.ID)
		if lag := claimed - due; lag < 0 || lag > 30 {
			t.Errorf("round %d: claimed %d ms after the batch filled, want well under the former 100 ms poll", round, lag)
		} else {
			t.Logf("round %d: claimed %d ms after filling", round, lag)
		}
	}
}

func TestWindowFlushFiresAtItsDueTime(t *testing.T) {
	r := startRig(t, 2, 400*time.Millisecond)
	start := time.Now()
	rep := r.ask(t, "ethereum")[0]
	if rep.Status != 200 || rep.Batch.FlushReason != price.FlushWindow {
		t.Fatalf("%+v", rep)
	}
	due, claimed := r.batchTimes(t, rep.Batch.ID)
	if lag := claimed - due; lag < 0 || lag > 30 {
		t.Errorf("window flush claimed %d ms after its due time", lag)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("answered in %s, before the window ended", took)
	}
}

// A spent budget makes due batches wait for the next slot; they keep taking
// requests, and one call answers everyone who waited.
func TestSpentBudgetWaitsForTheNextSlotAndOneCallAnswersAll(t *testing.T) {
	// 20 calls a minute, no burst: one slot every 3 s.
	r := startRigWith(t, rigOptions{fetchers: 2, window: time.Hour, budget: batch.Budget{PerMinute: 20, Burst: 1}})
	first := r.ask(t, "solana", "solana", "solana")
	if first[0].Status != 200 {
		t.Fatalf("first batch: %+v", first[0])
	}
	coins := make([]string, 30)
	timeouts := make([]int64, 30)
	for i := range coins {
		coins[i], timeouts[i] = "solana", 8000
	}
	start := time.Now()
	replies := r.askWithin(t, coins, timeouts)
	batches := map[string]int{}
	for _, rep := range replies {
		if rep.Status != 200 {
			t.Errorf("waiting request: %d %s, want 200", rep.Status, rep.Message)
		}
		batches[rep.Batch.ID]++
	}
	if n := r.sim.Calls(); n != 2 {
		t.Errorf("upstream calls = %d, want 2 (the first batch, then one call for all 30)", n)
	}
	if len(batches) != 1 {
		t.Errorf("30 waiting requests were answered by %d batches, want 1: %v", len(batches), batches)
	}
	t.Logf("30 requests waited %s for the next slot; batches %v", time.Since(start).Round(time.Millisecond), batches)
}

// Only a request that would give up before the next slot is answered 429.
func TestRequestThatCannotWaitForTheSlotGets429(t *testing.T) {
	r := startRigWith(t, rigOptions{fetchers: 1, window: time.Hour, budget: batch.Budget{PerMinute: 10, Burst: 1}})
	if rep := r.ask(t, "tron", "tron", "tron"); rep[0].Status != 200 {
		t.Fatalf("first batch: %+v", rep[0])
	}
	// The next slot is ~6 s away: a 1 s client cannot wait, an 8 s one can.
	var wg sync.WaitGroup
	var patient []price.Reply
	wg.Add(1)
	go func() {
		defer wg.Done()
		patient = r.askWithin(t, []string{"tron", "tron", "tron"}, []int64{8000, 8000, 8000})
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	hasty := r.askWithin(t, []string{"tron"}, []int64{1000})[0]
	if hasty.Status != 429 || hasty.RetryAfter < 1000 {
		t.Errorf("hasty request: %+v, want 429 with a Retry-After", hasty)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Errorf("the 429 took %s, after the client gave up", took)
	}
	wg.Wait()
	for _, rep := range patient {
		if rep.Status != 200 {
			t.Errorf("patient request: %+v, want 200", rep)
		}
	}
	if n := r.sim.Calls(); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestRateLimitWithShortRetryAfterIsRetriedOnceForAll(t *testing.T) {
	r := startRig(t, 2, time.Hour)
	r.sim.SetFault(cgsim.Fault{Kind: cgsim.RateLimited, RetryAfter: time.Second, Times: 1})
	replies := r.ask(t, "cardano", "cardano", "cardano")
	for _, rep := range replies {
		if rep.Status != 200 {
			t.Errorf("%+v, want 200 after one retry", rep)
		}
	}
	if n := r.sim.Calls(); n != 2 {
		t.Errorf("upstream calls = %d, want 2 (the 429, then one retry)", n)
	}
}

func TestSnapshotAnswersADueBatchWithoutACall(t *testing.T) {
	r := startRigWith(t, rigOptions{fetchers: 2, window: time.Hour, budget: batch.Budget{PerMinute: 1000, Burst: 100}, priceMaxAge: time.Minute})
	first := r.ask(t, "dogecoin", "dogecoin", "dogecoin")
	second := r.ask(t, "dogecoin", "dogecoin", "dogecoin")
	if first[0].Status != 200 || first[0].Batch.Source != price.SourceUpstream {
		t.Fatalf("first: %+v", first[0])
	}
	for _, rep := range second {
		if rep.Status != 200 || rep.Batch.Source != price.SourceSnapshot || rep.FetchedAt != first[0].FetchedAt ||
			rep.Price != first[0].Price || rep.Stale || rep.Batch.ID == first[0].Batch.ID {
			t.Errorf("second batch: %+v, want the first fetch's snapshot (%+v)", rep, first[0])
		}
	}
	if n := r.sim.Calls(); n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

func TestStaleOnErrorServesTheNewestStoredPrice(t *testing.T) {
	cases := []struct {
		name     string
		maxAge   time.Duration
		wait     time.Duration
		dropLast bool // Redis lost the newest price: Postgres has it
		want     int
	}{
		{"off", 0, 0, false, 502},
		{"young enough", time.Minute, 0, false, 200},
		{"from Postgres", time.Minute, 0, true, 200},
		{"too old", 300 * time.Millisecond, 400 * time.Millisecond, false, 502},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startRigWith(t, rigOptions{fetchers: 1, window: time.Hour, budget: batch.Budget{PerMinute: 1000, Burst: 100},
				staleMaxAge: tc.maxAge, attempts: 1})
			first := r.ask(t, "litecoin", "litecoin", "litecoin")
			if first[0].Status != 200 || first[0].Stale {
				t.Fatalf("first: %+v", first[0])
			}
			if tc.dropLast {
				r.waitRows(t, 1)
				if err := r.rdb.Del(context.Background(), price.LastPriceKey("litecoin", "usd")).Err(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(tc.wait)
			r.sim.SetFault(cgsim.Fault{Kind: cgsim.Status, Code: 500})
			for _, rep := range r.ask(t, "litecoin", "litecoin", "litecoin") {
				if rep.Status != tc.want {
					t.Errorf("%+v, want %d", rep, tc.want)
					continue
				}
				if tc.want == 200 && (!rep.Stale || rep.Batch.Source != price.SourceStale || rep.FetchedAt != first[0].FetchedAt || rep.Price != first[0].Price) {
					t.Errorf("%+v, want stale with the first fetch's price and time %s", rep, first[0].FetchedAt)
				}
				if tc.want != 200 && rep.Stale {
					t.Errorf("a failure marked stale: %+v", rep)
				}
			}
		})
	}
}

// waitRows waits until price_records holds n rows.
func (r *rig) waitRows(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		recs, total, err := r.db.History(context.Background(), pricedb.HistoryQuery{CoinID: "litecoin", VsCurrency: "usd", Limit: 10, Page: 1})
		if err == nil && total >= n && len(recs) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("price_records never reached %d rows", n)
}
