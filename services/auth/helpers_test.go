package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/httperr"
	"cryptopulse/testkit"
)

// Test credentials and secret; the secret is at least 32 characters.
const (
	testUser   = "admin"
	testPass   = "correct horse battery staple"
	testSecret = "auth-test-secret-that-is-at-least-32-chars"
)

// env is the service's environment: defaults plus overrides. An override
// of "" unsets the variable.
func env(overrides map[string]string) map[string]string {
	base := map[string]string{
		"HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "error", "ENV_FILE": os.DevNull,
		"INSTANCE_ID": "auth-test", "ADMIN_USER": testUser, "ADMIN_PASS": testPass,
		"JWT_SECRET": testSecret, "JWT_EXPIRES_IN": "1h",
	}
	for k, v := range overrides {
		base[k] = v
	}
	return base
}

// getenv looks variables up in an environment built by env.
func getenv(e map[string]string) func(string) string { return func(k string) string { return e[k] } }

// startAuth runs an auth service in-process against redisURL and returns its
// base URL. tb may be a *testing.F, so a fuzz target can start one service
// for all its inputs.
func startAuth(tb testing.TB, redisURL string, overrides map[string]string) string {
	tb.Helper()
	o := map[string]string{"REDIS_URL": redisURL}
	for k, v := range overrides {
		o[k] = v
	}
	return testkit.StartService(tb, "auth", func(ctx context.Context, g func(string) string, w io.Writer, ready chan<- string) error {
		return run(ctx, g, w, ready)
	}, env(o))
}

// runErr runs the service with the given environment and returns the error
// it refused to start with, failing the test if it started.
func runErr(t *testing.T, overrides map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, getenv(env(overrides)), io.Discard, ready) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("run returned nil without being stopped")
		}
		return err
	case addr := <-ready:
		cancel()
		<-done
		t.Fatalf("service started on %s; want a refusal", addr)
	case <-time.After(10 * time.Second):
		t.Fatal("run neither started nor failed within 10s")
	}
	return nil
}

// client is the HTTP client of the tests: a bounded wait, so a hung service
// fails a test instead of stalling it.
var client = &http.Client{Timeout: 10 * time.Second}

// response is what a test looks at in an answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	took   time.Duration
}

// errBody decodes an error answer in the Nest shape, failing the test if it
// is not exactly that.
func (r response) errBody(tb testing.TB) httperr.Body {
	tb.Helper()
	return decodeNest(tb, r.raw)
}

// decodeNest decodes a Nest-shaped error body strictly: statusCode, message
// and error, nothing else missing.
func decodeNest(tb testing.TB, raw []byte) httperr.Body {
	tb.Helper()
	b, err := httperr.DecodeBody(raw)
	if err != nil {
		tb.Fatalf("%v: %s", err, raw)
	}
	return b
}

// request is one HTTP call a test makes.
type request struct {
	method string
	path   string
	body   string
	header map[string]string
}

// do sends req to base and reads the whole answer.
func do(tb testing.TB, base string, req request) response {
	tb.Helper()
	if req.method == "" {
		req.method = http.MethodPost
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	hr, err := http.NewRequest(req.method, base+req.path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if req.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := client.Do(hr)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", req.method, req.path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw, took: time.Since(start)}
}

// login posts a username and password as JSON.
func login(tb testing.TB, base, username, password string, header map[string]string) response {
	tb.Helper()
	b, err := json.Marshal(map[string]string{"username": username, "password": password})
	if err != nil {
		tb.Fatal(err)
	}
	return do(tb, base, request{path: "/auth/login", body: string(b), header: header})
}

// compact re-encodes JSON without spaces, for readable failure messages.
func compact(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
