package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/testkit"
	"cryptopulse/testkit/sse"
	"cryptopulse/tools/devstack"
)

// follower is a stream client that behaves as a browser's EventSource: when
// the stream ends it waits the retry delay the server gave and reconnects
// through the same URL with the last event id it got.
type follower struct {
	url, token string

	mu       sync.Mutex
	prices   []sse.Event
	lastID   string
	gateways []string // X-Instance-Id of each connection, in order
}

func follow(ctx context.Context, url, token string) *follower {
	f := &follower{url: url, token: token}
	go f.run(ctx)
	return f
}

func (f *follower) run(ctx context.Context) {
	retry := 200 * time.Millisecond
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
		req.Header.Set("Authorization", "Bearer "+f.token)
		f.mu.Lock()
		if f.lastID != "" {
			req.Header.Set("Last-Event-ID", f.lastID)
		}
		f.mu.Unlock()
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			f.mu.Lock()
			f.gateways = append(f.gateways, resp.Header.Get("X-Instance-Id"))
			f.mu.Unlock()
			_ = sse.Read(resp.Body, func(ev sse.Event) bool {
				if ev.Retry != "" {
					if ms, err := time.ParseDuration(ev.Retry + "ms"); err == nil {
						retry = ms
					}
				}
				f.mu.Lock()
				if ev.Event == "price" {
					f.prices = append(f.prices, ev)
					f.lastID = ev.ID
				}
				f.mu.Unlock()
				return true
			})
		}
		if resp != nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

func (f *follower) snapshot() (prices []sse.Event, gateways []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sse.Event(nil), f.prices...), append([]string(nil), f.gateways...)
}

// A stream opened through nginx on one gateway carries the price a request
// on the other gateway had fetched, as that request's answer said it; the
// stream's token given as access_token never reaches nginx's access log.
func TestStreamCarriesAPriceFetchedThroughAnotherGateway(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true,
		Env: map[string]string{"BATCH_THRESHOLD": "1", "STREAM_HEARTBEAT_MS": "1000"}})
	tok := login(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The browser's way: the token in the query.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/prices/stream?ids=bitcoin&access_token="+tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("opening the stream through nginx: %v %v", err, resp)
	}
	defer resp.Body.Close()
	streamGW := resp.Header.Get("X-Instance-Id")
	events := make(chan sse.Event, 100)
	go func() { _ = sse.Read(resp.Body, func(ev sse.Event) bool { events <- ev; return true }) }()

	var other *devstack.Proc
	for _, g := range s.Gateways {
		if g.Name != streamGW {
			other = g
		}
	}
	if other == nil {
		t.Fatalf("stream served by %q, which is none of the gateways", streamGW)
	}
	got := getJSON(other.URL(), "/v1/price/bitcoin", tok)
	var want price.Answer
	if got.Status != http.StatusOK || got.Gateway == streamGW || json.Unmarshal([]byte(got.Raw), &want) != nil {
		t.Fatalf("request on %s: %d %s", other.Name, got.Status, got.Raw)
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Event != "price" {
				continue
			}
			var a price.Answer
			if err := json.Unmarshal([]byte(ev.Data), &a); err != nil {
				t.Fatal(err)
			}
			if a.Batch.Source == price.SourceRefresh {
				// The streamed coin is watched: a fetcher may refresh it
				// before the request's fetch (docs/watching.md).
				continue
			}
			if a != want {
				t.Fatalf("stream on %s carried %s, the request on %s got %s", streamGW, ev.Data, other.Name, got.Raw)
			}
			t.Logf("stream on %s got %s's fetch: %s", streamGW, other.Name, ev.Data)
			cancel()
			checkAccessLogRedacted(t, s, tok)
			return
		case <-timeout:
			t.Fatalf("the stream on %s did not carry the price fetched through %s", streamGW, other.Name)
		}
	}
}

// checkAccessLogRedacted waits for nginx to log the stream (once it ends)
// and checks that no log of the stack holds the token.
func checkAccessLogRedacted(t *testing.T, s *devstack.Stack, tok string) {
	t.Helper()
	access := filepath.Join(s.LogDir(), "nginx-access.log")
	testkit.Eventually(t, 10*time.Second, "nginx logs the stream", func() bool {
		b, _ := os.ReadFile(access)
		return strings.Contains(string(b), "/v1/prices/stream?ids=bitcoin&access_token=[redacted]")
	})
	logs, _ := filepath.Glob(filepath.Join(s.LogDir(), "*"))
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), tok[len(tok)-20:]) {
			t.Errorf("%s holds the access token", p)
		}
	}
}

// Gateways stopped one after the other (SIGTERM) while updates keep coming:
// their streams end with a retry hint, the clients reconnect through nginx
// to the other gateway with their Last-Event-ID, and every client ends up
// with every update, in order, none twice.
func TestStoppedGatewayStreamsResumeThroughNginxLosingNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: -1, Nginx: true,
		Env: map[string]string{"STREAM_RETRY_MS": "100", "STREAM_HEARTBEAT_MS": "1000", "STREAMS_PER_USER": "100"}})
	tok := login(t, s)
	opt, err := redis.ParseURL(s.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const clients = 8
	var fs []*follower
	for range clients {
		fs = append(fs, follow(ctx, s.URL+"/v1/prices/stream?ids=bitcoin", tok))
	}
	testkit.Eventually(t, 20*time.Second, "every client connected", func() bool {
		for _, f := range fs {
			if _, gws := f.snapshot(); len(gws) == 0 {
				return false
			}
		}
		return true
	})

	// The fetchers' part, played by the test: an update every 20 ms.
	var sent []string
	produce := func(n int) {
		for range n {
			u := pricefeed.Update{Coin: "bitcoin", Currency: "usd", Price: fmt.Sprint(60000 + len(sent)), FetchedAt: time.Now(),
				BatchID: fmt.Sprint("b", len(sent)), BatchSize: 1, FlushReason: price.FlushWindow, Fetcher: "test", Attempt: 1, Source: price.SourceUpstream}
			id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: pricefeed.Key, Values: u.Values()}).Result()
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, id)
			time.Sleep(20 * time.Millisecond)
		}
	}
	produce(20)
	for _, g := range s.Gateways {
		done := make(chan error, 1)
		go func() {
			stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
			defer stop()
			done <- g.Stop(stopCtx)
		}()
		produce(30)
		if err := <-done; err != nil {
			t.Fatalf("stopping %s: %v", g.Name, err)
		}
		startCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
		if err := g.Start(startCtx); err != nil {
			stop()
			t.Fatalf("starting %s again: %v", g.Name, err)
		}
		stop()
		produce(20)
	}
	last := sent[len(sent)-1]
	testkit.Eventually(t, 30*time.Second, "every client has the last update", func() bool {
		for _, f := range fs {
			if p, _ := f.snapshot(); len(p) == 0 || p[len(p)-1].ID != last {
				return false
			}
		}
		return true
	})
	moved := 0
	for i, f := range fs {
		got, gws := f.snapshot()
		ids := make([]string, len(got))
		for j, ev := range got {
			ids[j] = ev.ID
		}
		if strings.Join(ids, ",") != strings.Join(sent, ",") {
			t.Errorf("client %d got %d updates over gateways %v, want the %d sent, each once, in order", i, len(ids), gws, len(sent))
		}
		if len(gws) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no client reconnected: the gateways' stops did not end any stream")
	}
	t.Logf("%d clients, %d updates, 2 gateway restarts: %d clients reconnected, none missed or repeated an update", clients, len(sent), moved)
}
