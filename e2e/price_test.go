package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// The numbers are quoted in the closing note from these logs.

func TestThreeRequestsOverTwoGatewaysMakeOneUpstreamCall(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2})
	tok := login(t, s)
	gws := []string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}
	got := concurrently(gws, func(base string) answer { return getJSON(base, "/v1/price/bitcoin", tok) })
	seen := map[string]bool{}
	for i, a := range got {
		if a.Err != nil || a.Status != http.StatusOK {
			t.Fatalf("request %d: status %d err %v body %s", i, a.Status, a.Err, a.Raw)
		}
		seen[a.Gateway] = true
		if a.str("coinId") != "bitcoin" || a.str("vsCurrency") != "usd" {
			t.Errorf("request %d: body %s", i, a.Raw)
		}
		if a.Body["price"] != got[0].Body["price"] || a.str("fetchedAt") != got[0].str("fetchedAt") ||
			a.batch()["id"] != got[0].batch()["id"] {
			t.Errorf("request %d got another snapshot: %s vs %s", i, a.Raw, got[0].Raw)
		}
		if a.batch()["size"] != float64(3) || a.batch()["flushReason"] != "threshold" {
			t.Errorf("request %d batch %v, want size 3 flushed by threshold", i, a.batch())
		}
		if a.Took > 4*time.Second {
			t.Errorf("request %d took %s: a full batch must not wait for the window", i, a.Took)
		}
	}
	if len(seen) != 2 {
		t.Errorf("answered by %v, want both gateways", seen)
	}
	if n := simCalls(t, s).Calls; n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
	t.Logf("3 requests over 2 gateways: upstream calls %d, slowest %s", simCalls(t, s).Calls, slowest(got))
}

func TestLoneRequestIsAnsweredByTheWindow(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 2})
	tok := login(t, s)
	a := getJSON(s.URL, "/v1/price/ethereum", tok)
	if a.Status != http.StatusOK {
		t.Fatalf("status %d: %s", a.Status, a.Raw)
	}
	if a.Took < 4500*time.Millisecond || a.Took > 6500*time.Millisecond {
		t.Errorf("lone request took %s, want between 4.5 s and 6.5 s", a.Took)
	}
	if a.batch()["flushReason"] != "window" || a.batch()["size"] != float64(1) {
		t.Errorf("batch %v, want size 1 flushed by window", a.batch())
	}
	if n := simCalls(t, s).Calls; n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
	t.Logf("lone request answered in %s, upstream calls %d", a.Took, simCalls(t, s).Calls)
}

func TestSevenConcurrentRequestsMakeAtMostThreeCalls(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2})
	tok := login(t, s)
	var bases []string
	for i := range 7 {
		bases = append(bases, s.Gateways[i%2].URL())
	}
	got := concurrently(bases, func(base string) answer { return getJSON(base, "/v1/price/solana", tok) })
	for i, a := range got {
		if a.Status != http.StatusOK {
			t.Errorf("request %d: status %d %s", i, a.Status, a.Raw)
		}
	}
	n := simCalls(t, s).Calls
	if n > 3 || n < 1 {
		t.Errorf("upstream calls = %d, want 1..3", n)
	}
	t.Logf("7 concurrent requests: upstream calls %d, slowest %s", n, slowest(got))
}

func TestFiveCoinsShareUpstreamCalls(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2})
	tok := login(t, s)
	coins := []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin"}
	got := make([]answer, len(coins))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range coins {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = getJSON(s.Gateways[i%2].URL(), "/v1/price/"+c, tok) }()
		time.Sleep(15 * time.Millisecond) // all five inside 100 ms
	}
	sent := time.Since(start)
	wg.Wait()
	for i, a := range got {
		if a.Status != http.StatusOK || a.str("coinId") != coins[i] {
			t.Errorf("%s: status %d %s", coins[i], a.Status, a.Raw)
		}
	}
	r := simCalls(t, s)
	if r.Calls >= 5 {
		t.Errorf("upstream calls = %d, want fewer than 5 (one call carries several ids)", r.Calls)
	}
	t.Logf("5 coins sent within %s: upstream calls %d, ids per call %v", sent, r.Calls, idsPerCall(r))
}

func TestUnknownCoinIsNotFoundForEveryWaiter(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1})
	tok := login(t, s)
	bases := []string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}
	for i, a := range concurrently(bases, func(b string) answer { return getJSON(b, "/v1/price/no-such-coin-123", tok) }) {
		if a.Status != http.StatusNotFound || a.Body["message"] != "Coin not found" || a.Body["error"] != "Not Found" {
			t.Errorf("waiter %d: status %d %s, want 404 Coin not found", i, a.Status, a.Raw)
		}
	}
	if n := simCalls(t, s).Calls; n != 1 {
		t.Errorf("upstream calls = %d, want 1", n)
	}
}

// upstreamFailures: every waiter of a batch gets the same error answer, well
// before the gateway's own 504.
func TestUpstreamFailuresReachEveryWaiter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, fault string
		status      int
		retryAfter  bool
	}{
		{"500 is 502", `{"kind":"status","code":500}`, http.StatusBadGateway, false},
		{"html page is 502", `{"kind":"html","code":403}`, http.StatusBadGateway, false},
		{"malformed body is 502", `{"kind":"malformed"}`, http.StatusBadGateway, false},
		{"429 is 429", `{"kind":"rate_limited","retry_after_ms":60000}`, http.StatusTooManyRequests, true},
		{"429 without retry-after is 429", `{"kind":"rate_limited","style":"cloudflare_html"}`, http.StatusTooManyRequests, true},
		{"hang is an error before the timeout", `{"kind":"hang"}`, http.StatusGatewayTimeout, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2})
			tok := login(t, s)
			simFault(t, s, tc.fault)
			bases := []string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}
			for i, a := range concurrently(bases, func(b string) answer { return getJSON(b, "/v1/price/bitcoin", tok) }) {
				if a.Status != tc.status {
					t.Errorf("waiter %d: status %d %s, want %d", i, a.Status, a.Raw, tc.status)
				}
				if a.Body["statusCode"] != float64(tc.status) || a.str("message") == "" {
					t.Errorf("waiter %d: body %s is not the Nest error shape", i, a.Raw)
				}
				if strings.HasPrefix(a.str("message"), "No batch result") {
					t.Errorf("waiter %d: the gateway timed out (%s); the fetcher must answer first", i, a.Raw)
				}
				if a.Took >= 8*time.Second {
					t.Errorf("waiter %d answered after %s, want before BATCH_RESULT_TIMEOUT_MS", i, a.Took)
				}
				if tc.retryAfter && a.Header.Get("Retry-After") == "" {
					t.Errorf("waiter %d: 429 without Retry-After", i)
				}
			}
			t.Logf("%s: upstream calls %d", tc.name, simCalls(t, s).Calls)
		})
	}
}

// A fetcher killed after claiming a batch and before replying: the lease
// runs out and another fetcher answers every waiter in time.
func TestKilledFetcherBatchIsFinishedByAnother(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2})
	tok := login(t, s)
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(s.RedisURL, "/0"), "redis://")})
	defer rdb.Close()
	// The first call hangs, so whoever claims the batch is still holding it.
	simFault(t, s, `{"kind":"slow","delay_ms":20000,"times":1}`)

	wait := askInBackground([]string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}, "/v1/price/bitcoin", tok)

	testkit.Eventually(t, 5*time.Second, "the upstream sees the first call", func() bool { return simCalls(t, s).Calls >= 1 })
	owner := batchOwner(t, rdb, "bitcoin:usd:")
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
		if a.Took >= 8*time.Second {
			t.Errorf("waiter %d took %s", i, a.Took)
		}
	}
	t.Logf("killed %s mid-batch: all 3 answered 200, slowest %s, upstream calls %d", owner, slowest(got), simCalls(t, s).Calls)
}

// batchOwner returns the fetcher holding the only batch with the prefix.
func batchOwner(t *testing.T, rdb *redis.Client, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var owner string
	testkit.Eventually(t, 5*time.Second, "a fetcher owns the batch", func() bool {
		ids, _ := rdb.ZRange(ctx, price.DueKey, 0, -1).Result()
		for _, id := range ids {
			if strings.HasPrefix(id, prefix) {
				owner, _ = rdb.HGet(ctx, price.BatchKey(id), "owner").Result()
			}
		}
		return owner != ""
	})
	return owner
}

func TestRedisRestartedEmptyRecoversWithoutRestarts(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	if a := getJSON(s.URL, "/v1/price/bitcoin", tok); a.Status != http.StatusOK {
		t.Fatalf("before restart: %d %s", a.Status, a.Raw)
	}
	// The first price must be in Postgres before Redis loses everything:
	// a record still queued in an empty-restarted Redis is gone.
	testkit.Eventually(t, 10*time.Second, "1 row in history", func() bool {
		h := getJSON(s.URL, "/v1/price/bitcoin/history", tok)
		return h.Status == http.StatusOK && h.Body["totalItems"] == float64(1)
	})
	s.Redis.Stop(t)
	if a := getJSON(s.URL, "/v1/price/bitcoin", tok); a.Status != http.StatusServiceUnavailable || a.Took > time.Second {
		t.Errorf("Redis down: status %d after %s (%s), want 503 within 1 s", a.Status, a.Took, a.Raw)
	}
	s.Redis.Start(t)
	// The gateway's readiness names Redis until it reconnects.
	testkit.Eventually(t, 10*time.Second, "gateway ready again", func() bool {
		resp, err := http.Get(s.URL + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	a := getJSON(s.URL, "/v1/price/bitcoin", tok)
	if a.Status != http.StatusOK {
		t.Fatalf("after Redis restarted empty: %d %s", a.Status, a.Raw)
	}
	t.Logf("first request after Redis restarted empty: 200 in %s", a.Took)
	// Both fetches are history: batch ids must not repeat across Redis lifetimes.
	testkit.Eventually(t, 10*time.Second, "2 rows in history", func() bool {
		h := getJSON(s.URL, "/v1/price/bitcoin/history", tok)
		return h.Status == http.StatusOK && h.Body["totalItems"] == float64(2)
	})
}

func TestEachFetchIsOneRowAndHistoryPages(t *testing.T) {
	t.Parallel()
	dbURL := kit.pg.NewDatabase(t)
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, DatabaseURL: dbURL, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	for i := range 5 {
		if a := getJSON(s.URL, "/v1/price/cardano", tok); a.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, a.Status, a.Raw)
		}
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := func() int {
		var n int
		_ = db.QueryRow("SELECT count(*) FROM price_records WHERE coin_id = 'cardano'").Scan(&n)
		return n
	}
	testkit.Eventually(t, 10*time.Second, "5 rows written", func() bool { return rows() == 5 })
	if calls := simCalls(t, s).Calls; calls != 5 || rows() != 5 {
		t.Fatalf("upstream calls %d, rows %d: want one row per fetch", calls, rows())
	}

	page1 := getJSON(s.URL, "/v1/price/cardano/history?limit=2", tok)
	if page1.Status != http.StatusOK {
		t.Fatalf("history: %d %s", page1.Status, page1.Raw)
	}
	want := map[string]any{"coinId": "cardano", "vsCurrency": "usd", "page": float64(1), "limit": float64(2),
		"totalItems": float64(5), "totalPages": float64(3), "hasNextPage": true}
	for k, v := range want {
		if page1.Body[k] != v {
			t.Errorf("history %s = %v, want %v", k, page1.Body[k], v)
		}
	}
	items, _ := page1.Body["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("items: %v", items)
	}
	first, _ := items[0].(map[string]any)
	second, _ := items[1].(map[string]any)
	if first["fetchedAt"].(string) < second["fetchedAt"].(string) {
		t.Errorf("history is not newest first: %v", items)
	}
	last := getJSON(s.URL, "/v1/price/cardano/history?limit=2&page=3", tok)
	if n := len(last.Body["items"].([]any)); n != 1 || last.Body["hasNextPage"] != false {
		t.Errorf("last page: %s", last.Raw)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if a := getJSON(s.URL, "/v1/price/cardano/history?from="+future, tok); a.Body["totalItems"] != float64(0) {
		t.Errorf("from in the future: %s", a.Raw)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=abc", "page=0", "from=yesterday", "to=2026-13-45",
		"from=2026-02-02T00:00:00Z&to=2026-02-01T00:00:00Z", "sort=asc"} {
		a := getJSON(s.URL, "/v1/price/cardano/history?"+q, tok)
		if a.Status != http.StatusBadRequest || a.Body["error"] != "Bad Request" {
			t.Errorf("history?%s: %d %s, want 400", q, a.Status, a.Raw)
		}
	}
}

// Postgres down: prices are still answered, history is 503, and the prices
// fetched meanwhile are written once Postgres is back.
func TestPostgresOutageLosesNoPrices(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, DatabaseURL: ownPostgres, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	if a := getJSON(s.URL, "/v1/price/litecoin", tok); a.Status != http.StatusOK {
		t.Fatalf("before: %d %s", a.Status, a.Raw)
	}
	s.Postgres.Stop(t)
	for i := range 3 {
		if a := getJSON(s.URL, "/v1/price/litecoin", tok); a.Status != http.StatusOK {
			t.Fatalf("Postgres down, price %d: %d %s", i, a.Status, a.Raw)
		}
	}
	if a := getJSON(s.URL, "/v1/price/litecoin/history", tok); a.Status != http.StatusServiceUnavailable {
		t.Errorf("Postgres down, history: %d %s, want 503", a.Status, a.Raw)
	}
	s.Postgres.Start(t)
	testkit.Eventually(t, 20*time.Second, "4 rows once Postgres is back", func() bool {
		a := getJSON(s.URL, "/v1/price/litecoin/history", tok)
		return a.Status == http.StatusOK && a.Body["totalItems"] == float64(4)
	})
}

func slowest(as []answer) time.Duration {
	var m time.Duration
	for _, a := range as {
		m = max(m, a.Took)
	}
	return m
}

func idsPerCall(r simReport) string {
	var parts []string
	for _, c := range r.Log {
		parts = append(parts, strconv.Itoa(len(c.IDs)))
	}
	return fmt.Sprint(parts)
}
