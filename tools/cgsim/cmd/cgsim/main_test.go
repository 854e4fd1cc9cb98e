package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cryptopulse/tools/cgsim"
)

func TestRunServesAndShutsDownWithHungCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-plan", "pro", "-key", "k"}, func(string) string { return "" },
			io.Discard, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	base := "http://" + addr

	req, _ := http.NewRequest(http.MethodGet, base+"/api/v3/ping", nil)
	req.Header.Set("x-cg-pro-api-key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ping = %d", resp.StatusCode)
	}

	resp, err = http.Post(base+"/_sim/fault", "application/json", strings.NewReader(`{"kind":"hang"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hung := make(chan struct{})
	go func() {
		defer close(hung)
		if resp, err := http.Get(base + "/api/v3/ping"); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("run did not shut down with a hung call in flight")
	}
	<-hung
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{"CGSIM_RATE_LIMIT": "30", "CGSIM_LATENCY": "250ms", "CGSIM_PLAN": "pro", "CGSIM_RATE_LIMIT_STYLE": "cloudflare"}
	cfg, addr, err := parseConfig([]string{"-rate-limit", "45"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := cgsim.Config{Plan: "pro", RateLimit: 45, RateLimitStyle: cgsim.CloudflareHTML, Latency: 250 * time.Millisecond, CacheWindow: time.Minute}
	if addr != "127.0.0.1:8090" || cfg.Plan != want.Plan || cfg.RateLimit != want.RateLimit ||
		cfg.RateLimitStyle != want.RateLimitStyle || cfg.Latency != want.Latency || cfg.CacheWindow != want.CacheWindow {
		t.Errorf("cfg = %+v addr %s", cfg, addr)
	}

	for _, bad := range [][]string{{"-plan", "gold"}, {"-rate-limit", "-1"}, {"-rate-limit-style", "smoke"}, {"-cache-window", "0s"}, {"extra"}} {
		if _, _, err := parseConfig(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, _, err := parseConfig(nil, func(k string) string {
		if k == "CGSIM_LATENCY" {
			return "soon"
		}
		return ""
	}, io.Discard); err == nil {
		t.Error("bad CGSIM_LATENCY accepted")
	}
}
