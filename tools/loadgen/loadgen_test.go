package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunKeepsTheRateWhenTheServerIsSlow(t *testing.T) {
	// Every answer takes 300 ms: a closed loop with few connections would
	// slow down to match, an open loop keeps sending at 200/s.
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		if r.Header.Get("Authorization") != "Bearer t" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	start := time.Now()
	res, err := Run(context.Background(), Config{
		URLs: []string{srv.URL}, Rate: 200, Duration: time.Second,
		Header: http.Header{"Authorization": {"Bearer t"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if res.Planned != 200 || res.Sent != 200 || got.Load() != 200 || res.Status[200] != 200 || res.Non2xx() != 0 || res.ErrorCount() != 0 {
		t.Fatalf("planned %d sent %d server saw %d status %v errors %v", res.Planned, res.Sent, got.Load(), res.Status, res.Errors)
	}
	// 200 requests 5 ms apart, the last answered 300 ms after it was sent.
	if took < 1200*time.Millisecond || took > 2500*time.Millisecond {
		t.Errorf("run took %v, want about 1.3 s", took)
	}
	if res.P50 < 300*time.Millisecond || res.P99 > time.Second || res.Max < res.P99 || res.P99 < res.P50 {
		t.Errorf("p50 %v p99 %v max %v, want about 300 ms", res.P50, res.P99, res.Max)
	}
	if res.Rate < 100 || res.Rate > 200 {
		t.Errorf("rate %.1f/s", res.Rate)
	}
}

func TestLatencyCountsFromTheDueTime(t *testing.T) {
	// The server holds the only connection slot it lets through: with a
	// transport of one connection requests queue in the client, and that
	// queueing must show in the latency (no coordinated omission).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
	}))
	defer srv.Close()
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	res, err := Run(context.Background(), Config{URLs: []string{srv.URL}, Rate: 100, Duration: 200 * time.Millisecond, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	// 20 requests due 10 ms apart, served one at a time for 50 ms each: the
	// last waits about 20*50 - 19*10 = 810 ms.
	if res.Status[200] != 20 || res.Max < 700*time.Millisecond {
		t.Errorf("status %v max %v, want 20 answers, the last after ~800 ms", res.Status, res.Max)
	}
}

func TestZipfPrefersTheFirstTargetsAndCountsStatuses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	}))
	defer srv.Close()
	var urls []string
	for i := range 100 {
		code := 200
		if i == 0 {
			code = 429
		}
		urls = append(urls, srv.URL+"/?code="+strconv.Itoa(code)+"&i="+strconv.Itoa(i))
	}
	res, err := Run(context.Background(), Config{URLs: urls, Rate: 2000, Duration: time.Second, MaxRequests: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Planned != 1000 || res.Responses() != 1000 {
		t.Fatalf("planned %d responses %d errors %v", res.Planned, res.Responses(), res.Errors)
	}
	if res.Targets[0] != res.Status[429] || res.Non2xx() != res.Status[429] {
		t.Errorf("target 0 got %d requests but %d 429s (non-2xx %d)", res.Targets[0], res.Status[429], res.Non2xx())
	}
	if res.Targets[0] < res.Targets[10] || res.Targets[10] < res.Targets[99] || res.Targets[0] < 100 {
		t.Errorf("not Zipf-like: first %d, 11th %d, last %d", res.Targets[0], res.Targets[10], res.Targets[99])
	}
	spread := 0
	for _, n := range res.Targets {
		if n > 0 {
			spread++
		}
	}
	if spread < 30 {
		t.Errorf("only %d of 100 targets got a request", spread)
	}
}

func TestRunCountsErrorsAndDrops(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	res, err := Run(context.Background(), Config{
		URLs: []string{srv.URL}, Rate: 100, Duration: 300 * time.Millisecond,
		Timeout: 200 * time.Millisecond, MaxInFlight: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent+res.Dropped != res.Planned || res.Dropped == 0 || res.Errors["timeout"] != res.Sent || res.Responses() != 0 {
		t.Errorf("planned %d sent %d dropped %d errors %v status %v", res.Planned, res.Sent, res.Dropped, res.Errors, res.Status)
	}

	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close()
	res, err = Run(context.Background(), Config{URLs: []string{url}, Rate: 50, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors["refused"] != res.Planned {
		t.Errorf("errors %v, want %d refused", res.Errors, res.Planned)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{URLs: []string{srv.URL}, Rate: 100, Duration: time.Hour})
	if err == nil || time.Since(start) > 2*time.Second || res.Sent == 0 || res.Sent > 40 {
		t.Errorf("err %v after %v, sent %d", err, time.Since(start), res.Sent)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no url":      {Rate: 1, Duration: time.Second},
		"zero rate":   {URLs: []string{"http://x"}, Duration: time.Second},
		"no duration": {URLs: []string{"http://x"}, Rate: 1},
		"zipf 1":      {URLs: []string{"http://x"}, Rate: 1, Duration: time.Second, ZipfS: 1},
		"negative":    {URLs: []string{"http://x"}, Rate: 1, Duration: time.Second, MaxInFlight: -1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if Percentile(d, 50) != 50 || Percentile(d, 99) != 99 || Percentile(d, 100) != 100 || Percentile(nil, 50) != 0 || Percentile(d[:1], 99) != 1 {
		t.Errorf("p50 %v p99 %v p100 %v", Percentile(d, 50), Percentile(d, 99), Percentile(d, 100))
	}
}
