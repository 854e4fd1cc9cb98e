package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/web"
	"cryptopulse/testkit"
)

// The fuzz targets of the gateway each start one real gateway (run() on a
// free port, real redis-server) for all their inputs and send every input
// over real HTTP. Run them longer with, for example,
//
//	go test -run='^$' -fuzz='^FuzzAuthorizationHeader$' -fuzztime=30s ./services/gateway
//	go test -run='^$' -fuzz='^FuzzHistoryQuery$' -fuzztime=30s ./services/gateway

// fzGateway is a running gateway and the Redis behind it.
type fzGateway struct {
	base  string
	redis *redis.Client
	http  *http.Client
}

// fzStart starts one gateway, with its own Redis, for a whole fuzz run.
func fzStart(tb testing.TB, databaseURL string, overrides map[string]string) fzGateway {
	tb.Helper()
	r := testkit.StartRedis(tb)
	base := startGateway(tb, r.URL(), databaseURL, overrides)
	return fzGateway{base: base, redis: r.Client(tb), http: &http.Client{Timeout: 10 * time.Second}}
}

// get sends GET base+path?rawQuery with the given headers; rawQuery goes on
// the request line exactly as given. Besides the status and body it returns
// how long the request's head (line and headers) was on the wire.
func (g fzGateway) get(t *testing.T, path, rawQuery string, header http.Header) (int, []byte, int) {
	t.Helper()
	u, err := url.Parse(g.base + path)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery = rawQuery
	req := &http.Request{Method: http.MethodGet, URL: u, Header: header, Host: u.Host}
	head, err := httputil.DumpRequestOut(req, false)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp, err := g.http.Do(req)
	if err != nil && len(head) > web.MaxRequestHead-headSlack && testkit.ConnectionReset(err) {
		// Over the limit, the gateway answers 431 and closes at once with
		// the rest of the head unread, so the kernel resets the connection
		// and the client may see the reset before the answer. (nginx in
		// front closes lingeringly: its clients get the 431, see
		// e2e/limits_test.go.) Status 0 tells headTooLarge.
		return 0, nil, len(head)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", u, err)
	}
	return resp.StatusCode, raw, len(head)
}

// headSlack is how far from web.MaxRequestHead a head may be answered either
// way: the Go client and fasthttp count the final CRLFs differently.
const headSlack = 64

// headTooLarge checks the server's limit on a request head: a head within
// web.MaxRequestHead is never a 431, a longer one always is, in the JSON
// shape of every other error (or a reset, see get); headSlack bytes either
// side of the limit may go either way. It reports whether the answer was
// the 431 (or the reset), which then is all there is to check about it.
func headTooLarge(t *testing.T, status int, raw []byte, headLen int) bool {
	t.Helper()
	switch {
	case status == 0:
		return true // reset for a head over the limit, see get
	case status != http.StatusRequestHeaderFieldsTooLarge && headLen > web.MaxRequestHead+headSlack:
		t.Fatalf("status %d for a %d-byte request head, over the %d-byte limit: %s", status, headLen, web.MaxRequestHead, raw)
	case status != http.StatusRequestHeaderFieldsTooLarge:
		return false
	case headLen < web.MaxRequestHead-headSlack:
		t.Fatalf("431 for a %d-byte request head, within the %d-byte limit: %s", headLen, web.MaxRequestHead, raw)
	}
	b := secNest(t, raw)
	if b.StatusCode != 431 || b.Message != "Request Header Fields Too Large" || b.Error != "Request Header Fields Too Large" {
		t.Fatalf("431 body %s", raw)
	}
	return true
}

// streamEmpty fails the test if anything was ever added to the request stream.
func (g fzGateway) streamEmpty(t testing.TB) {
	t.Helper()
	if n, err := g.redis.XLen(context.Background(), price.StreamKey).Result(); err != nil || n != 0 {
		t.Fatalf("XLEN %s = %d, %v; want 0", price.StreamKey, n, err)
	}
}

// fzToken is token for any testing.TB: a valid token for sub, for an hour.
func fzToken(tb testing.TB, sub string) string {
	tb.Helper()
	iss, err := jwtauth.NewIssuer(testSecret, "1h", time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := iss.Issue(sub, sub)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// validHeaderValue reports whether Go's HTTP client will send v as a header
// value (RFC 9110 field-value: no control characters but tab).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// hs256Verifies is an independent check that header carries a token whose
// header says HS256 and whose signature is the HMAC-SHA256 of its first two
// segments under the test secret.
func hs256Verifies(header string) bool {
	f := strings.Fields(header)
	if len(f) != 2 {
		return false
	}
	parts := strings.Split(f[1], ".")
	if len(parts) != 3 {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var hdr struct{ Alg string }
	if json.Unmarshal(h, &hdr) != nil || hdr.Alg != "HS256" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, mac.Sum(nil))
}

// FuzzAuthorizationHeader sends arbitrary Authorization headers to
// GET /v1/price/bitcoin?x=1 and checks that the answer is either a 401 with
// one of the documented messages (Nest body, WWW-Authenticate), or, for a
// header that really carries a valid token, the 400 that follows
// authentication (the unknown query parameter x), or a 431 exactly when the
// request head is over web.MaxRequestHead; never anything else, never a
// 5xx; and that nothing ever reaches the request stream. Seeds are in
// testdata/fuzz/FuzzAuthorizationHeader, plus a fresh valid token, so the
// fuzzer also mutates one that passes.
func FuzzAuthorizationHeader(f *testing.F) {
	g := fzStart(f, secNoDatabase, nil)
	f.Cleanup(func() { g.streamEmpty(f) })
	f.Add("Bearer " + fzToken(f, "admin"))

	messages := map[string]bool{
		"Missing Authorization header":               true,
		"Authorization header must use Bearer token": true,
		"Invalid Bearer token":                       true,
		"Invalid or expired token":                   true,
	}
	f.Fuzz(func(t *testing.T, header string) {
		if !validHeaderValue(header) {
			t.Skip("not a header value an HTTP client can send")
		}
		status, raw, headLen := g.get(t, "/v1/price/bitcoin", "x=1", http.Header{"Authorization": {header}})
		if headTooLarge(t, status, raw, headLen) {
			g.streamEmpty(t)
			return
		}
		b := secNest(t, raw)
		switch status {
		case http.StatusUnauthorized:
			msg, _ := b.Message.(string)
			if !messages[msg] || b.StatusCode != 401 || b.Error != "Unauthorized" {
				t.Fatalf("401 body %s", raw)
			}
		case http.StatusBadRequest:
			if !reflect.DeepEqual(b.Message, []any{"property x should not exist"}) {
				t.Fatalf("400 body %s", raw)
			}
			if !hs256Verifies(header) {
				t.Fatalf("header %q passed authentication without an HS256 token signed with the secret", header)
			}
		default:
			t.Fatalf("status %d for Authorization %q: %s", status, header, raw)
		}
		g.streamEmpty(t)
	})
}

// fzHistoryDB is a migrated database holding 30 bitcoin prices, one a day.
func fzHistoryDB(f *testing.F) string {
	pg := testkit.StartPostgres(f)
	dbURL := pg.NewDatabase(f)
	store, err := pricedb.Open(dbURL, pricedb.Options{PoolSize: 2, QueryTimeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pricedb.Migrate(ctx, dbURL); err != nil {
		f.Fatal(err)
	}
	recs := make([]pricedb.Record, 30)
	day0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i] = pricedb.Record{CoinID: "bitcoin", VsCurrency: "usd", Price: fmt.Sprintf("%d.5", 60000+i), FetchedAt: day0.AddDate(0, 0, i)}
	}
	if _, err := store.Insert(ctx, recs); err != nil {
		f.Fatal(err)
	}
	return dbURL
}

// escapeTarget makes raw fit on a request line: bytes that may not appear in
// a request-target (controls, space, '#', non-ASCII) are percent-encoded, the
// rest ('&', '=', '%', '+', ';' ...) are sent as they are, so the server's
// query parsing sees them.
func escapeTarget(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= 0x20 || c >= 0x7f || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// FuzzHistoryQuery sends arbitrary query strings to
// GET /v1/price/bitcoin/history with a valid token and checks that the answer
// is a 200 page whose numbers are consistent, a 400 in the Nest shape
// listing the problems, or a 431 exactly when the request head is over
// web.MaxRequestHead; never a 5xx, never anything else; and that the
// request stream stays empty (history never uses it). Seeds are in
// testdata/fuzz/FuzzHistoryQuery.
func FuzzHistoryQuery(f *testing.F) {
	// A huge budget in a short window: every input gets past the throttle.
	g := fzStart(f, fzHistoryDB(f), map[string]string{"THROTTLE_GLOBAL_LIMIT": "10000000", "THROTTLE_TTL_MS": "1000"})
	f.Cleanup(func() { g.streamEmpty(f) })
	auth := http.Header{"Authorization": {"Bearer " + fzToken(f, "fuzzer")}}

	f.Fuzz(func(t *testing.T, rawQuery string) {
		q := escapeTarget(rawQuery)
		status, raw, headLen := g.get(t, "/v1/price/bitcoin/history", q, auth)
		if headTooLarge(t, status, raw, headLen) {
			g.streamEmpty(t)
			return
		}
		switch status {
		case http.StatusOK:
			var p HistoryPage
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("200 body %s: %v", raw, err)
			}
			wantPages := (p.TotalItems + p.Limit - 1) / max(p.Limit, 1)
			switch {
			case p.CoinID != "bitcoin" || p.VsCurrency == "":
				t.Fatalf("page names %q/%q", p.CoinID, p.VsCurrency)
			case p.Limit < 1 || p.Limit > 100 || p.Page < 1:
				t.Fatalf("query %q: accepted limit %d, page %d", q, p.Limit, p.Page)
			case len(p.Items) > p.Limit || p.TotalItems < 0 || p.TotalItems > 30:
				t.Fatalf("query %q: %d items, limit %d, total %d", q, len(p.Items), p.Limit, p.TotalItems)
			case p.TotalPages != wantPages || p.HasNextPage != (p.Page < p.TotalPages):
				t.Fatalf("query %q: page %d of %d (next %v) for %d items by %d", q, p.Page, p.TotalPages, p.HasNextPage, p.TotalItems, p.Limit)
			}
			for i := 1; i < len(p.Items); i++ {
				if p.Items[i].FetchedAt > p.Items[i-1].FetchedAt {
					t.Fatalf("query %q: items not newest first: %v", q, p.Items)
				}
			}
		case http.StatusBadRequest:
			b := secNest(t, raw)
			list, ok := b.Message.([]any)
			if !ok || len(list) == 0 || b.StatusCode != 400 || b.Error != "Bad Request" {
				t.Fatalf("400 body %s", raw)
			}
			for _, m := range list {
				if s, ok := m.(string); !ok || s == "" {
					t.Fatalf("400 message %v", b.Message)
				}
			}
		default:
			t.Fatalf("status %d for query %q: %s", status, q, raw)
		}
		g.streamEmpty(t)
	})
}
