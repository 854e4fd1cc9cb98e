package cgsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for price windows and rate limits.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// t0 sits exactly on a 60 s window boundary so window arithmetic is obvious.
// A function rather than a variable keeps the package free of mutable state.
func t0() time.Time { return time.Date(2024, 3, 25, 8, 45, 0, 0, time.UTC) }

// start serves a simulator over real HTTP and tears it down in the order
// that cannot block: release hung handlers first, then close the listener.
func start(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	sim := New(cfg)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		ts.Close()
	})
	return sim, ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with a real client; header values may carry keys.
func do(t *testing.T, client *http.Client, method, rawURL string, body string, header map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func get(t *testing.T, ts *httptest.Server, pathAndQuery string) response {
	t.Helper()
	return do(t, ts.Client(), http.MethodGet, ts.URL+pathAndQuery, "", nil)
}

// prices decodes a /simple/price body keeping number text intact.
func prices(t *testing.T, body []byte) map[string]map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out map[string]map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return out
}

// errorCode reads error_code from either JSON error shape that carries one.
func errorCode(t *testing.T, body []byte) int {
	t.Helper()
	var v struct {
		ErrorCode int `json:"error_code"`
		Status    struct {
			ErrorCode    int    `json:"error_code"`
			ErrorMessage string `json:"error_message"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if v.Status.ErrorMessage == "" {
		t.Errorf("error body %s has no status.error_message", body)
	}
	if v.ErrorCode != 0 {
		return v.ErrorCode
	}
	return v.Status.ErrorCode
}

func wantStatus(t *testing.T, r response, code int) {
	t.Helper()
	if r.status != code {
		t.Fatalf("status = %d, want %d; body %s", r.status, code, r.body)
	}
}

func TestPingSupportedCurrenciesAndCoinsList(t *testing.T) {
	_, ts := start(t, Config{})

	r := get(t, ts, "/api/v3/ping")
	wantStatus(t, r, 200)
	if string(r.body) != `{"gecko_says":"(V3) To the Moon!"}` {
		t.Errorf("ping body = %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type = %q", ct)
	}

	r = get(t, ts, "/api/v3/simple/supported_vs_currencies")
	wantStatus(t, r, 200)
	var cur []string
	if err := json.Unmarshal(r.body, &cur); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"usd", "eur", "gbp", "jpy", "btc", "eth"} {
		if !slices.Contains(cur, c) {
			t.Errorf("supported currencies %v lack %s", cur, c)
		}
	}

	r = get(t, ts, "/api/v3/coins/list")
	wantStatus(t, r, 200)
	var coins []struct{ ID, Symbol, Name string }
	if err := json.Unmarshal(r.body, &coins); err != nil {
		t.Fatal(err)
	}
	if len(coins) < 30 {
		t.Errorf("only %d coins listed", len(coins))
	}
	ids := make([]string, len(coins))
	for i, c := range coins {
		ids[i] = c.ID
		if c.Symbol == "" || c.Name == "" {
			t.Errorf("coin %+v lacks symbol or name", c)
		}
	}
	if !slices.IsSorted(ids) {
		t.Errorf("coins/list not sorted by id")
	}
	for _, id := range []string{"bitcoin", "ethereum", "tether", "usd-coin", "solana", "dogecoin", "cardano",
		"ripple", "polkadot", "litecoin", "shiba-inu", "pepe", "chainlink", StaleCoinID} {
		if !slices.Contains(ids, id) {
			t.Errorf("coins/list lacks %s", id)
		}
	}

	r = get(t, ts, "/api/v3/nope")
	wantStatus(t, r, 404)
	r = get(t, ts, "/elsewhere")
	wantStatus(t, r, 404)
}

func TestSimplePriceBasics(t *testing.T) {
	_, ts := start(t, Config{Clock: newFakeClock(t0()).Now})

	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin,ethereum&vs_currencies=usd,eur,gbp,jpy,btc,eth")
	wantStatus(t, r, 200)
	p := prices(t, r.body)
	if len(p) != 2 {
		t.Fatalf("got %d coins: %s", len(p), r.body)
	}
	for _, id := range []string{"bitcoin", "ethereum"} {
		for _, c := range []string{"usd", "eur", "gbp", "jpy", "btc", "eth"} {
			n, ok := p[id][c].(json.Number)
			if !ok {
				t.Fatalf("%s.%s = %#v, want a number", id, c, p[id][c])
			}
			if f, _ := n.Float64(); f <= 0 {
				t.Errorf("%s.%s = %s, want positive", id, c, n)
			}
		}
	}
	if got := p["bitcoin"]["btc"]; got != json.Number("1.0") {
		t.Errorf("bitcoin in btc = %v, want 1.0", got)
	}
	if got := p["ethereum"]["eth"]; got != json.Number("1.0") {
		t.Errorf("ethereum in eth = %v, want 1.0", got)
	}
	usd, _ := p["bitcoin"]["usd"].(json.Number).Float64()
	if usd < 60000 || usd > 75000 {
		t.Errorf("bitcoin usd = %v, not realistic", usd)
	}
	jpy, _ := p["bitcoin"]["jpy"].(json.Number).Float64()
	if jpy < 100*usd {
		t.Errorf("bitcoin jpy = %v for usd %v", jpy, usd)
	}
	// Keys come in the order asked, as upstream sends them.
	if !bytes.HasPrefix(r.body, []byte(`{"bitcoin":{"usd":`)) {
		t.Errorf("body starts %s", r.body[:30])
	}
}

func TestMissingVsCurrencies(t *testing.T) {
	_, ts := start(t, Config{})
	for _, q := range []string{"?ids=bitcoin", "?ids=bitcoin&vs_currencies=", "?ids=bitcoin&vs_currencies=%20,%20", ""} {
		r := get(t, ts, "/api/v3/simple/price"+q)
		wantStatus(t, r, 422)
		if string(r.body) != `{"error":"Missing parameter vs_currencies"}` {
			t.Errorf("%s: body = %s", q, r.body)
		}
	}
}

func TestUnknownAndEmptyIDs(t *testing.T) {
	_, ts := start(t, Config{})
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin,not-a-coin&vs_currencies=usd")
	wantStatus(t, r, 200)
	p := prices(t, r.body)
	if _, ok := p["not-a-coin"]; ok || len(p) != 1 {
		t.Errorf("unknown id not left out: %s", r.body)
	}
	for _, q := range []string{"ids=not-a-coin,nor-this&", "ids=&", ""} {
		r = get(t, ts, "/api/v3/simple/price?"+q+"vs_currencies=usd")
		wantStatus(t, r, 200)
		if string(r.body) != "{}" {
			t.Errorf("%q: body = %s, want {}", q, r.body)
		}
	}
}

func TestUnsupportedCurrency(t *testing.T) {
	_, ts := start(t, Config{})
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=xyz")
	wantStatus(t, r, 200)
	if string(r.body) != `{"bitcoin":{}}` {
		t.Errorf("body = %s", r.body)
	}
	r = get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=xyz,usd")
	p := prices(t, r.body)
	if _, ok := p["bitcoin"]["xyz"]; ok || p["bitcoin"]["usd"] == nil {
		t.Errorf("body = %s", r.body)
	}
}

func TestIDNormalisationAndLog(t *testing.T) {
	sim, ts := start(t, Config{})
	q := url.Values{"ids": {" BitCoin , ETHEREUM,bitcoin,, "}, "vs_currencies": {"USD, Eur"}}
	r := get(t, ts, "/api/v3/simple/price?"+q.Encode())
	wantStatus(t, r, 200)
	p := prices(t, r.body)
	if len(p) != 2 || p["bitcoin"]["usd"] == nil || p["ethereum"]["eur"] == nil {
		t.Errorf("body = %s", r.body)
	}
	log := sim.CallLog()
	if len(log) != 1 {
		t.Fatalf("log = %+v", log)
	}
	if !slices.Equal(log[0].IDs, []string{"bitcoin", "ethereum"}) || !slices.Equal(log[0].VsCurrencies, []string{"usd", "eur"}) {
		t.Errorf("logged ids %v vs %v", log[0].IDs, log[0].VsCurrencies)
	}
}

func TestTooManyIDs(t *testing.T) {
	_, ts := start(t, Config{})
	ids := make([]string, MaxIDs+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("coin-%d", i)
	}
	ids[0] = "bitcoin"
	r := get(t, ts, "/api/v3/simple/price?vs_currencies=usd&ids="+strings.Join(ids, ","))
	wantStatus(t, r, 414)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("content type = %q", ct)
	}
	r = get(t, ts, "/api/v3/simple/price?vs_currencies=usd&ids="+strings.Join(ids[:MaxIDs], ","))
	wantStatus(t, r, 200)
	if p := prices(t, r.body); len(p) != 1 {
		t.Errorf("body = %s", r.body)
	}
}

func TestOptionalFields(t *testing.T) {
	_, ts := start(t, Config{Clock: newFakeClock(t0().Add(17 * time.Second)).Now})
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin,"+StaleCoinID+"&vs_currencies=usd,eur"+
		"&include_market_cap=true&include_24hr_vol=true&include_24hr_change=true&include_last_updated_at=true")
	wantStatus(t, r, 200)
	field := `-?\d+\.\d+(e[-+]\d+)?`
	shape := regexp.MustCompile(`^\{"bitcoin":\{"usd":` + field + `,"usd_market_cap":` + field + `,"usd_24h_vol":` + field +
		`,"usd_24h_change":` + field + `,"eur":` + field + `,"eur_market_cap":` + field + `,"eur_24h_vol":` + field +
		`,"eur_24h_change":` + field + `,"last_updated_at":\d+\},"` + StaleCoinID + `":\{"usd":` + field +
		`,"usd_market_cap":` + field + `,"usd_24h_vol":` + field + `,"usd_24h_change":null,`)
	if !shape.Match(r.body) {
		t.Errorf("body shape unexpected: %s", r.body)
	}
	p := prices(t, r.body)
	if got := p["bitcoin"]["last_updated_at"]; got != json.Number(fmt.Sprint(t0().Unix())) {
		t.Errorf("last_updated_at = %v, want window start %d", got, t0().Unix())
	}
	if got := p[StaleCoinID]["last_updated_at"]; got != json.Number(fmt.Sprint(staleUpdatedAt)) {
		t.Errorf("stale last_updated_at = %v", got)
	}
	if v, ok := p[StaleCoinID]["usd_24h_change"]; !ok || v != nil {
		t.Errorf("stale change = %#v, want present and null", v)
	}
	chg, _ := p["bitcoin"]["usd_24h_change"].(json.Number).Float64()
	if chg < -8 || chg > 8 {
		t.Errorf("24h change %v out of range", chg)
	}
	mc, _ := p["bitcoin"]["usd_market_cap"].(json.Number).Float64()
	if mc < 1e12 || mc > 2e12 {
		t.Errorf("bitcoin market cap %v not realistic", mc)
	}

	// Without the switches only the prices come back.
	r = get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
	if p := prices(t, r.body); len(p["bitcoin"]) != 1 {
		t.Errorf("body = %s", r.body)
	}
}

func TestPrecision(t *testing.T) {
	sim, ts := start(t, Config{Clock: newFakeClock(t0()).Now})
	sim.SetPrice("bitcoin", "usd", "67187.3358936566")
	cases := map[string]string{
		"":                "67187.3358936566",
		"&precision=full": "67187.3358936566",
		"&precision=2":    "67187.34",
		"&precision=0":    "67187.0",
		"&precision=18":   "67187.3358936566",
		"&precision=junk": "67187.3358936566",
	}
	for q, want := range cases {
		r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"+q)
		if got := prices(t, r.body)["bitcoin"]["usd"]; got != json.Number(want) {
			t.Errorf("%q: usd = %v, want %s", q, got, want)
		}
	}
	// Generated prices: full carries more digits than a float64 holds.
	r := get(t, ts, "/api/v3/simple/price?ids=ethereum&vs_currencies=btc&precision=full")
	n := prices(t, r.body)["ethereum"]["btc"].(json.Number)
	if digits := len(strings.TrimLeft(strings.ReplaceAll(strings.Split(n.String(), "e")[0], ".", ""), "0")); digits <= 17 {
		t.Errorf("full precision %s has only %d digits", n, digits)
	}
	r = get(t, ts, "/api/v3/simple/price?ids=shiba-inu&vs_currencies=usd&precision=10")
	if got := prices(t, r.body)["shiba-inu"]["usd"].(json.Number).String(); !strings.Contains(got, "e-06") {
		t.Errorf("shiba-inu at precision 10 = %s, want exponent form", got)
	}
}

func TestTinyPricesUseExponentForm(t *testing.T) {
	_, ts := start(t, Config{Clock: newFakeClock(t0()).Now})
	r := get(t, ts, "/api/v3/simple/price?ids=shiba-inu,pepe&vs_currencies=usd,btc")
	exp := regexp.MustCompile(`^[1-9](\.\d+)?e-\d\d$`)
	for id, m := range prices(t, r.body) {
		for cur, v := range m {
			if s := v.(json.Number).String(); !exp.MatchString(s) {
				t.Errorf("%s.%s = %s, want exponent form", id, cur, s)
			}
		}
	}
	if !regexp.MustCompile(`"shiba-inu":\{"usd":2\.\d+e-06,`).Match(r.body) {
		t.Errorf("shiba-inu not like 2.08e-06: %s", r.body)
	}
}

func TestFormatNumber(t *testing.T) {
	cases := []struct {
		in   string
		sig  int
		want string
	}{
		{"0.00000208", 15, "2.08e-06"},
		{"1", 15, "1.0"},
		{"67187.3358936566", 15, "67187.3358936566"},
		{"67187.33589365662", 15, "67187.3358936566"},
		{"0.0001", 15, "0.0001"},
		{"0.00009", 15, "9.0e-05"},
		{"9.9999999999999999", 15, "10.0"},
		{"-3.5", 15, "-3.5"},
		{"10000000000000000", 15, "1.0e+16"},
		{"1234567890123456", 15, "1234567890123460.0"},
		{"0", 15, "0.0"},
		{"1/3", 20, "0.33333333333333333333"},
		{"123456789.123456789123456789", 25, "123456789.1234567891234568"},
		{"1e-400", 15, "1.0e-400"},
	}
	for _, c := range cases {
		if got := formatNumber(mustRat(c.in), c.sig); got != c.want {
			t.Errorf("formatNumber(%s, %d) = %s, want %s", c.in, c.sig, got, c.want)
		}
	}
}

func TestPinnedPricesKeepEveryDigit(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.SetPrice("bitcoin", "usd", "67187.335893656612345678")
	sim.SetPrice("shiba-inu", "usd", "2.0812345678901234567e-06")
	sim.SetPrice("Brand-New", "CHF", "42")
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin,shiba-inu,brand-new&vs_currencies=usd,chf")
	for _, want := range []string{`"bitcoin":{"usd":67187.335893656612345678}`, `"shiba-inu":{"usd":2.0812345678901234567e-06}`, `"chf":42}}`} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("body %s lacks %s", r.body, want)
		}
	}
	// The bitcoin pin drives every btc quote.
	sim.SetPrice("ethereum", "usd", "3000")
	sim.SetPrice("bitcoin", "usd", "60000")
	r = get(t, ts, "/api/v3/simple/price?ids=ethereum&vs_currencies=btc")
	if string(r.body) != `{"ethereum":{"btc":0.05}}` {
		t.Errorf("body = %s", r.body)
	}
	r = get(t, ts, "/api/v3/simple/supported_vs_currencies")
	if !bytes.Contains(r.body, []byte(`"chf"`)) {
		t.Errorf("pinned currency not listed: %s", r.body)
	}

	defer func() {
		if recover() == nil {
			t.Error("SetPrice accepted a non-number")
		}
	}()
	sim.SetPrice("bitcoin", "usd", "NaN")
}

func TestAddCoin(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.AddCoin("My-Coin", "myc", "My Coin")
	r := get(t, ts, "/api/v3/simple/price?ids=my-coin&vs_currencies=usd")
	if p := prices(t, r.body); p["my-coin"]["usd"] == nil {
		t.Errorf("added coin not quoted: %s", r.body)
	}
	r = get(t, ts, "/api/v3/coins/list")
	if !bytes.Contains(r.body, []byte(`{"id":"my-coin","symbol":"myc","name":"My Coin"}`)) {
		t.Errorf("added coin not listed")
	}
}

func TestKeyRules(t *testing.T) {
	cases := []struct {
		name     string
		plan     string
		key      string
		header   map[string]string
		query    string
		want     int
		wantCode int
	}{
		{"demo keyless", "demo", "", nil, "", 200, 0},
		{"demo any key header", "", "", map[string]string{"x-cg-demo-api-key": "whatever"}, "", 200, 0},
		{"demo any key query", "demo", "", nil, "&x_cg_demo_api_key=whatever", 200, 0},
		{"demo pro key header", "demo", "", map[string]string{"x-cg-pro-api-key": "p"}, "", 400, 10010},
		{"demo pro key query", "demo", "", nil, "&x_cg_pro_api_key=p", 400, 10010},
		{"demo key required", "demo", "k", nil, "", 401, 10002},
		{"demo right key header", "demo", "k", map[string]string{"x-cg-demo-api-key": "k"}, "", 200, 0},
		{"demo right key query", "demo", "k", nil, "&x_cg_demo_api_key=k", 200, 0},
		{"demo wrong key", "demo", "k", map[string]string{"x-cg-demo-api-key": "nope"}, "", 401, 10002},
		{"pro missing key", "pro", "", nil, "", 401, 10002},
		{"pro any key header", "pro", "", map[string]string{"x-cg-pro-api-key": "p"}, "", 200, 0},
		{"pro any key query", "pro", "", nil, "&x_cg_pro_api_key=p", 200, 0},
		{"pro demo key header", "pro", "", map[string]string{"x-cg-demo-api-key": "d"}, "", 400, 10011},
		{"pro demo key query", "pro", "", nil, "&x_cg_demo_api_key=d", 400, 10011},
		{"pro right key", "pro", "k", map[string]string{"x-cg-pro-api-key": "k"}, "", 200, 0},
		{"pro wrong key", "pro", "k", map[string]string{"x-cg-pro-api-key": "nope"}, "", 401, 10002},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim, ts := start(t, Config{Plan: c.plan, APIKey: c.key})
			for _, path := range []string{"/api/v3/simple/price?ids=bitcoin&vs_currencies=usd", "/api/v3/ping?x=1"} {
				r := do(t, ts.Client(), http.MethodGet, ts.URL+path+c.query, "", c.header)
				wantStatus(t, r, c.want)
				if c.wantCode != 0 {
					if got := errorCode(t, r.body); got != c.wantCode {
						t.Errorf("error_code = %d, want %d (%s)", got, c.wantCode, r.body)
					}
				}
			}
			if sim.Calls() != 2 {
				t.Errorf("calls = %d, want 2 (rejected calls count)", sim.Calls())
			}
		})
	}

	sim, ts := start(t, Config{Plan: "pro"})
	do(t, ts.Client(), http.MethodGet, ts.URL+"/api/v3/ping", "", map[string]string{"x-cg-pro-api-key": "secret"})
	if got := sim.CallLog()[0].APIKey; got != "secret" {
		t.Errorf("logged key = %q", got)
	}
}

func TestRateLimitStyles(t *testing.T) {
	for _, style := range []RateLimitStyle{RetryAfterJSON, HeadersOnlyJSON, CloudflareHTML} {
		t.Run(style.String(), func(t *testing.T) {
			clock := newFakeClock(t0())
			sim, ts := start(t, Config{RateLimit: 2, RateLimitStyle: style, Clock: clock.Now})
			const path = "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"
			wantStatus(t, get(t, ts, path), 200)
			clock.Set(t0().Add(10 * time.Second))
			wantStatus(t, get(t, ts, path), 200)
			clock.Set(t0().Add(20 * time.Second))
			r := get(t, ts, path)
			wantStatus(t, r, 429)
			// The t0()+10s call must age out before a third fits: 50 s from now.
			checkRateLimited(t, r, style, "50", "2", t0().Add(70*time.Second))

			clock.Set(t0().Add(70 * time.Second))
			wantStatus(t, get(t, ts, path), 200)
			if sim.Calls() != 4 {
				t.Errorf("calls = %d, want 4", sim.Calls())
			}
			if st := sim.CallLog()[2].Status; st != 429 {
				t.Errorf("logged status = %d", st)
			}
		})
	}
}

// checkRateLimited asserts a 429 has exactly the hints its style carries.
func checkRateLimited(t *testing.T, r response, style RateLimitStyle, retryAfter, limit string, reset time.Time) {
	t.Helper()
	wantStatus(t, r, 429)
	switch style {
	case RetryAfterJSON:
		if got := r.header.Get("Retry-After"); got != retryAfter {
			t.Errorf("Retry-After = %q, want %s", got, retryAfter)
		}
		if got := errorCode(t, r.body); got != 429 {
			t.Errorf("error_code = %d", got)
		}
	case HeadersOnlyJSON:
		if got := r.header.Get("Retry-After"); got != "" {
			t.Errorf("Retry-After = %q, want none", got)
		}
		if r.header.Get("x-ratelimit-limit") != limit || r.header.Get("x-ratelimit-remaining") != "0" {
			t.Errorf("x-ratelimit headers = %v", r.header)
		}
		got, err := time.Parse("2006-01-02 15:04:05 -0700", r.header.Get("x-ratelimit-reset"))
		if err != nil || !got.Equal(reset) {
			t.Errorf("x-ratelimit-reset = %q (%v), want %v", r.header.Get("x-ratelimit-reset"), err, reset)
		}
		if got := errorCode(t, r.body); got != 429 {
			t.Errorf("error_code = %d", got)
		}
	case CloudflareHTML:
		if got := r.header.Get("Retry-After"); got != "" {
			t.Errorf("Retry-After = %q, want none", got)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("content type = %q", ct)
		}
		if !bytes.Contains(r.body, []byte("1015")) {
			t.Errorf("body lacks the 1015 code: %s", r.body)
		}
	}
}

func TestRateLimitCountsErrors(t *testing.T) {
	sim, ts := start(t, Config{RateLimit: 1, Clock: newFakeClock(t0()).Now})
	wantStatus(t, get(t, ts, "/api/v3/simple/price?ids=bitcoin"), 422)
	wantStatus(t, get(t, ts, "/api/v3/ping"), 429)
	// Control routes are free.
	wantStatus(t, get(t, ts, "/_sim/calls"), 200)
	sim.Reset()
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
}

func TestUnlimitedByDefault(t *testing.T) {
	sim, ts := start(t, Config{Clock: newFakeClock(t0()).Now})
	for range 50 {
		wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
	}
	if sim.Calls() != 50 {
		t.Errorf("calls = %d", sim.Calls())
	}
}

func TestFaultStatusTimes(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.SetFault(Fault{Kind: Status, Code: 503, Times: 2})
	for range 2 {
		r := get(t, ts, "/api/v3/ping")
		wantStatus(t, r, 503)
		if got := errorCode(t, r.body); got != 503 {
			t.Errorf("error_code = %d", got)
		}
	}
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)

	sim.SetFault(Fault{Kind: Status})
	for range 3 {
		wantStatus(t, get(t, ts, "/api/v3/ping"), 500)
	}
	sim.ClearFault()
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)

	sim.SetFault(Fault{Kind: Status, Code: 408, Times: 1})
	wantStatus(t, get(t, ts, "/api/v3/ping"), 408)
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
}

func TestFaultRateLimited(t *testing.T) {
	for _, style := range []RateLimitStyle{RetryAfterJSON, HeadersOnlyJSON, CloudflareHTML} {
		t.Run(style.String(), func(t *testing.T) {
			now := t0().Add(200 * time.Millisecond)
			sim, ts := start(t, Config{Clock: newFakeClock(now).Now})
			sim.SetFault(Fault{Kind: RateLimited, Style: style, RetryAfter: 2500 * time.Millisecond, Times: 1})
			r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
			checkRateLimited(t, r, style, "3", "30", t0().Add(3*time.Second))
			wantStatus(t, get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"), 200)
		})
	}
	sim, ts := start(t, Config{})
	sim.SetFault(Fault{Kind: RateLimited})
	if got := get(t, ts, "/api/v3/ping").header.Get("Retry-After"); got != "60" {
		t.Errorf("default Retry-After = %q", got)
	}
}

func TestFaultHTML(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.SetFault(Fault{Kind: HTML, Code: 403, Times: 1})
	r := get(t, ts, "/api/v3/ping")
	wantStatus(t, r, 403)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("content type = %q", ct)
	}
	if !bytes.Contains(r.body, []byte("1020")) || !bytes.Contains(r.body, []byte("Access denied")) {
		t.Errorf("body = %s", r.body)
	}
	sim.SetFault(Fault{Kind: HTML, Times: 1})
	r = get(t, ts, "/api/v3/ping")
	wantStatus(t, r, 503)
	if !bytes.HasPrefix(r.body, []byte("<!DOCTYPE html>")) {
		t.Errorf("body = %s", r.body)
	}
}

func TestFaultMalformedAndEmpty(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.SetFault(Fault{Kind: Malformed, Times: 1})
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
	wantStatus(t, r, 200)
	var v any
	if err := json.Unmarshal(r.body, &v); err == nil {
		t.Errorf("malformed body decoded: %s", r.body)
	}
	sim.SetFault(Fault{Kind: Empty, Times: 1})
	r = get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
	wantStatus(t, r, 200)
	if len(r.body) != 0 {
		t.Errorf("empty fault sent %q", r.body)
	}
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
}

func TestFaultSlowAndLatency(t *testing.T) {
	sim, ts := start(t, Config{})
	sim.SetFault(Fault{Kind: Slow, Delay: 150 * time.Millisecond, Times: 1})
	begin := time.Now()
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
	if took := time.Since(begin); took < 150*time.Millisecond {
		t.Errorf("slow answered after %v", took)
	}
	wantStatus(t, r, 200)
	if prices(t, r.body)["bitcoin"]["usd"] == nil {
		t.Errorf("slow body = %s", r.body)
	}

	_, ts = start(t, Config{Latency: 100 * time.Millisecond})
	begin = time.Now()
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
	if took := time.Since(begin); took < 100*time.Millisecond {
		t.Errorf("latency %v", took)
	}
	begin = time.Now()
	wantStatus(t, get(t, ts, "/_sim/calls"), 200)
	if took := time.Since(begin); took >= 100*time.Millisecond {
		t.Errorf("control route delayed %v", took)
	}
}

func TestFaultHangReleasedByClientTimeout(t *testing.T) {
	sim := New(Config{})
	ts := httptest.NewServer(sim)
	sim.SetFault(Fault{Kind: Hang})

	client := &http.Client{Timeout: 200 * time.Millisecond}
	begin := time.Now()
	resp, err := client.Get(ts.URL + "/api/v3/ping")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("hang answered %d", resp.StatusCode)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("client waited %v", took)
	}
	// Without sim.Close, the server can only shut down if the abandoned
	// handler noticed the disconnect.
	closed := make(chan struct{})
	go func() { ts.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		sim.Close()
		<-closed
		t.Fatal("hung handler ignored the client's disconnect")
	}
	log := sim.CallLog()
	if len(log) != 1 || log[0].Status != 0 {
		t.Errorf("log = %+v, want one call with status 0", log)
	}
}

func TestFaultHangReleasedByClose(t *testing.T) {
	sim := New(Config{})
	ts := httptest.NewServer(sim)
	defer ts.Close()
	sim.SetFault(Fault{Kind: Hang, Times: 1})

	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(ts.URL + "/api/v3/ping")
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("hang answered %d", resp.StatusCode)
		} else {
			err = nil
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for sim.Calls() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before Close: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	sim.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hung call")
	}
	sim.Close() // idempotent
	// Times was 1, so the next call is normal, and calls that do not wait
	// are still answered after Close.
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
}

func TestPricesHoldWithinWindowAndMoveAcross(t *testing.T) {
	clock := newFakeClock(t0())
	_, ts := start(t, Config{Clock: clock.Now})
	const path = "/api/v3/simple/price?ids=bitcoin,ethereum,tether,shiba-inu," + StaleCoinID + "&vs_currencies=usd,eur,btc&include_24hr_change=true"
	first := get(t, ts, path).body
	clock.Set(t0().Add(59*time.Second + 999*time.Millisecond))
	if again := get(t, ts, path).body; !bytes.Equal(first, again) {
		t.Errorf("prices moved within a window:\n%s\n%s", first, again)
	}
	clock.Set(t0().Add(60 * time.Second))
	next := prices(t, get(t, ts, path).body)
	old := prices(t, first)
	for _, id := range []string{"bitcoin", "ethereum", "tether", "shiba-inu"} {
		if old[id]["usd"] == next[id]["usd"] {
			t.Errorf("%s usd did not move across windows: %v", id, old[id]["usd"])
		}
		a, _ := old[id]["usd"].(json.Number).Float64()
		b, _ := next[id]["usd"].(json.Number).Float64()
		if d := (b - a) / a; d > 0.06 || d < -0.06 {
			t.Errorf("%s moved %.2f%% in one window", id, d*100)
		}
	}
	if old[StaleCoinID]["usd"] != next[StaleCoinID]["usd"] {
		t.Errorf("stale coin moved")
	}
	// Deterministic: the same window gives the same numbers on any server.
	clock.Set(t0())
	if again := get(t, ts, path).body; !bytes.Equal(first, again) {
		t.Errorf("window not deterministic")
	}
	_, other := start(t, Config{Clock: newFakeClock(t0().Add(30 * time.Second)).Now})
	if again := get(t, other, path).body; !bytes.Equal(first, again) {
		t.Errorf("two servers disagree on one window")
	}
	// Consecutive windows always differ, over many windows.
	sim := New(Config{})
	c := sim.coins["tether"]
	for w := int64(-50); w < 500; w++ {
		if moveFactor(c, w).Cmp(moveFactor(c, w+1)) == 0 {
			t.Fatalf("windows %d and %d share a price", w, w+1)
		}
	}
}

func TestCacheWindowSetting(t *testing.T) {
	clock := newFakeClock(t0())
	_, ts := start(t, Config{CacheWindow: 20 * time.Second, Clock: clock.Now})
	const path = "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"
	a := get(t, ts, path).body
	clock.Set(t0().Add(19 * time.Second))
	b := get(t, ts, path).body
	clock.Set(t0().Add(20 * time.Second))
	c := get(t, ts, path).body
	if !bytes.Equal(a, b) || bytes.Equal(b, c) {
		t.Errorf("20 s window: %s %s %s", a, b, c)
	}
}

func TestCallCountingAndReset(t *testing.T) {
	clock := newFakeClock(t0())
	sim, ts := start(t, Config{Clock: clock.Now})
	get(t, ts, "/api/v3/simple/price?ids=bitcoin,ethereum&vs_currencies=usd")
	clock.Set(t0().Add(time.Second))
	get(t, ts, "/api/v3/simple/price?ids=solana&vs_currencies=eur,gbp&precision=2")
	get(t, ts, "/api/v3/ping")
	get(t, ts, "/api/v3/unknown")
	get(t, ts, "/_sim/calls")
	get(t, ts, "/not-api")
	if sim.Calls() != 4 {
		t.Fatalf("calls = %d, want 4", sim.Calls())
	}
	log := sim.CallLog()
	want := []Call{
		{Time: t0(), Path: "/api/v3/simple/price", Query: "ids=bitcoin,ethereum&vs_currencies=usd", IDs: []string{"bitcoin", "ethereum"}, VsCurrencies: []string{"usd"}, Status: 200},
		{Time: t0().Add(time.Second), Path: "/api/v3/simple/price", Query: "ids=solana&vs_currencies=eur,gbp&precision=2", IDs: []string{"solana"}, VsCurrencies: []string{"eur", "gbp"}, Status: 200},
		{Time: t0().Add(time.Second), Path: "/api/v3/ping", Status: 200},
		{Time: t0().Add(time.Second), Path: "/api/v3/unknown", Status: 404},
	}
	for i := range want {
		g, w := log[i], want[i]
		if !g.Time.Equal(w.Time) || g.Path != w.Path || g.Query != w.Query || g.Status != w.Status ||
			!slices.Equal(g.IDs, w.IDs) || !slices.Equal(g.VsCurrencies, w.VsCurrencies) {
			t.Errorf("log[%d] = %+v, want %+v", i, g, w)
		}
	}
	log[0].IDs[0] = "mutated"
	if sim.CallLog()[0].IDs[0] != "bitcoin" {
		t.Error("CallLog shares memory with the server")
	}

	sim.SetFault(Fault{Kind: Status})
	sim.SetPrice("bitcoin", "usd", "1")
	sim.Reset()
	if sim.Calls() != 0 || len(sim.CallLog()) != 0 {
		t.Errorf("reset left %d calls", sim.Calls())
	}
	r := get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd")
	wantStatus(t, r, 200) // fault cleared
	if string(r.body) != `{"bitcoin":{"usd":1}}` {
		t.Errorf("pin lost on reset: %s", r.body)
	}
}

func TestControlRoutes(t *testing.T) {
	_, ts := start(t, Config{Clock: newFakeClock(t0()).Now})
	c := ts.Client()
	send := func(method, path, body string) response {
		return do(t, c, method, ts.URL+path, body, map[string]string{"Content-Type": "application/json"})
	}

	r := send(http.MethodPost, "/_sim/fault", `{"kind":"status","code":502,"times":1}`)
	wantStatus(t, r, 200)
	if string(r.body) != `{"ok":true}` {
		t.Errorf("fault body = %s", r.body)
	}
	r = send(http.MethodGet, "/_sim/fault", "")
	if string(r.body) != `{"kind":"status","code":502,"style":"retry_after_json","times":1}` {
		t.Errorf("GET fault = %s", r.body)
	}
	wantStatus(t, get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"), 502)
	wantStatus(t, get(t, ts, "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd"), 200)

	r = send(http.MethodGet, "/_sim/calls", "")
	wantStatus(t, r, 200)
	var rep struct {
		Calls int `json:"calls"`
		Log   []struct {
			Time         time.Time `json:"time"`
			Path         string    `json:"path"`
			IDs          []string  `json:"ids"`
			VsCurrencies []string  `json:"vs_currencies"`
			Status       int       `json:"status"`
		} `json:"log"`
	}
	if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Calls != 2 || len(rep.Log) != 2 || rep.Log[0].Status != 502 || rep.Log[1].Status != 200 ||
		!slices.Equal(rep.Log[1].IDs, []string{"bitcoin"}) || !slices.Equal(rep.Log[1].VsCurrencies, []string{"usd"}) ||
		!rep.Log[0].Time.Equal(t0()) || rep.Log[0].Path != "/api/v3/simple/price" {
		t.Errorf("calls report = %s", r.body)
	}
	if !bytes.Contains(r.body, []byte(`"query":"ids=bitcoin&vs_currencies=usd"`)) {
		t.Errorf("query not logged verbatim: %s", r.body)
	}

	wantStatus(t, send(http.MethodPost, "/_sim/fault", `{"kind":"rate_limited","style":"headers_only_json","retry_after_ms":4000}`), 200)
	r = get(t, ts, "/api/v3/ping")
	checkRateLimited(t, r, HeadersOnlyJSON, "", "30", t0().Add(4*time.Second))
	wantStatus(t, send(http.MethodDelete, "/_sim/fault", ""), 200)
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)

	wantStatus(t, send(http.MethodPost, "/_sim/fault", `{"kind":"slow","delay_ms":120,"times":1}`), 200)
	begin := time.Now()
	wantStatus(t, get(t, ts, "/api/v3/ping"), 200)
	if time.Since(begin) < 120*time.Millisecond {
		t.Error("slow fault via control route did not delay")
	}

	for _, bad := range []string{`{"kind":"explode"}`, `{"kind":"slow","delay":5}`, `not json`, `{"kind":"status","code":7}`, `{"kind":"rate_limited","style":"smoke"}`} {
		r = send(http.MethodPost, "/_sim/fault", bad)
		wantStatus(t, r, 400)
		var e struct{ Error string }
		if json.Unmarshal(r.body, &e) != nil || e.Error == "" {
			t.Errorf("%s: error body %s", bad, r.body)
		}
	}

	wantStatus(t, send(http.MethodPut, "/_sim/price", `{"id":"bitcoin","currency":"usd","price":"70000.123456789012345"}`), 200)
	wantStatus(t, send(http.MethodPut, "/_sim/price", `{"id":"pepe","currency":"usd","price":1.23456789012345678901e-9}`), 200)
	r = get(t, ts, "/api/v3/simple/price?ids=bitcoin,pepe&vs_currencies=usd")
	if string(r.body) != `{"bitcoin":{"usd":70000.123456789012345},"pepe":{"usd":1.23456789012345678901e-9}}` {
		t.Errorf("pinned body = %s", r.body)
	}
	for _, bad := range []string{`{"id":"bitcoin","currency":"usd","price":"abc"}`, `{"id":"","currency":"usd","price":"1"}`, `{"id":"bitcoin","currency":"usd"}`} {
		wantStatus(t, send(http.MethodPut, "/_sim/price", bad), 400)
	}

	wantStatus(t, send(http.MethodPost, "/_sim/coin", `{"id":"sim-coin","symbol":"sim","name":"Sim Coin"}`), 200)
	if r = get(t, ts, "/api/v3/coins/list"); !bytes.Contains(r.body, []byte(`"sim-coin"`)) {
		t.Error("coin added via control route not listed")
	}

	wantStatus(t, send(http.MethodPost, "/_sim/reset", ""), 200)
	r = send(http.MethodGet, "/_sim/calls", "")
	if string(r.body) != `{"calls":0,"log":[]}` {
		t.Errorf("after reset: %s", r.body)
	}

	wantStatus(t, send(http.MethodGet, "/_sim/reset", ""), 405)
	wantStatus(t, send(http.MethodGet, "/_sim/nope", ""), 404)
}

func TestFaultJSON(t *testing.T) {
	in := Fault{Kind: RateLimited, Code: 429, Style: CloudflareHTML, RetryAfter: 1500 * time.Millisecond, Delay: 2 * time.Second, Times: 3}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"rate_limited","code":429,"style":"cloudflare_html","retry_after_ms":1500,"delay_ms":2000,"times":3}`
	if string(b) != want {
		t.Errorf("marshal = %s", b)
	}
	var out Fault
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip = %+v, %v", out, err)
	}
	for name, kind := range map[string]FaultKind{"none": None, "status": Status, "rate_limited": RateLimited,
		"html": HTML, "malformed": Malformed, "empty": Empty, "hang": Hang, "slow": Slow} {
		var f Fault
		if err := json.Unmarshal([]byte(`{"kind":"`+name+`"}`), &f); err != nil || f.Kind != kind {
			t.Errorf("%s: %+v %v", name, f, err)
		}
	}
	if _, err := ParseRateLimitStyle("cloudflare"); err != nil {
		t.Error(err)
	}
}

func TestMethodNotAllowedOnAPI(t *testing.T) {
	sim, ts := start(t, Config{})
	r := do(t, ts.Client(), http.MethodPost, ts.URL+"/api/v3/simple/price?ids=bitcoin&vs_currencies=usd", "", nil)
	wantStatus(t, r, 405)
	if sim.Calls() != 1 {
		t.Errorf("calls = %d", sim.Calls())
	}
}

func TestConcurrentUse(t *testing.T) {
	sim, ts := start(t, Config{RateLimit: 1000})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for range 5 {
				do(t, ts.Client(), http.MethodGet, ts.URL+"/api/v3/simple/price?ids=bitcoin&vs_currencies=usd", "", nil)
			}
			if i%5 == 0 {
				sim.SetPrice("bitcoin", "usd", "1")
				sim.SetFault(Fault{Kind: Empty, Times: 1})
				_ = sim.CallLog()
			}
		})
	}
	wg.Wait()
	if sim.Calls() != 100 {
		t.Errorf("calls = %d", sim.Calls())
	}
}

func TestSleepHonoursContext(t *testing.T) {
	sim := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sim.sleep(ctx, time.Hour) {
		t.Error("sleep ignored a cancelled context")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context not cancelled")
	}
}
