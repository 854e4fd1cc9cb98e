package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"cryptopulse/libs/jwtauth"
	"cryptopulse/testkit"
)

// testSecret signs the tokens tests send.
const testSecret = "test-secret-that-is-at-least-32-chars!!"

// env is the gateway's environment: defaults plus overrides.
func env(overrides map[string]string) map[string]string {
	base := map[string]string{
		"HOST": "127.0.0.1", "PORT": "0", "JWT_SECRET": testSecret, "LOG_LEVEL": "error",
		"ENV_FILE": os.DevNull, "INSTANCE_ID": "gw-test",
	}
	for k, v := range overrides {
		base[k] = v
	}
	return base
}

// startGateway runs a gateway in-process (Mat Ryer's run pattern) against
// real Redis and Postgres and returns its base URL. tb may be a *testing.F.
func startGateway(tb testing.TB, redisURL, databaseURL string, overrides map[string]string) string {
	tb.Helper()
	o := map[string]string{"REDIS_URL": redisURL, "DATABASE_URL": databaseURL}
	for k, v := range overrides {
		o[k] = v
	}
	return testkit.StartService(tb, "gateway", func(ctx context.Context, g func(string) string, w io.Writer, ready chan<- string) error {
		return run(ctx, g, w, ready)
	}, env(o))
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
