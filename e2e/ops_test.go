package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// opsEnv lets steady load run without our own upstream budget getting in the way.
var opsEnv = map[string]string{"COINGECKO_RATE_LIMIT": "0"}

// load is steady price traffic through nginx, counting what clients saw.
type load struct {
	ok     atomic.Int64
	mu     sync.Mutex
	failed map[string]int
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startLoad runs clients that each ask for prices in a loop (three clients
// per coin, so batches fill and flush by threshold).
func startLoad(s *devstack.Stack, token string, clients int) *load {
	l := &load{failed: map[string]int{}, stop: make(chan struct{})}
	coins := []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin"}
	askInLoop(s, token, clients, coins, l.stop, &l.wg, func(_ time.Time, a answer) {
		if a.Err == nil && a.Status == http.StatusOK {
			l.ok.Add(1)
			return
		}
		l.mu.Lock()
		l.failed[fmt.Sprintf("%d %v %.80s", a.Status, a.Err, a.Raw)]++
		l.mu.Unlock()
	})
	return l
}

// finish stops the load and returns the successes and the failures.
func (l *load) finish() (int64, int, string) {
	close(l.stop)
	l.wg.Wait()
	n := 0
	var kinds []string
	for k, v := range l.failed {
		n += v
		kinds = append(kinds, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(kinds)
	return l.ok.Load(), n, strings.Join(kinds, "; ")
}

// Every gateway and then every fetcher restarted one at a time (SIGTERM,
// graceful exit, start again) while clients keep asking: nobody notices.
func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Nginx: true, Env: opsEnv})
	tok := login(t, s)
	l := startLoad(s, tok, 15)
	time.Sleep(time.Second)
	start := time.Now()
	for _, g := range s.Gateways {
		if err := g.Restart(ctx); err != nil {
			t.Fatalf("restart %s: %v", g.Name, err)
		}
		if err := s.WaitRouted(ctx, g.Name); err != nil {
			t.Fatalf("%s back in rotation: %v", g.Name, err)
		}
	}
	gateways := time.Since(start)
	for _, f := range s.Fetchers {
		if err := f.Restart(ctx); err != nil {
			t.Fatalf("restart %s: %v", f.Name, err)
		}
	}
	time.Sleep(time.Second)
	ok, failed, kinds := l.finish()
	t.Logf("rolling restart of 2 gateways (%s) and 2 fetchers under load: %d answered 200, %d failed %s",
		gateways.Round(time.Millisecond), ok, failed, kinds)
	if failed != 0 {
		t.Errorf("%d requests failed during the rolling restart (target 0): %s", failed, kinds)
	}
	if ok < 100 {
		t.Errorf("only %d requests answered: the load did not run", ok)
	}
}

// A gateway killed outright under load: nginx retries the GETs it held on
// the other gateway.
func TestGatewayKilledUnderLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Nginx: true, Env: opsEnv})
	tok := login(t, s)
	l := startLoad(s, tok, 15)
	time.Sleep(2 * time.Second)
	victim := s.Gateways[0]
	if err := victim.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := victim.Start(ctx); err != nil {
		t.Fatalf("start %s again: %v", victim.Name, err)
	}
	if err := s.WaitRouted(ctx, victim.Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	ok, failed, kinds := l.finish()
	t.Logf("gateway SIGKILLed under load: %d answered 200, %d client-visible failures %s", ok, failed, kinds)
	if failed != 0 {
		t.Errorf("%d client-visible failures (target 0): %s", failed, kinds)
	}
}

// Redis stopped behind nginx: clients get the gateways' 503 JSON (nginx does
// not turn it into a retry or an HTML page), then service comes back by
// itself.
func TestRedisOutageThroughNginx(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	if a := getJSON(s.URL, "/v1/price/bitcoin", tok); a.Status != http.StatusOK {
		t.Fatalf("before: %d %s", a.Status, a.Raw)
	}
	s.Redis.Stop(t)
	for i := range 4 {
		a := getJSON(s.URL, "/v1/price/bitcoin", tok)
		if a.Status != http.StatusServiceUnavailable || a.Body["statusCode"] != float64(503) || a.Took > 2*time.Second {
			t.Errorf("Redis down, request %d: %d after %s: %s", i, a.Status, a.Took, a.Raw)
		}
	}
	resp, err := http.Post(s.URL+"/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"x"}`))
	if err != nil {
		t.Errorf("login with Redis down: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("login with Redis down: %d, want 503", resp.StatusCode)
		}
	}
	s.Redis.Start(t)
	var a answer
	testkit.Eventually(t, 15*time.Second, "prices answered again", func() bool {
		a = getJSON(s.URL, "/v1/price/bitcoin", tok)
		return a.Status == http.StatusOK
	})
	t.Logf("after Redis came back: 200 via %s in %s", a.Gateway, a.Took)
}
