package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"cryptopulse/libs/jwtauth"
	"cryptopulse/tools/testkit"
)

// testSecret signs the tokens tests send.
const testSecret = "test-secret-that-is-at-least-32-chars!!"

// env builds a getenv for run from defaults plus overrides.
func env(overrides map[string]string) func(string) string {
	base := map[string]string{
		"HOST": "127.0.0.1", "PORT": "0", "JWT_SECRET": testSecret, "LOG_LEVEL": "error",
		"ENV_FILE": os.DevNull, "INSTANCE_ID": "gw-test",
	}
	for k, v := range overrides {
		base[k] = v
	}
	return func(k string) string { return base[k] }
}

// startGateway runs a gateway in-process (Mat Ryer's run pattern) against
// real Redis and Postgres and returns its base URL. It is stopped, and its
// exit awaited, when the test ends.
func startGateway(t *testing.T, redisURL, databaseURL string, overrides map[string]string) string {
	t.Helper()
	o := map[string]string{"REDIS_URL": redisURL, "DATABASE_URL": databaseURL}
	for k, v := range overrides {
		o[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	go func() { done <- run(ctx, env(o), out, ready) }()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("gateway did not stop within 20s")
			}
		})
		return "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("gateway did not start within 10s")
	}
	return ""
}

// token returns a valid Bearer token for sub.
func token(t *testing.T, sub string) string {
	t.Helper()
	iss, err := jwtauth.NewIssuer(testSecret, "1h", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(sub, sub)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get sends a GET with an optional Authorization header.
func get(t *testing.T, url, authorization string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

var _ = testkit.FreePort
