package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

// With PRICE_MAX_AGE_MS a young price on the feed answers GET
// /v1/price/{coinId} without a stream entry or a batch, saying so in its
// batch info; an old one goes to a batch as always; the limit counts both.
// At 0 (the default) every request is batched.
func TestHotReadsAnswerFromTheFeedWhenYoung(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.Client(t)
	f := &feed{rdb: rdb}
	hot := streamGateway(t, r, map[string]string{"PRICE_MAX_AGE_MS": "60000", "BATCH_RESULT_TIMEOUT_MS": "300", "THROTTLE_GLOBAL_LIMIT": "4"})
	off := streamGateway(t, r, map[string]string{"BATCH_RESULT_TIMEOUT_MS": "300"})
	_, young := f.add(t, "bitcoin", time.Now())
	f.add(t, "ethereum", time.Now().Add(-2*time.Minute))
	// Once a stream has the prices, the gateway's copy has them too.
	openStream(t, hot, "/v1/prices/stream?ids=bitcoin,ethereum", bearer(t, "hot")).prices(t, 2)
	requests := func() int64 {
		n, err := rdb.XLen(context.Background(), price.StreamKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	resp, body := get(t, hot+"/v1/price/bitcoin", "Bearer "+token(t, "hot"))
	var got price.Answer
	_ = json.Unmarshal(body, &got)
	want := young
	want.Batch.Source = price.SourceFeed
	if resp.StatusCode != 200 || got != want || resp.Header.Get("X-Batch-Source") != price.SourceFeed ||
		resp.Header.Get("X-Batch-Id") != young.Batch.ID || resp.Header.Get("RateLimit-Remaining") == "" && resp.Header.Get("X-RateLimit-Remaining") == "" {
		t.Fatalf("hot read: %d %s %v, want %+v from the feed", resp.StatusCode, body, resp.Header, want)
	}
	if n := requests(); n != 0 {
		t.Errorf("a hot read left %d stream entries, want none", n)
	}

	if resp, body := get(t, hot+"/v1/price/ethereum", "Bearer "+token(t, "hot")); resp.StatusCode != 504 || requests() != 1 {
		t.Errorf("an old price: %d %s with %d stream entries, want it batched (504 without fetchers)", resp.StatusCode, body, requests())
	}
	if resp, body := get(t, off+"/v1/price/bitcoin", "Bearer "+token(t, "cold")); resp.StatusCode != 504 || requests() != 2 {
		t.Errorf("PRICE_MAX_AGE_MS=0: %d %s with %d stream entries, want it batched", resp.StatusCode, body, requests())
	}
	// The stream and two reads spent 3 of 4.
	if resp, _ := get(t, hot+"/v1/price/bitcoin", "Bearer "+token(t, "hot")); resp.StatusCode != 200 {
		t.Errorf("fourth request within the limit: %d", resp.StatusCode)
	}
	if resp, body := get(t, hot+"/v1/price/bitcoin", "Bearer "+token(t, "hot")); resp.StatusCode != 429 {
		t.Errorf("fifth request over the limit of 4: %d %s, want 429", resp.StatusCode, body)
	}
	if resp, _ := get(t, hot+"/v1/price/bitcoin", ""); resp.StatusCode != 401 {
		t.Errorf("hot read without a token: %d, want 401", resp.StatusCode)
	}
}

// Hot reads of a user with a large limit (300 a minute, so the throttle
// leases) on two gateways at once: at most the limit get through, and no
// fewer than the limit less the other gateway's lease (1 %); the rest are
// 429 with Retry-After; and once the lease term ends, the user's log in
// Redis holds just the requests that got through.
func TestHotReadsOverTwoGatewaysKeepALeasedLimit(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.Client(t)
	f := &feed{rdb: rdb}
	o := map[string]string{"PRICE_MAX_AGE_MS": "60000", "THROTTLE_GLOBAL_LIMIT": "300", "THROTTLE_LEASE_MS": "100"}
	gateways := []string{streamGateway(t, r, o), streamGateway(t, r, o)}
	f.add(t, "bitcoin", time.Now())
	for _, g := range gateways {
		openStream(t, g, "/v1/prices/stream?ids=bitcoin", bearer(t, "watcher")).prices(t, 1)
	}

	const limit, requests = 300, 600
	// Idle keep-alive connections would hold the gateways' shutdown.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	auth := "Bearer " + token(t, "hot")
	codes := make(chan int, requests)
	var wg sync.WaitGroup
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := get(t, gateways[i%2]+"/v1/price/bitcoin", auth)
			switch resp.StatusCode {
			case 200:
				var a price.Answer
				left, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
				if json.Unmarshal(body, &a) != nil || a.Batch.Source != price.SourceFeed || err != nil || left < 0 || left >= limit {
					t.Errorf("a hot read: %s, remaining %q", body, resp.Header.Get("X-RateLimit-Remaining"))
				}
			case 429:
				if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "Too Many Requests") {
					t.Errorf("a refused read: %v %s, want Retry-After and the throttle's message", resp.Header, body)
				}
			default:
				t.Errorf("a hot read: %d %s", resp.StatusCode, body)
			}
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == 200 {
			ok++
		}
	}
	if ok > limit || ok < limit-limit/100 {
		t.Errorf("%d of %d hot reads answered 200, want at most %d and at least %d", ok, requests, limit, limit-limit/100)
	}
	key := "cp:throttle:price:user:hot"
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("%s holds the %d requests that got through once the lease term ends", key, ok), func() bool {
		n, err := rdb.ZCard(context.Background(), key).Result()
		return err == nil && int(n) == ok
	})
}
