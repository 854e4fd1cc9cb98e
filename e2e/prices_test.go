package e2e

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/tools/devstack"
)

// GET /v1/prices on the whole stack: each id rides its own coin's batch,
// the answer lists prices and errors, and the request is one throttle hit.
func TestManyCoinsInOneRequest(t *testing.T) {
	t.Parallel()
	// A limit of 2: the two good requests below name 10 ids between them
	// and must still fit, and the third must not.
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Env: map[string]string{"THROTTLE_GLOBAL_LIMIT": "2"}})
	tok := login(t, s)
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(s.RedisURL, "/0"), "redis://")})
	defer rdb.Close()
	ctx := context.Background()
	xlen := func() int64 { n, _ := rdb.XLen(ctx, price.StreamKey).Result(); return n }

	// Refusals first: none of them may reach the stream or the throttle.
	many := make([]string, 51)
	for i := range many {
		many[i] = "coin-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
	}
	for _, tt := range []struct {
		name, path, token string
		status            int
		says              string
	}{
		{"51 ids", "/v1/prices?ids=" + strings.Join(many, ","), tok, 400, "at most 50 distinct coin ids"},
		{"a bad id", "/v1/prices?ids=bitcoin,Ether_eum,solana", tok, 400, `ids: \"Ether_eum\"`},
		{"empty ids", "/v1/prices?ids=", tok, 400, "ids should not be empty"},
		{"no ids", "/v1/prices", tok, 400, "ids should not be empty"},
		{"unknown query parameter", "/v1/prices?ids=bitcoin&sort=asc", tok, 400, "property sort should not exist"},
		{"no token", "/v1/prices?ids=bitcoin", "", 401, "Missing Authorization header"},
	} {
		a := getJSON(s.URL, tt.path, tt.token)
		if a.Status != tt.status || a.Body["statusCode"] != float64(tt.status) || !strings.Contains(a.Raw, tt.says) {
			t.Errorf("%s: %d %s, want %d saying %s", tt.name, a.Status, a.Raw, tt.status, tt.says)
		}
	}
	if n := xlen(); n != 0 {
		t.Fatalf("refused requests put %d entries on the stream", n)
	}

	known := []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin"}
	a := getJSON(s.Gateways[0].URL(), "/v1/prices?ids="+strings.Join(known, ",")+",bitcoin", tok)
	if a.Status != http.StatusOK {
		t.Fatalf("5 known ids: %d %s", a.Status, a.Raw)
	}
	if got := coinIDs(a.Body["prices"]); !reflect.DeepEqual(got, known) {
		t.Errorf("prices for %v, want %v in the order named: %s", got, known, a.Raw)
	}
	if errs, _ := a.Body["errors"].([]any); len(errs) != 0 {
		t.Errorf("errors %v", errs)
	}
	for _, p := range a.Body["prices"].([]any) {
		p := p.(map[string]any)
		b, _ := p["batch"].(map[string]any)
		if _, ok := p["price"].(float64); !ok || p["fetchedAt"] == "" || b["id"] == "" || b["size"] != float64(1) {
			t.Errorf("price item %v: want a price, fetchedAt and its own batch of 1", p)
		}
	}
	if n := xlen(); n != 5 {
		t.Errorf("stream entries = %d, want 5 (one per distinct id)", n)
	}
	// Five single requests would make at most five calls, each fetching its
	// own coin once; the ids together must not cost more.
	r := simCalls(t, s)
	fetched := map[string]int{}
	for _, c := range r.Log {
		for _, id := range c.IDs {
			fetched[id]++
		}
	}
	if r.Calls > len(known) || len(fetched) != len(known) {
		t.Errorf("upstream calls %d fetching %v, want at most 5 calls fetching each of %v", r.Calls, fetched, known)
	}
	for id, n := range fetched {
		if n != 1 {
			t.Errorf("%s fetched %d times, want once", id, n)
		}
	}
	t.Logf("5 known ids in one request: 200 in %s, upstream calls %d, ids per call %v", a.Took, r.Calls, idsPerCall(r))

	ids := []string{"bitcoin", "ethereum", "no-such-coin-123", "solana", "cardano"}
	a = getJSON(s.Gateways[1].URL(), "/v1/prices?ids="+strings.Join(ids, ",")+"&vsCurrency=usd", tok)
	if a.Status != http.StatusOK || a.Body["vsCurrency"] != "usd" {
		t.Fatalf("5 ids, one unknown: %d %s", a.Status, a.Raw)
	}
	if got := coinIDs(a.Body["prices"]); !reflect.DeepEqual(got, []string{"bitcoin", "ethereum", "solana", "cardano"}) {
		t.Errorf("prices for %v: %s", got, a.Raw)
	}
	errs, _ := a.Body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one", errs)
	}
	if e := errs[0].(map[string]any); e["coinId"] != "no-such-coin-123" || e["statusCode"] != float64(404) || e["message"] != "Coin not found" {
		t.Errorf("error item %v, want no-such-coin-123 404 Coin not found", e)
	}
	if _, ok := a.Body["statusCode"]; ok {
		t.Errorf("a partial success carries statusCode: %s", a.Raw)
	}
	t.Logf("5 ids, one unknown: 200 in %s with 4 prices and 1 error; upstream calls so far %d", a.Took, simCalls(t, s).Calls)

	// Two requests naming ten ids spent the limit of two.
	a = getJSON(s.URL, "/v1/prices?ids=bitcoin", tok)
	if a.Status != http.StatusTooManyRequests || a.Header.Get("Retry-After") == "" || a.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("third request: %d %v %s, want 429 with Retry-After", a.Status, a.Header, a.Raw)
	}
	if n := xlen(); n != 10 {
		t.Errorf("stream entries = %d, want 10: a throttled request must not reach the stream", n)
	}
}

// All ids failing alike: the status they share, in the error shape.
func TestManyCoinsAllUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1})
	tok := login(t, s)
	a := getJSON(s.URL, "/v1/prices?ids=no-such-coin-1,no-such-coin-2", tok)
	if a.Status != http.StatusNotFound || a.Body["statusCode"] != float64(404) || a.Body["message"] != "Coin not found" || a.Body["error"] != "Not Found" {
		t.Errorf("%d %s, want 404 Coin not found", a.Status, a.Raw)
	}
	if errs, _ := a.Body["errors"].([]any); len(errs) != 2 {
		t.Errorf("errors %v, want both ids", errs)
	}
}

func coinIDs(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, it := range items {
		m, _ := it.(map[string]any)
		s, _ := m["coinId"].(string)
		out = append(out, s)
	}
	return out
}
