package main

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
	"cryptopulse/testkit"
)

// want429 checks a throttled answer: the Nest body of the original's
// ThrottlerGuard, when to retry, and the budget left.
func want429(t *testing.T, got response, limit int) {
	t.Helper()
	if got.status != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429: %s", got.status, got.raw)
	}
	b := got.errBody(t)
	want := httperr.Body{StatusCode: 429, Message: web.MsgTooManyRequests, Error: "Too Many Requests"}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("body = %+v, want %+v", b, want)
	}
	if ra, err := strconv.Atoi(got.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After = %q, want whole seconds in [1, 60]", got.header.Get("Retry-After"))
	}
	if l := got.header.Get("X-RateLimit-Limit"); l != strconv.Itoa(limit) {
		t.Errorf("X-RateLimit-Limit = %q, want %d", l, limit)
	}
	if r := got.header.Get("X-RateLimit-Remaining"); r != "0" {
		t.Errorf("X-RateLimit-Remaining = %q, want 0", r)
	}
	if rs, err := strconv.Atoi(got.header.Get("X-RateLimit-Reset")); err != nil || rs < 1 || rs > 60 {
		t.Errorf("X-RateLimit-Reset = %q, want whole seconds in [1, 60]", got.header.Get("X-RateLimit-Reset"))
	}
}

// wantAllowed checks an answer the throttle let through.
func wantAllowed(t *testing.T, got response, status, remaining int) {
	t.Helper()
	if got.status != status {
		t.Fatalf("status = %d, want %d: %s", got.status, status, got.raw)
	}
	if r := got.header.Get("X-RateLimit-Remaining"); r != strconv.Itoa(remaining) {
		t.Errorf("X-RateLimit-Remaining = %q, want %d", r, remaining)
	}
	if got.header.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q on an allowed answer", got.header.Get("Retry-After"))
	}
}

func throttleKeys(t *testing.T, r *testkit.Redis, pattern string) []string {
	t.Helper()
	keys, err := r.Client(t).Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// TestLoginThrottlePerAddress: six logins from one address inside the window,
// alternating between two auth instances on one Redis, each with another
// username so only the address limit can trigger: the sixth is 429, even with
// the right password; another address still gets in.
func TestLoginThrottlePerAddress(t *testing.T) {
	r := testkit.StartRedis(t)
	inst := []string{startAuth(t, r.URL(), nil), startAuth(t, r.URL(), nil)}

	got := login(t, inst[0], testUser, testPass, nil)
	wantAllowed(t, got, http.StatusOK, 4)
	for i := 1; i < 5; i++ {
		got := login(t, inst[i%2], fmt.Sprintf("user%d", i), "wrong", nil)
		wantAllowed(t, got, http.StatusUnauthorized, 4-i)
	}
	want429(t, login(t, inst[1], "user5", "wrong", nil), 5)
	want429(t, login(t, inst[0], testUser, testPass, nil), 5)

	// The peer is 127.0.0.1, a trusted proxy by default: the address it
	// forwards is another client with a budget of its own.
	other := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	// Remaining is the tighter rule's: the username's second accepted login.
	wantAllowed(t, login(t, inst[1], testUser, testPass, other), http.StatusOK, 3)

	if got := throttleKeys(t, r, throttle.KeyPrefix+"login-ip:*"); !reflect.DeepEqual(got, []string{
		"cp:throttle:login-ip:127.0.0.1", "cp:throttle:login-ip:203.0.113.9",
	}) {
		t.Errorf("login-ip keys = %v", got)
	}
	if n, err := r.Client(t).ZCard(context.Background(), "cp:throttle:login-ip:127.0.0.1").Result(); err != nil || n != 5 {
		t.Errorf("ZCARD login-ip:127.0.0.1 = %d, %v; want 5 (denied attempts are not counted)", n, err)
	}
}

// TestLoginThrottlePerUsername: six logins for one username from six
// addresses (forwarded by a trusted proxy): the sixth is 429, and stays so
// with the right password, while another username is not held back.
func TestLoginThrottlePerUsername(t *testing.T) {
	r := testkit.StartRedis(t)
	o := map[string]string{"TRUSTED_PROXIES": "127.0.0.1/32"}
	inst := []string{startAuth(t, r.URL(), o), startAuth(t, r.URL(), o)}
	from := func(i int) map[string]string {
		return map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i)}
	}

	for i := 1; i <= 5; i++ {
		got := login(t, inst[i%2], testUser, "guess"+strconv.Itoa(i), from(i))
		wantAllowed(t, got, http.StatusUnauthorized, 5-i)
	}
	want429(t, login(t, inst[0], testUser, "guess6", from(6)), 5)
	want429(t, login(t, inst[1], testUser, testPass, from(7)), 5)
	wantAllowed(t, login(t, inst[0], "someone-else", "x", from(8)), http.StatusUnauthorized, 4)

	// Each address was seen once; the forwarded ones were believed.
	if got := throttleKeys(t, r, throttle.KeyPrefix+"login-ip:*"); len(got) != 6 {
		t.Errorf("login-ip keys = %v, want one per address that got through", got)
	}
}

// TestLoginThrottleSpoofing: the peer (127.0.0.1) is outside TRUSTED_PROXIES,
// so whatever forwarding headers it sends, it is the client: rotating them on
// every request, with a new username each time, still hits 429 at the sixth.
func TestLoginThrottleSpoofing(t *testing.T) {
	r := testkit.StartRedis(t)
	o := map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8"}
	inst := []string{startAuth(t, r.URL(), o), startAuth(t, r.URL(), o)}

	spoof := []map[string]string{
		{"X-Forwarded-For": "203.0.113.1"},
		{"X-Real-IP": "203.0.113.2"},
		{"X-Forwarded-For": "203.0.113.3, 10.0.0.1", "X-Real-IP": "203.0.113.4"},
		{"X-Forwarded-For": "10.1.2.3"},
		{"Forwarded": "for=203.0.113.5", "X-Forwarded-For": "::ffff:203.0.113.5", "X-Real-IP": "203.0.113.6"},
		{"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8", "True-Client-IP": "203.0.113.9", "CF-Connecting-IP": "203.0.113.10"},
	}
	for i, h := range spoof[:5] {
		got := login(t, inst[i%2], fmt.Sprintf("spoofer%d", i), "x", h)
		wantAllowed(t, got, http.StatusUnauthorized, 4-i)
	}
	want429(t, login(t, inst[1], "spoofer5", "x", spoof[5]), 5)
	want429(t, login(t, inst[0], testUser, testPass, spoof[0]), 5)

	if got := throttleKeys(t, r, throttle.KeyPrefix+"login-ip:*"); !reflect.DeepEqual(got, []string{"cp:throttle:login-ip:127.0.0.1"}) {
		t.Errorf("login-ip keys = %v, want only the real peer's", got)
	}
}

// TestLoginRedisDown: with Redis gone, a login answers 503 in the Nest shape
// within a second (bad bodies still 400, probes still answer), and when Redis
// is back the service logs in again without a restart.
func TestLoginRedisDown(t *testing.T) {
	r := testkit.StartRedis(t)
	base := startAuth(t, r.URL(), nil)
	wantAllowed(t, login(t, base, testUser, testPass, nil), http.StatusOK, 4)

	r.Stop(t)
	for i := range 3 {
		got := login(t, base, testUser, testPass, nil)
		if got.status != http.StatusServiceUnavailable {
			t.Fatalf("attempt %d: status = %d, want 503: %s", i, got.status, got.raw)
		}
		if got.took >= time.Second {
			t.Errorf("attempt %d: 503 took %v, want < 1s", i, got.took)
		}
		want := httperr.Body{StatusCode: 503, Message: web.MsgUnavailable, Error: "Service Unavailable"}
		if b := got.errBody(t); !reflect.DeepEqual(b, want) {
			t.Errorf("body = %+v, want %+v", b, want)
		}
	}
	if got := do(t, base, request{path: "/auth/login", body: `{"username":1}`}); got.status != http.StatusBadRequest {
		t.Errorf("bad body while Redis is down: %d, want 400", got.status)
	}
	if got := do(t, base, request{method: http.MethodGet, path: "/health"}); got.status != http.StatusOK {
		t.Errorf("/health while Redis is down: %d, want 200", got.status)
	}
	got := do(t, base, request{method: http.MethodGet, path: "/ready"})
	if b := got.errBody(t); got.status != http.StatusServiceUnavailable || b.StatusCode != 503 {
		t.Errorf("/ready while Redis is down: %d %s, want 503", got.status, got.raw)
	}
	if !strings.Contains(string(got.raw), `"redis":"down"`) {
		t.Errorf("/ready does not name redis as down: %s", got.raw)
	}

	r.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := login(t, base, testUser, testPass, nil)
		if got.status == http.StatusOK {
			break
		}
		if got.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: status %d: %s", got.status, got.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := do(t, base, request{method: http.MethodGet, path: "/ready"}); got.status != http.StatusOK {
		t.Errorf("/ready after Redis came back: %d %s", got.status, got.raw)
	}
}

// TestProbesNotThrottled: /health, /ready and /metrics answer 50 times in a
// row with a login limit of 1, and carry no rate-limit headers.
func TestProbesNotThrottled(t *testing.T) {
	r := testkit.StartRedis(t)
	base := startAuth(t, r.URL(), map[string]string{"THROTTLE_LOGIN_LIMIT": "1"})
	wantAllowed(t, login(t, base, testUser, testPass, nil), http.StatusOK, 0)
	want429(t, login(t, base, testUser, testPass, nil), 1)
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		for i := range 50 {
			got := do(t, base, request{method: http.MethodGet, path: path})
			if got.status != http.StatusOK {
				t.Fatalf("%s #%d: status %d: %s", path, i+1, got.status, got.raw)
			}
			if v := got.header.Get("X-RateLimit-Limit"); v != "" {
				t.Fatalf("%s #%d: X-RateLimit-Limit %q on an unthrottled route", path, i+1, v)
			}
		}
	}
}
