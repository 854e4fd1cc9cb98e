package coingecko

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"cryptopulse/tools/cgsim"
)

func simClient(t *testing.T, cfg cgsim.Config, plan, key string) (*Client, *cgsim.Server) {
	t.Helper()
	sim := cgsim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	c, err := New(srv.URL, key, plan, 42*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, sim
}

func TestPricesKeepTheirDigitsAndUnknownIdsAreLeftOut(t *testing.T) {
	c, sim := simClient(t, cgsim.Config{}, "", "")
	sim.SetPrice("bitcoin", "usd", "67187.33589365661234567")
	sim.SetPrice("shiba-inu", "usd", "2.08e-06")
	q, err := c.SimplePrice(context.Background(), []string{"bitcoin", "shiba-inu", "no-such-coin", "bitcoin"}, []string{"usd"})
	if err != nil {
		t.Fatal(err)
	}
	if got := q["bitcoin"]["usd"].String(); got != "67187.33589365661234567" {
		t.Errorf("bitcoin = %s: digits lost", got)
	}
	if got := q["shiba-inu"]["usd"].String(); got != "2.08e-06" {
		t.Errorf("shiba-inu = %s", got)
	}
	if _, ok := q["no-such-coin"]; ok {
		t.Error("unknown coin present")
	}
	log := sim.CallLog()
	if len(log) != 1 || len(log[0].IDs) != 3 {
		t.Errorf("calls %+v, want one call with the ids deduplicated", log)
	}
}

func TestNullIsAbsentNotZero(t *testing.T) {
	q, err := decode([]byte(`{"bitconnect":{"usd":0.5,"usd_24h_change":null},"x":{"usd":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q["bitconnect"]["usd_24h_change"]; ok {
		t.Error("null change decoded as a value")
	}
	if _, ok := q["x"]["usd"]; ok {
		t.Error("null price decoded as a value")
	}
}

func TestKeyHeaderFollowsThePlan(t *testing.T) {
	for _, plan := range []string{PlanDemo, PlanPro} {
		c, sim := simClient(t, cgsim.Config{Plan: plan, APIKey: "k-123"}, plan, "k-123")
		if _, err := c.SimplePrice(context.Background(), []string{"bitcoin"}, []string{"usd"}); err != nil {
			t.Errorf("%s plan: %v", plan, err)
		}
		if log := sim.CallLog(); len(log) != 1 || log[0].APIKey != "k-123" {
			t.Errorf("%s plan: key not sent: %+v", plan, log)
		}
	}
	// The demo header on the pro host is refused, and that is not retryable.
	c, _ := simClient(t, cgsim.Config{Plan: PlanPro}, PlanDemo, "k")
	_, err := c.SimplePrice(context.Background(), []string{"bitcoin"}, []string{"usd"})
	var ce *Error
	if !errors.As(err, &ce) || ce.Kind != Rejected || ce.Retryable() {
		t.Errorf("demo key on pro host: %v", err)
	}
}

func TestFailuresAreClassified(t *testing.T) {
	cases := []struct {
		name       string
		fault      cgsim.Fault
		kind       Kind
		retryAfter time.Duration
	}{
		{"429 with retry-after", cgsim.Fault{Kind: cgsim.RateLimited, Style: cgsim.RetryAfterJSON, RetryAfter: 7 * time.Second}, RateLimited, 7 * time.Second},
		{"429 headers only", cgsim.Fault{Kind: cgsim.RateLimited, Style: cgsim.HeadersOnlyJSON, RetryAfter: 7 * time.Second}, RateLimited, -1},
		{"429 cloudflare page", cgsim.Fault{Kind: cgsim.RateLimited, Style: cgsim.CloudflareHTML}, RateLimited, 42 * time.Second},
		{"500", cgsim.Fault{Kind: cgsim.Status, Code: 500}, Failed, 0},
		{"503", cgsim.Fault{Kind: cgsim.Status, Code: 503}, Unavailable, 0},
		{"408", cgsim.Fault{Kind: cgsim.Status, Code: 408}, Timeout, 0},
		{"html 1020", cgsim.Fault{Kind: cgsim.HTML, Code: 403}, Rejected, 0},
		{"malformed", cgsim.Fault{Kind: cgsim.Malformed}, Failed, 0},
		{"empty", cgsim.Fault{Kind: cgsim.Empty}, Failed, 0},
		{"hang", cgsim.Fault{Kind: cgsim.Hang}, Timeout, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, sim := simClient(t, cgsim.Config{}, "", "")
			sim.SetFault(tc.fault)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.SimplePrice(ctx, []string{"bitcoin"}, []string{"usd"})
			var ce *Error
			if !errors.As(err, &ce) || ce.Kind != tc.kind {
				t.Fatalf("got %v, want kind %s", err, tc.kind)
			}
			switch {
			case tc.retryAfter > 0 && ce.RetryAfter != tc.retryAfter:
				t.Errorf("retry after %s, want %s", ce.RetryAfter, tc.retryAfter)
			case tc.retryAfter < 0 && (ce.RetryAfter <= 0 || ce.RetryAfter > time.Minute):
				t.Errorf("retry after %s from x-ratelimit-reset, want (0, 1m]", ce.RetryAfter)
			}
		})
	}
}

func TestRetryAfterForms(t *testing.T) {
	now := time.Date(2026, 2, 28, 3, 55, 0, 0, time.UTC)
	cases := map[string]struct {
		h    http.Header
		want time.Duration
	}{
		"seconds":    {http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		"http date":  {http.Header{"Retry-After": {now.Add(10 * time.Second).Format(http.TimeFormat)}}, 10 * time.Second},
		"unix reset": {http.Header{"X-Ratelimit-Reset": {"1772250920"}}, 20 * time.Second},
		"nothing":    {http.Header{}, 0},
	}
	for name, tc := range cases {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}

func TestBaseURLMustBeHTTP(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "api.coingecko.com", "http://"} {
		if _, err := New(u, "", "", time.Second); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	c, err := New("https://pro-api.coingecko.com/", "", "", time.Second)
	if err != nil || c.keyHeader != "x-cg-pro-api-key" || c.base != "https://pro-api.coingecko.com/api/v3" {
		t.Errorf("pro host: %+v %v", c, err)
	}
}
