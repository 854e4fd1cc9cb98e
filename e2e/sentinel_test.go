package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptopulse/tools/devstack"
	"cryptopulse/tools/testkit"
)

// timedLoad is price traffic through nginx that remembers when each request
// was sent and how it ended, to measure what a fault cost.
type timedLoad struct {
	mu   sync.Mutex
	done []timedAnswer
	stop chan struct{}
	wg   sync.WaitGroup
}

type timedAnswer struct {
	sent, ended time.Time
	status      int
	what        string // for failures: status, error, body
}

func startTimedLoad(s *devstack.Stack, token string, clients int) *timedLoad {
	l := &timedLoad{stop: make(chan struct{})}
	coins := []string{"bitcoin", "ethereum", "solana", "cardano"}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				sent := time.Now()
				a := getJSON(s.URL, "/v1/price/"+coins[i%len(coins)], token)
				ta := timedAnswer{sent: sent, ended: time.Now(), status: a.Status}
				if a.Err != nil || a.Status != http.StatusOK {
					ta.what = fmt.Sprintf("%d %v %.90s", a.Status, a.Err, a.Raw)
					// A failing stack answers at once; do not spin.
					time.Sleep(20 * time.Millisecond)
				}
				l.mu.Lock()
				l.done = append(l.done, ta)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *timedLoad) finish() []timedAnswer {
	close(l.stop)
	l.wg.Wait()
	sort.Slice(l.done, func(i, j int) bool { return l.done[i].sent.Before(l.done[j].sent) })
	return l.done
}

// faultCost is what clients saw from fault on to until: failed requests
// (any not 200) and the time from the fault to the first 200 of a request
// sent after it.
type faultCost struct {
	failed   int
	kinds    map[string]int
	recovery time.Duration
	ok       int
}

func costOf(all []timedAnswer, fault, until time.Time) faultCost {
	c := faultCost{kinds: map[string]int{}, recovery: -1}
	for _, a := range all {
		if a.ended.Before(fault) || !a.sent.Before(until) {
			continue
		}
		if a.status != http.StatusOK {
			c.failed++
			c.kinds[a.what]++
			continue
		}
		c.ok++
		if c.recovery < 0 && !a.sent.Before(fault) {
			c.recovery = a.ended.Sub(fault)
		}
	}
	return c
}

func (c faultCost) String() string {
	var kinds []string
	for k, n := range c.kinds {
		kinds = append(kinds, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d failed, %d ok, first 200 after %s [%s]", c.failed, c.ok, c.recovery.Round(time.Millisecond), strings.Join(kinds, "; "))
}

// The whole stack on a Sentinel-watched Redis (one master, one replica,
// three Sentinels) under steady load through nginx: a manual failover and
// then a SIGKILL of the new master. Every service follows both without a
// restart, within a bound, and afterwards prices, batching and the throttle
// work on the new master.
func TestStackFollowsSentinelFailovers(t *testing.T) {
	t.Parallel()
	g := testkit.StartSentinelGroup(t, 1, 3)
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 2, Nginx: true, RedisURL: g.URL(), Env: map[string]string{
		"REDIS_SENTINELS":      g.SentinelList(),
		"COINGECKO_RATE_LIMIT": "0",
		"BATCH_THRESHOLD":      "1",
		"THROTTLE_LOGIN_LIMIT": "4",
	}})
	tok := login(t, s)
	const bound = 15 * time.Second

	l := startTimedLoad(s, tok, 4)
	time.Sleep(3 * time.Second)
	first := time.Now()
	second := g.Failover(t, bound)
	t.Logf("SENTINEL FAILOVER: %s is master after %s", second.Addr, time.Since(first).Round(time.Millisecond))
	// Sentinel will not fail the same master over again sooner.
	time.Sleep(testkit.SentinelRetryGap)
	kill := time.Now()
	second.Stop(t)
	third := g.WaitNewMaster(t, second.Addr, 20*time.Second)
	t.Logf("SIGKILL of %s: %s is master after %s", second.Addr, third.Addr, time.Since(kill).Round(time.Millisecond))
	time.Sleep(bound)
	all := l.finish()

	before := costOf(all, all[0].sent, first)
	c1, c2 := costOf(all, first, kill), costOf(all, kill, time.Now())
	t.Logf("before the faults: %s", before)
	t.Logf("manual failover: %s", c1)
	t.Logf("SIGKILL of the master: %s", c2)
	if before.failed > 0 || before.ok == 0 {
		t.Errorf("steady load before any fault: %s", before)
	}
	for name, c := range map[string]faultCost{"manual failover": c1, "SIGKILL": c2} {
		if c.recovery < 0 || c.recovery > bound {
			t.Errorf("%s: no 200 within %s of the fault: %s", name, bound, c)
		}
	}
	// The last seconds must be clean: everything recovered for good.
	if tail := costOf(all, time.Now().Add(-5*time.Second), time.Now()); tail.failed > 0 || tail.ok == 0 {
		t.Errorf("still failing 10 s after the last failover: %s", tail)
	}

	// Afterwards, on the third master: prices (with a batch of three over
	// both gateways), the price throttle counting, the login throttle.
	ab := concurrently([]string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.URL}, func(b string) answer {
		return getJSON(b, "/v1/price/ripple", tok)
	})
	for i, a := range ab {
		if a.Status != http.StatusOK || a.str("coinId") != "ripple" {
			t.Errorf("after the failovers, request %d: %d %s", i, a.Status, a.Raw)
		}
	}
	r1, r2 := getJSON(s.URL, "/v1/price/bitcoin", tok), getJSON(s.URL, "/v1/price/bitcoin", tok)
	rem1, _ := strconv.Atoi(r1.Header.Get("X-RateLimit-Remaining"))
	rem2, _ := strconv.Atoi(r2.Header.Get("X-RateLimit-Remaining"))
	if r1.Status != http.StatusOK || r2.Status != http.StatusOK || rem2 >= rem1 {
		t.Errorf("price throttle after the failovers: %d %d, remaining %d then %d", r1.Status, r2.Status, rem1, rem2)
	}
	var statuses []int
	for range 5 {
		resp, err := http.Post(s.AuthURL+"/auth/login", "application/json", strings.NewReader(`{"username":"probe","password":"wrong-password"}`))
		if err != nil {
			t.Fatalf("login probe: %v", err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if statuses[0] != http.StatusUnauthorized || statuses[len(statuses)-1] != http.StatusTooManyRequests {
		t.Errorf("login throttle (limit 4 per user) after the failovers: %v, want 401 first and 429 last", statuses)
	}
}
