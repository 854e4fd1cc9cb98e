package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// 20 calls a minute without burst: one upstream slot every 3 s.
var pacedEnv = map[string]string{"COINGECKO_RATE_LIMIT": "20", "COINGECKO_BURST": "1"}

// With the budget spent, 30 clients over two gateways wait for the next
// slot instead of failing, and one call answers all of them.
func TestSpentBudgetAnswersEveryoneWithOneCallAtTheNextSlot(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Env: pacedEnv})
	tok := login(t, s)
	g := []string{s.Gateways[0].URL(), s.Gateways[1].URL()}
	for i, a := range concurrently([]string{g[0], g[1], g[0]}, func(b string) answer { return getJSON(b, "/v1/price/polkadot", tok) }) {
		if a.Status != http.StatusOK {
			t.Fatalf("first batch, waiter %d: %d %s", i, a.Status, a.Raw)
		}
	}
	bases := make([]string, 30)
	for i := range bases {
		bases[i] = g[i%2]
	}
	start := time.Now()
	got := concurrently(bases, func(b string) answer { return getJSON(b, "/v1/price/polkadot", tok) })
	batches := map[any]int{}
	for i, a := range got {
		if a.Status != http.StatusOK {
			t.Errorf("waiter %d: %d %s, want 200", i, a.Status, a.Raw)
		}
		batches[a.batch()["id"]]++
	}
	if n := simCalls(t, s).Calls; n != 2 {
		t.Errorf("upstream calls = %d, want 2 (one per slot)", n)
	}
	t.Logf("budget spent: 30 waiters over 2 gateways all 200 in %s, batches %v, upstream calls %d",
		time.Since(start).Round(time.Millisecond), batches, simCalls(t, s).Calls)
}

// A fetcher killed while it holds a batch waiting for a retry slot: the
// lease runs out and the other fetcher answers every waiter at the next
// slot.
func TestKilledFetcherWaitingForBudgetIsFinishedByAnother(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Env: pacedEnv})
	tok := login(t, s)
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(s.RedisURL, "/0"), "redis://")})
	defer rdb.Close()
	// The first call fails, so its fetcher holds the batch while it waits
	// 3 s for a retry slot.
	simFault(t, s, `{"kind":"status","code":500,"times":1}`)
	wait := askInBackground([]string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}, "/v1/price/stellar", tok)
	testkit.Eventually(t, 5*time.Second, "the upstream sees the first call", func() bool { return simCalls(t, s).Calls >= 1 })
	owner := batchOwner(t, rdb, "stellar:usd:")
	if err := fetcherNamed(t, s, owner).Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := wait()
	for i, a := range got {
		if a.Status != http.StatusOK {
			t.Fatalf("waiter %d: status %d %s", i, a.Status, a.Raw)
		}
		if a.batch()["fetcher"] == owner || a.batch()["attempt"] != float64(2) {
			t.Errorf("waiter %d: batch %v, want it finished by the other fetcher on attempt 2", i, a.batch())
		}
	}
	if n := simCalls(t, s).Calls; n != 2 {
		t.Errorf("upstream calls = %d, want 2 (the failed one, then the other fetcher's at the next slot)", n)
	}
	t.Logf("killed %s waiting for a retry slot: all 3 answered 200, slowest %s, upstream calls %d", owner, slowest(got), simCalls(t, s).Calls)
}
