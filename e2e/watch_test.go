package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// A coin nobody requests but a client streams is kept fresh: the gateway
// registers it as watched, a fetcher refreshes it from spare budget every
// WATCH_REFRESH_MS, and each refresh reaches the stream as a price event
// (batch.source refresh) and Postgres as a history row.
func TestStreamedCoinIsRefreshedWithoutRequests(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 2, Env: map[string]string{"WATCH_REFRESH_MS": "2000"}})
	tok := login(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := follow(ctx, s.Gateways[0].URL()+"/v1/prices/stream?ids=cardano", tok)
	var answers []price.Answer
	testkit.Eventually(t, 30*time.Second, "two refreshes of cardano on the stream", func() bool {
		evs, _ := f.snapshot()
		answers = answers[:0]
		for _, ev := range evs {
			var a price.Answer
			if err := json.Unmarshal([]byte(ev.Data), &a); err != nil {
				t.Fatalf("event %q: %v", ev.Data, err)
			}
			answers = append(answers, a)
		}
		return len(answers) >= 2
	})
	for _, a := range answers {
		if a.CoinID != "cardano" || a.Batch.Source != price.SourceRefresh || a.Batch.FlushReason != price.FlushRefresh || a.Price == "" {
			t.Errorf("stream event %+v, want a refresh of cardano", a)
		}
	}
	if calls := simCalls(t, s).Calls; calls < 2 {
		t.Errorf("%d upstream calls for %d refreshes", calls, len(answers))
	}
	testkit.Eventually(t, 10*time.Second, "the refreshes in the history", func() bool {
		got := getJSON(s.Gateways[0].URL(), "/v1/price/cardano/history?limit=10", tok)
		var h struct{ TotalItems int }
		return got.Status == 200 && json.Unmarshal([]byte(got.Raw), &h) == nil && h.TotalItems >= 2
	})
}
