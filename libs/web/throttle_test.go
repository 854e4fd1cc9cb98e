package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
	"cryptopulse/testkit"
)

// newThrottledApp serves GET /price behind Throttle, with the error handler every
// service installs, so the test sees exactly what a client would.
func newThrottledApp(l *throttle.Limiter, rules ...throttle.Rule) *fiber.App {
	app := fiber.New(fiber.Config{ErrorHandler: httperr.Handler(zap.NewNop(), nil)})
	app.Get("/price", func(c *fiber.Ctx) error {
		if err := web.Throttle(c, l, rules...); err != nil {
			return err
		}
		return c.SendString("ok")
	})
	return app
}

type answer struct {
	status int
	header http.Header
	body   httperr.Body
}

func get(t *testing.T, app *fiber.App) answer {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, "/price", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("error body %q: %v", raw, err)
		}
	}
	return a
}

func TestThrottle(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	rule := throttle.Rule{Policy: "price", Subject: "user:alice", Limit: 2, Window: time.Minute}
	app := newThrottledApp(l, rule)

	tests := []struct {
		name       string
		wantStatus int
		wantHeader map[string]string
		wantBody   httperr.Body
	}{
		{
			name:       "first request",
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{
				"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "60",
				"RateLimit-Policy": `"price";q=2;w=60`, "RateLimit": `"price";r=1;t=60`,
				"Retry-After": "",
			},
		},
		{
			name:       "last allowed",
			wantStatus: http.StatusOK,
			wantHeader: map[string]string{
				"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60",
				"RateLimit": `"price";r=0;t=60`,
			},
		},
		{
			name:       "over the limit",
			wantStatus: http.StatusTooManyRequests,
			wantHeader: map[string]string{
				"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60",
				"Retry-After": "60",
			},
			wantBody: httperr.Body{StatusCode: 429, Message: web.MsgTooManyRequests, Error: "Too Many Requests"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := get(t, app)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %+v)", a.status, tt.wantStatus, a.body)
			}
			for k, want := range tt.wantHeader {
				if got := a.header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if tt.wantStatus != http.StatusOK && a.body != tt.wantBody {
				t.Errorf("body %+v, want %+v", a.body, tt.wantBody)
			}
		})
	}
}

// Retry-After is whole seconds, rounded up, never 0: a client that waits
// exactly that long must find a free slot.
func TestThrottleRetryAfterRoundsUp(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	rule := throttle.Rule{Policy: "login-ip", Subject: "203.0.113.7", Limit: 1, Window: 1500 * time.Millisecond}
	app := newThrottledApp(l, rule)

	if a := get(t, app); a.status != http.StatusOK {
		t.Fatalf("first: status %d", a.status)
	}
	time.Sleep(700 * time.Millisecond) // ~800ms left: must say 1, not 0
	a := get(t, app)
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("second: status %d, want 429", a.status)
	}
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Fatalf("Retry-After %q, want \"1\"", got)
	}
	secs, _ := strconv.Atoi(a.header.Get("Retry-After"))
	time.Sleep(time.Duration(secs) * time.Second)
	if a := get(t, app); a.status != http.StatusOK {
		t.Fatalf("after waiting Retry-After: status %d, want 200", a.status)
	}
}

func TestThrottleWithRedisDown(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	app := newThrottledApp(l, throttle.Rule{Policy: "price", Subject: "user:alice", Limit: 5, Window: time.Minute})

	if a := get(t, app); a.status != http.StatusOK {
		t.Fatalf("before the outage: status %d", a.status)
	}
	r.Stop(t)
	start := time.Now()
	a := get(t, app)
	if took := time.Since(start); took > time.Second {
		t.Errorf("503 took %v, want < 1s", took)
	}
	want := httperr.Body{StatusCode: 503, Message: web.MsgUnavailable, Error: "Service Unavailable"}
	if a.status != http.StatusServiceUnavailable || a.body != want {
		t.Fatalf("with Redis down: %d %+v, want 503 %+v", a.status, a.body, want)
	}
	r.Start(t)
	if a := get(t, app); a.status != http.StatusOK || a.header.Get("X-RateLimit-Remaining") != "4" {
		t.Fatalf("after Redis came back: status %d, remaining %q; want 200, 4", a.status, a.header.Get("X-RateLimit-Remaining"))
	}
}

// A bad rule is the service's bug: a 500, not a 503 that would blame Redis.
func TestThrottleInvalidRule(t *testing.T) {
	r := testkit.StartRedis(t)
	app := newThrottledApp(throttle.New(r.FastClient(t)), throttle.Rule{Policy: "price", Subject: "x"})
	if a := get(t, app); a.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", a.status)
	}
}
