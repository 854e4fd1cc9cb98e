package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// TestCandlesThroughNginx: prices fetched through nginx come back as
// candles through nginx that agree with the history of the same prices.
func TestCandlesThroughNginx(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	// Each fetch gets its own pinned price, one with more digits than a
	// float64 keeps, so open, high, low and close are all told apart.
	pinned := []string{"82.1", "90.123456789012345678", "75.5", "80"}
	const fetches = 4
	for i := range fetches {
		simPrice(t, s, "litecoin", pinned[i])
		if a := getJSON(s.URL, "/v1/price/litecoin", tok); a.Status != http.StatusOK {
			t.Fatalf("price %d: %d %s", i, a.Status, a.Raw)
		}
	}
	var hist answer
	testkit.Eventually(t, 15*time.Second, "every price in history", func() bool {
		hist = getJSON(s.URL, "/v1/price/litecoin/history?limit=100", tok)
		return hist.Status == http.StatusOK && hist.Body["totalItems"] == float64(fetches)
	})
	items, _ := hist.Body["items"].([]any)

	// The buckets history implies: newest first, open the earliest price.
	type bucket struct {
		open, close, high, low float64
		count                  int
		first, last            string
	}
	var want []bucket
	var starts []string
	for i := len(items) - 1; i >= 0; i-- { // oldest first
		it := items[i].(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, it["fetchedAt"].(string))
		if err != nil {
			t.Fatal(err)
		}
		p, ts := it["price"].(float64), it["fetchedAt"].(string)
		start := at.Truncate(time.Minute).Format("2006-01-02T15:04:05.000Z")
		if len(starts) == 0 || starts[0] != start {
			starts = append([]string{start}, starts...)
			want = append([]bucket{{open: p, high: p, low: p, first: ts}}, want...)
		}
		b := &want[0]
		b.close, b.last, b.count = p, ts, b.count+1
		b.high, b.low = max(b.high, p), min(b.low, p)
	}

	got := getJSON(s.URL, "/v1/price/litecoin/candles?interval=1m", tok)
	if got.Status != http.StatusOK || got.Body["totalItems"] != float64(len(want)) {
		t.Fatalf("candles: %d %s, want %d buckets", got.Status, got.Raw, len(want))
	}
	candles, _ := got.Body["items"].([]any)
	for i, c := range candles {
		c := c.(map[string]any)
		w := want[i]
		if c["start"] != starts[i] || c["open"] != w.open || c["high"] != w.high || c["low"] != w.low || c["close"] != w.close ||
			c["count"] != float64(w.count) || c["firstFetchedAt"] != w.first || c["lastFetchedAt"] != w.last {
			t.Errorf("candle %d = %v, want start %s %+v (history %s)", i, c, starts[i], w, hist.Raw)
		}
	}

	if !strings.Contains(got.Raw, `"high":90.123456789012345678,`) {
		t.Errorf("candles lost digits of the high price 90.123456789012345678: %s", got.Raw)
	}

	if a := getJSON(s.URL, "/v1/price/litecoin/candles?interval=2m", tok); a.Status != http.StatusBadRequest || a.Body["error"] != "Bad Request" {
		t.Errorf("bad interval through nginx: %d %s, want 400", a.Status, a.Raw)
	}
	if a := getJSON(s.URL, "/v1/price/litecoin/candles?interval=1m", ""); a.Status != http.StatusUnauthorized {
		t.Errorf("no token through nginx: %d %s, want 401", a.Status, a.Raw)
	}
	t.Logf("candles through nginx: %d prices in %d 1m buckets: %s", fetches, len(want), got.Raw)
}

// simPrice pins the simulator's usd price of a coin.
func simPrice(t *testing.T, s *devstack.Stack, coin, price string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"currency":"usd","price":%q}`, coin, price)
	req, err := http.NewRequest(http.MethodPut, s.SimURL+"/_sim/price", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("simulator price: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("simulator refused price %s: %d", body, resp.StatusCode)
	}
}
