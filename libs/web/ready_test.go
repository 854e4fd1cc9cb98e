package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
)

// hung stands for a client that ignores its context (lib/pq reading a
// stopped server): it returns only when the test ends.
func hung(release <-chan struct{}) func(context.Context) error {
	return func(context.Context) error { <-release; return errors.New("released") }
}

func up(context.Context) error { return nil }

func ready(t *testing.T, checks ...Check) (status int, body map[string]any, took time.Duration) {
	t.Helper()
	app := New(Options{Service: "test", Instance: "test-1", Log: zap.NewNop()})
	Probes(app, "test", "test-1", checks...)
	start := time.Now()
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, "/ready", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("/ready is not JSON: %q", raw)
	}
	return resp.StatusCode, body, took
}

// Two dependencies that hang cost /ready one check timeout, not two, and
// not forever: it answers within the probes' 2 s naming both, and the one
// that answers is up.
func TestReadyAnswersWithinItsTimeoutNamingWhatHangs(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	status, body, took := ready(t,
		Check{Name: "redis", Check: up},
		Check{Name: "postgres", Check: hung(release)},
		Check{Name: "upstream", Check: hung(release)},
	)
	if status != http.StatusServiceUnavailable || body["statusCode"] != float64(503) || body["error"] != "Service Unavailable" {
		t.Errorf("/ready: %d %v, want 503 in the error shape", status, body)
	}
	if body["message"] != "Not ready: [postgres upstream] down" {
		t.Errorf("message %q, want both hung dependencies named", body["message"])
	}
	checks, _ := body["checks"].(map[string]any)
	if checks["redis"] != "up" || checks["postgres"] != "down" || checks["upstream"] != "down" {
		t.Errorf("checks %v", checks)
	}
	if took < readyTimeout || took >= 2*time.Second {
		t.Errorf("/ready took %s, want one check timeout (%s), under the probes' 2 s", took, readyTimeout)
	}
}

func TestReadyIsUpWhenEveryCheckAnswers(t *testing.T) {
	failed := func(context.Context) error { return errors.New("connection refused") }
	if status, body, took := ready(t, Check{Name: "redis", Check: up}, Check{Name: "postgres", Check: failed}); status != http.StatusServiceUnavailable ||
		body["message"] != "Not ready: [postgres] down" || took >= readyTimeout {
		t.Errorf("a refused dependency: %d %v after %s, want 503 at once", status, body, took)
	}
	status, body, _ := ready(t, Check{Name: "redis", Check: up}, Check{Name: "postgres", Check: up})
	checks, _ := body["checks"].(map[string]any)
	if status != http.StatusOK || body["status"] != "ready" || checks["redis"] != "up" || checks["postgres"] != "up" {
		t.Errorf("all up: %d %v", status, body)
	}
}
