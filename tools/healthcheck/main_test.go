package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			http.Error(w, `{"message":"Not ready: [redis] down"}`, http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	env := func(k string) string {
		if k == "PORT" {
			return u.Port()
		}
		return ""
	}
	var stderr strings.Builder
	ctx := context.Background()
	if code := run(ctx, nil, env, &stderr); code != 0 {
		t.Errorf("default URL (PORT): exit %d, %s", code, stderr.String())
	}
	if code := run(ctx, []string{srv.URL + "/ready"}, env, &stderr); code != 1 || !strings.Contains(stderr.String(), "redis") {
		t.Errorf("/ready down: exit %d, stderr %q", code, stderr.String())
	}
	if code := run(ctx, []string{"http://127.0.0.1:1/health"}, env, &stderr); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
	if code := run(ctx, []string{"a", "b"}, env, &stderr); code != 2 {
		t.Errorf("two arguments: exit %d", code)
	}
}
