package e2e

import (
	"net/http"
	"testing"

	"cryptopulse/tools/devstack"
)

// The price limit is one budget in Redis, whichever gateway a request hits.
func TestPriceLimitHoldsAcrossGateways(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Env: map[string]string{"THROTTLE_GLOBAL_LIMIT": "20"}})
	tok := login(t, s)
	var bases []string
	for i := range 100 {
		bases = append(bases, s.Gateways[i%2].URL())
	}
	got := concurrently(bases, func(b string) answer { return getJSON(b, "/v1/price/bitcoin", tok) })
	count := map[int]int{}
	perGateway := map[string]int{}
	for _, a := range got {
		count[a.Status]++
		if a.Status == http.StatusOK {
			perGateway[a.Gateway]++
		}
		if a.Status == http.StatusTooManyRequests {
			if a.Header.Get("Retry-After") == "" || a.Header.Get("X-RateLimit-Remaining") != "0" || a.Body["statusCode"] != float64(429) {
				t.Errorf("429 without Retry-After, X-RateLimit-Remaining: 0 or Nest body: %v %s", a.Header, a.Raw)
			}
		}
	}
	if count[http.StatusOK] != 20 || count[http.StatusTooManyRequests] != 80 {
		t.Errorf("answers %v, want exactly 20 × 200 and 80 × 429", count)
	}
	t.Logf("100 concurrent requests, one token, two gateways: %v; 200s per gateway %v; upstream calls %d",
		count, perGateway, simCalls(t, s).Calls)
}
