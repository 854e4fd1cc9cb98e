package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/web"
	"cryptopulse/testkit"
)

// The tests in this file drive a real gateway (run() on a free port) over
// real HTTP against a real redis-server. None of them needs a fetcher or
// Postgres: every request here is refused before either would be used, or is
// about the Redis path only. secNoDatabase is a URL nothing listens on; the
// gateway does not dial it at start.
const secNoDatabase = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"

// secStart starts a redis-server and a gateway on it.
func secStart(t *testing.T, overrides map[string]string) (string, *testkit.Redis) {
	t.Helper()
	r := testkit.StartRedis(t)
	return startGateway(t, r.URL(), secNoDatabase, overrides), r
}

// secRow is one request and the answer it must get, in the style of
// ardanlabs/service's apitest tables.
type secRow struct {
	name   string
	path   string
	header map[string]string
	// statusCode and expResp are the expected status and Nest body.
	statusCode int
	expResp    httperr.Body
	// cmp, when set, replaces the exact comparison of the body.
	cmp func(t *testing.T, got httperr.Body)
}

type secResponse struct {
	status int
	header http.Header
	raw    []byte
	took   time.Duration
}

var secClient = &http.Client{Timeout: 15 * time.Second}

// secGet sends a GET with the given headers and reads the whole answer.
func secGet(t *testing.T, rawURL string, header map[string]string) secResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := secClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", rawURL, err)
	}
	return secResponse{status: resp.StatusCode, header: resp.Header, raw: raw, took: time.Since(start)}
}

// secNest decodes a Nest-shaped error body strictly.
func secNest(tb testing.TB, raw []byte) httperr.Body {
	tb.Helper()
	b, err := httperr.DecodeBody(raw)
	if err != nil {
		tb.Fatalf("%v: %s", err, raw)
	}
	return b
}

// secRun sends every row and checks its answer.
func secRun(t *testing.T, base string, rows []secRow) {
	t.Helper()
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			got := secGet(t, base+tt.path, tt.header)
			if got.status != tt.statusCode {
				t.Fatalf("status = %d, want %d: %s", got.status, tt.statusCode, got.raw)
			}
			b := secNest(t, got.raw)
			if tt.cmp != nil {
				tt.cmp(t, b)
				return
			}
			if !reflect.DeepEqual(b, tt.expResp) {
				t.Errorf("body\n got %+v\nwant %+v", b, tt.expResp)
			}
		})
	}
}

// secNothingInRedis asserts that no request of the test reached Redis: the
// stream is absent (XLEN 0) and no key was written at all, throttle logs
// included.
func secNothingInRedis(t *testing.T, r *testkit.Redis) {
	t.Helper()
	ctx := context.Background()
	c := r.Client(t)
	if n, err := c.XLen(ctx, price.StreamKey).Result(); err != nil || n != 0 {
		t.Errorf("XLEN %s = %d, %v; want 0", price.StreamKey, n, err)
	}
	if keys, err := c.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys in Redis = %v, %v; want none", keys, err)
	}
}

// secSign builds a token by hand with any header and claims, signed with
// HMAC-SHA256 under key (or with the given signature bytes).
func secSign(t *testing.T, header, claims map[string]any, key string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	if key == "" {
		return signing + "."
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func secClaims(change func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"sub": "admin", "username": "admin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if change != nil {
		change(c)
	}
	return c
}

func unauthorized(msg string) httperr.Body {
	return httperr.Body{StatusCode: 401, Message: msg, Error: "Unauthorized"}
}

// TestJWTHardening: every malformed, forged, expired or oversized credential
// is a 401 with the original's message, never a 5xx, and reaches nothing in
// Redis (not even the throttle, which runs after authentication).
func TestJWTHardening(t *testing.T) {
	base, r := secStart(t, nil)
	hs256 := map[string]any{"alg": "HS256", "typ": "JWT"}
	valid := secSign(t, hs256, secClaims(nil), testSecret)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims(secClaims(nil))).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	sig := strings.LastIndexByte(valid, '.') + 10
	flip := byte('A')
	if valid[sig] == 'A' {
		flip = 'B'
	}
	badSig := valid[:sig] + string(flip) + valid[sig+1:]
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	const path = "/v1/price/bitcoin"
	rows := []secRow{
		{name: "no header", path: path, statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "empty header", path: path, header: map[string]string{"Authorization": ""}, statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "Basic", path: path, header: map[string]string{"Authorization": "Basic xxx"}, statusCode: 401, expResp: unauthorized("Authorization header must use Bearer token")},
		{name: "token without scheme", path: path, header: map[string]string{"Authorization": valid}, statusCode: 401, expResp: unauthorized("Authorization header must use Bearer token")},
		{name: "Bearer alone", path: path, header: map[string]string{"Authorization": "Bearer"}, statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "Bearer and a space", path: path, header: map[string]string{"Authorization": "Bearer "}, statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "two segments", path: path, header: bearer("a.b"), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "junk characters", path: path, header: bearer("<x>.{y}.$z"), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "non-ASCII", path: path, header: bearer("\xc3\xa9.\xc3\xa9.\xc3\xa9"), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "two tokens", path: path, header: bearer(valid + " " + valid), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		// Headers up to the 8 KiB read buffer (nginx's own header line limit) get the proper 401.
		{name: "6 KB junk", path: path, header: bearer(strings.Repeat("a", 3<<10) + "." + strings.Repeat("b", 3<<10) + ".c"), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "5 KB validly signed", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 4<<10) }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "alg none", path: path, header: bearer(secSign(t, map[string]any{"alg": "none", "typ": "JWT"}, secClaims(nil), "")), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "HS512", path: path, header: bearer(hs512), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "RS256 header", path: path, header: bearer(secSign(t, map[string]any{"alg": "RS256", "typ": "JWT"}, secClaims(nil), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "bad signature", path: path, header: bearer(badSig), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "other secret", path: path, header: bearer(secSign(t, hs256, secClaims(nil), testSecret+"-but-another-one")), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "expired", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { c["exp"] = past }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "nbf in the future", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { c["nbf"] = future }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "iat in the future", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { c["iat"] = future }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "no exp", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { delete(c, "exp") }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "no sub", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { delete(c, "sub") }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "numeric sub", path: path, header: bearer(secSign(t, hs256, secClaims(func(c map[string]any) { c["sub"] = 7 }), testSecret)), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "segments not base64", path: path, header: bearer("a.b.c"), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "on history too", path: path + "/history", header: bearer(hs512), statusCode: 401, expResp: unauthorized("Invalid or expired token")},
		{name: "before validating coinId", path: "/v1/price/NOT_A_COIN", statusCode: 401, expResp: unauthorized("Missing Authorization header")},
	}
	secRun(t, base, rows)

	// A 401 says how to authenticate.
	if resp, _ := get(t, base+path, ""); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%d without WWW-Authenticate, want a 401 with it", resp.StatusCode)
	}
	// The control: a valid token gets past authentication, to a validation
	// 400 that does not touch Redis either.
	got := secGet(t, base+path+"?limit=1", bearer(valid))
	if b := secNest(t, got.raw); got.status != 400 || !reflect.DeepEqual(b.Message, []any{"property limit should not exist"}) {
		t.Errorf("valid token: %d %s, want 400 naming limit", got.status, got.raw)
	}
	secNothingInRedis(t, r)

	// A header past the server's read buffer is refused by the HTTP layer,
	// still in the Nest shape and still a 4xx.
	got = secGet(t, base+path, bearer(strings.Repeat("a", 20<<10)))
	if got.status < 400 || got.status >= 500 {
		t.Errorf("20 KB header: status %d, want 4xx: %s", got.status, got.raw)
	} else if b := secNest(t, got.raw); b.StatusCode != got.status {
		t.Errorf("20 KB header: body %s", got.raw)
	}
	secNothingInRedis(t, r)
}

// TestBadInputNeverReachesRedis: invalid coin ids and history queries are
// 400s naming the problem, with a valid token, and add nothing to Redis (no
// stream entry, no throttle hit).
func TestBadInputNeverReachesRedis(t *testing.T) {
	base, r := secStart(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	names := func(want ...string) func(t *testing.T, got httperr.Body) {
		return func(t *testing.T, got httperr.Body) {
			t.Helper()
			if got.StatusCode != 400 || got.Error != "Bad Request" {
				t.Errorf("body %+v, want a 400", got)
			}
			list, ok := got.Message.([]any)
			if !ok || len(list) == 0 {
				t.Fatalf("message %v, want a list", got.Message)
			}
			all := ""
			for _, m := range list {
				s, _ := m.(string)
				all += s + "\n"
			}
			for _, w := range want {
				if !strings.Contains(all, w) {
					t.Errorf("message %q does not say %q", list, w)
				}
			}
		}
	}
	coin := func(name, id string) secRow {
		return secRow{name: "coinId " + name, path: "/v1/price/" + id, header: auth, statusCode: 400, cmp: names("coinId")}
	}
	hist := "/v1/price/bitcoin/history?"
	rows := []secRow{
		coin("uppercase", "Bitcoin"),
		coin("encoded space", "bit%20coin"),
		coin("underscore", "bit_coin"),
		coin("dot dot", ".."),
		coin("dots inside", "bit..coin"),
		coin("encoded dots", "%2E%2E"),
		coin("dot", "bitcoin.eth"),
		coin("trailing hyphen", "bitcoin-"),
		coin("leading hyphen", "-bitcoin"),
		coin("double hyphen", "bit--coin"),
		coin("101 chars", strings.Repeat("a", 101)),
		coin("unicode", url.PathEscape("bitcoín")),
		coin("encoded slash", "bit%2Fcoin"),
		coin("encoded NUL", "bitcoin%00"),
		coin("redis glob", "bit%2A"),
		coin("on history", "BTC/history"),
		{name: "price with unknown query", path: "/v1/price/bitcoin?limit=5", header: auth, statusCode: 400, cmp: names("property limit should not exist")},
		{name: "bad vsCurrency", path: "/v1/price/bitcoin?vsCurrency=US%20D", header: auth, statusCode: 400, cmp: names("vsCurrency")},
		{name: "history limit 0", path: hist + "limit=0", header: auth, statusCode: 400, cmp: names("limit must not be less than 1")},
		{name: "history limit 101", path: hist + "limit=101", header: auth, statusCode: 400, cmp: names("limit must not be greater than 100")},
		{name: "history limit abc", path: hist + "limit=abc", header: auth, statusCode: 400, cmp: names("limit must be an integer number")},
		{name: "history limit with space", path: hist + "limit=%2010", header: auth, statusCode: 400, cmp: names("limit must be an integer number")},
		{name: "history limit huge", path: hist + "limit=99999999999999999999999", header: auth, statusCode: 400, cmp: names("limit")},
		{name: "history page 0", path: hist + "page=0", header: auth, statusCode: 400, cmp: names("page must not be less than 1")},
		{name: "history page negative", path: hist + "page=-1", header: auth, statusCode: 400, cmp: names("page must not be less than 1")},
		{name: "history bad date", path: hist + "from=yesterday", header: auth, statusCode: 400, cmp: names("from must be a valid ISO 8601 date string")},
		{name: "history bad to", path: hist + "to=2026-13-01", header: auth, statusCode: 400, cmp: names("to must be a valid ISO 8601 date string")},
		{name: "history from after to", path: hist + "from=2026-02-02&to=2026-02-01", header: auth, statusCode: 400, cmp: names("from must not be after to")},
		{name: "history unknown param", path: hist + "sort=asc", header: auth, statusCode: 400, cmp: names("property sort should not exist")},
		{name: "history every problem at once", path: "/v1/price/BTC/history?limit=0&page=x&from=no&x=1", header: auth, statusCode: 400,
			cmp: names("coinId", "limit", "page", "from", "property x should not exist")},
	}
	secRun(t, base, rows)
	secNothingInRedis(t, r)
}

// TestRedisDownPricePath: with Redis gone a price request answers 503 in the
// Nest shape within a second; when Redis is back (restarted empty) the same
// request gets past the throttle onto the stream by itself, and, with no
// fetcher running, ends in the 504 of BATCH_RESULT_TIMEOUT_MS.
func TestRedisDownPricePath(t *testing.T) {
	base, r := secStart(t, map[string]string{"BATCH_RESULT_TIMEOUT_MS": "300"})
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	url := base + "/v1/price/bitcoin"

	got := secGet(t, url, auth)
	if got.status != http.StatusGatewayTimeout {
		t.Fatalf("before the outage: %d %s, want 504 (no fetcher)", got.status, got.raw)
	}

	r.Stop(t)
	for i := range 3 {
		got := secGet(t, url, auth)
		if got.status != http.StatusServiceUnavailable {
			t.Fatalf("attempt %d: status %d, want 503: %s", i, got.status, got.raw)
		}
		if got.took >= time.Second {
			t.Errorf("attempt %d: 503 took %v, want < 1s", i, got.took)
		}
		want := httperr.Body{StatusCode: 503, Message: web.MsgUnavailable, Error: "Service Unavailable"}
		if b := secNest(t, got.raw); !reflect.DeepEqual(b, want) {
			t.Errorf("attempt %d: body %+v, want %+v", i, b, want)
		}
	}
	if got := secGet(t, base+"/health", nil); got.status != http.StatusOK {
		t.Errorf("/health during the outage: %d", got.status)
	}
	if got := secGet(t, base+"/ready", nil); got.status != http.StatusServiceUnavailable || !strings.Contains(string(got.raw), `"redis":"down"`) {
		t.Errorf("/ready during the outage: %d %s, want 503 naming redis", got.status, got.raw)
	}

	r.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := secGet(t, url, auth)
		if got.status == http.StatusGatewayTimeout {
			if b := secNest(t, got.raw); b.Message != "No batch result within 300 ms" {
				t.Errorf("504 body %s", got.raw)
			}
			break
		}
		if got.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d %s, want 504", got.status, got.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := r.Client(t).XLen(context.Background(), price.StreamKey).Result(); err != nil || n < 1 {
		t.Errorf("XLEN after recovery = %d, %v; want the request on the stream", n, err)
	}
}

// TestResponseHeaders: every answer names the instance, carries the caller's
// request id (or a new one), says nosniff, and has no framework banner; an
// unknown route is the Nest 404.
func TestResponseHeaders(t *testing.T) {
	base, _ := secStart(t, nil)
	rows := []struct {
		name, path string
		status     int
	}{
		{"health", "/health", 200},
		{"docs-json", "/docs-json", 200},
		{"live page", "/live", 200},
		{"metrics", "/metrics", 200},
		{"401", "/v1/price/bitcoin", 401},
		{"unknown route", "/x", 404},
		{"unknown nested route", "/v1/nope", 404},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			id := "test-" + strings.ReplaceAll(tt.name, " ", "-")
			got := secGet(t, base+tt.path, map[string]string{"X-Request-Id": id})
			if got.status != tt.status {
				t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.raw)
			}
			h := got.header
			if v := h.Get("X-Content-Type-Options"); v != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", v)
			}
			if v := h.Get("X-Instance-Id"); v != "gw-test" {
				t.Errorf("X-Instance-Id = %q, want gw-test", v)
			}
			if v := h.Get("X-Request-Id"); v != id {
				t.Errorf("X-Request-Id = %q, want %q", v, id)
			}
			if s := strings.ToLower(h.Get("Server") + h.Get("X-Powered-By")); strings.Contains(s, "fiber") || strings.Contains(s, "fasthttp") {
				t.Errorf("framework banner: Server %q, X-Powered-By %q", h.Get("Server"), h.Get("X-Powered-By"))
			}
			if tt.status == 404 {
				want := httperr.Body{StatusCode: 404, Message: "Cannot GET " + tt.path, Error: "Not Found"}
				if b := secNest(t, got.raw); !reflect.DeepEqual(b, want) {
					t.Errorf("404 body %+v, want %+v", b, want)
				}
			}
		})
	}
	got := secGet(t, base+"/health", nil)
	if id := got.header.Get("X-Request-Id"); len(id) < 16 {
		t.Errorf("X-Request-Id = %q, want a generated id", id)
	}
	// An absurd request id is replaced, not echoed.
	got = secGet(t, base+"/health", map[string]string{"X-Request-Id": strings.Repeat("x", 500)})
	if id := got.header.Get("X-Request-Id"); len(id) > 128 {
		t.Errorf("X-Request-Id of %d bytes echoed", len(id))
	}
}
