package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/redis/go-redis/v9"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
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
	askInLoop(s, token, clients, coins, l.stop, &l.wg, func(sent time.Time, a answer) {
		ta := timedAnswer{sent: sent, ended: time.Now(), status: a.Status}
		if a.Err != nil || a.Status != http.StatusOK {
			ta.what = fmt.Sprintf("%d %v %.90s", a.Status, a.Err, a.Raw)
			// A failing stack answers at once; do not spin.
			time.Sleep(20 * time.Millisecond)
		}
		l.mu.Lock()
		l.done = append(l.done, ta)
		l.mu.Unlock()
	})
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
// three Sentinels) under steady load through nginx: a manual failover, a
// SIGKILL of the new master, and (the server back as a replica) a SIGKILL
// of the master that holds the gateways' reply subscriptions. Every
// service follows each without a restart, within a bound, and afterwards
// prices, batching and the throttle work on the last master.
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
	pids := map[string]int{}
	for _, p := range s.Procs() {
		pids[p.Name] = p.Pid()
	}
	a, b := g.Servers[0], g.Servers[1]

	l := startTimedLoad(s, tok, 4)
	time.Sleep(3 * time.Second)
	var faults []time.Time
	var names []string
	fault := func(name string) { faults = append(faults, time.Now()); names = append(names, name) }

	fault("SENTINEL FAILOVER")
	if m := g.Failover(t, bound); m != b {
		t.Fatalf("SENTINEL FAILOVER made %s master, want %s", m.Addr, b.Addr)
	}
	t.Logf("SENTINEL FAILOVER: %s is master after %s; reply subscriptions (PUBSUB NUMPAT) on %s: %d, on %s: %d",
		b.Addr, time.Since(faults[0]).Round(time.Millisecond), a.Addr, numpat(t, a), b.Addr, numpat(t, b))
	// Sentinel will not fail the same master over again sooner.
	time.Sleep(testkit.SentinelRetryGap)

	fault("SIGKILL of the new master")
	b.Stop(t)
	if m := g.WaitNewMaster(t, b.Addr, 20*time.Second); m != a {
		t.Fatalf("after the SIGKILL %s is master, want %s", m.Addr, a.Addr)
	}
	t.Logf("SIGKILL of %s: %s is master after %s", b.Addr, a.Addr, time.Since(faults[1]).Round(time.Millisecond))
	time.Sleep(bound)

	// The killed server comes back (empty) as a replica of a; then a, which
	// holds the gateways' subscriptions, dies: they must resubscribe on b.
	b.Start(t)
	g.WaitSettled(t, a.Addr, 30*time.Second)
	time.Sleep(max(0, testkit.SentinelRetryGap-time.Since(faults[1])-bound))
	if n := numpat(t, a); n != 2 {
		t.Errorf("reply subscriptions on the master %s before its SIGKILL: %d, want 2 (one per gateway)", a.Addr, n)
	}
	fault("SIGKILL of the master holding the subscriptions")
	a.Stop(t)
	if m := g.WaitNewMaster(t, a.Addr, 20*time.Second); m != b {
		t.Fatalf("after the second SIGKILL %s is master, want %s", m.Addr, b.Addr)
	}
	t.Logf("SIGKILL of %s: %s is master after %s", a.Addr, b.Addr, time.Since(faults[2]).Round(time.Millisecond))
	testkit.Eventually(t, bound, "both gateways resubscribe on the new master", func() bool { return numpat(t, b) == 2 })
	t.Logf("gateways resubscribed on %s %s after the SIGKILL", b.Addr, time.Since(faults[2]).Round(time.Millisecond))
	time.Sleep(bound)
	all := l.finish()
	end := time.Now()

	if before := costOf(all, all[0].sent, faults[0]); before.failed > 0 || before.ok == 0 {
		t.Errorf("steady load before any fault: %s", before)
	} else {
		t.Logf("before the faults: %s", before)
	}
	for i, f := range faults {
		until := end
		if i+1 < len(faults) {
			until = faults[i+1]
		}
		c := costOf(all, f, until)
		t.Logf("%s: %s", names[i], c)
		if c.recovery < 0 || c.recovery > bound {
			t.Errorf("%s: no 200 within %s: %s", names[i], bound, c)
		}
	}
	// The last seconds must be clean: everything recovered for good.
	if tail := costOf(all, end.Add(-5*time.Second), end); tail.failed > 0 || tail.ok == 0 {
		t.Errorf("still failing %s after the last failover: %s", bound-5*time.Second, tail)
	}
	for _, p := range s.Procs() {
		if !p.Running() || p.Pid() != pids[p.Name] {
			t.Errorf("%s restarted or died (pid %d, was %d)", p.Name, p.Pid(), pids[p.Name])
		}
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
		t.Errorf("login throttle (limit 4) after the failovers: %v, want 401 first and 429 last", statuses)
	}
	t.Logf("afterwards: batch of 3 %d/%d/%d, throttle remaining %d then %d, login probes %v; services logged %s",
		ab[0].Status, ab[1].Status, ab[2].Status, rem1, rem2, statuses, logMentions(t, s,
			"READONLY", "sentinel: new master", "reply subscription interrupted", "reading the request stream failed", "NOGROUP"))
}

// numpat is PUBSUB NUMPAT on one server: how many pattern subscriptions
// (one per gateway) it holds.
func numpat(t *testing.T, r *testkit.Redis) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	n, err := c.PubSubNumPat(context.Background()).Result()
	if err != nil {
		return -1
	}
	return int(n)
}

// logMentions counts the lines of the gateways' and fetchers' logs that
// contain each phrase.
func logMentions(t *testing.T, s *devstack.Stack, phrases ...string) string {
	t.Helper()
	counts := make([]int, len(phrases))
	for _, p := range append(append([]*devstack.Proc(nil), s.Gateways...), s.Fetchers...) {
		data, err := os.ReadFile(filepath.Join(s.LogDir(), p.Name+".log"))
		if err != nil {
			t.Errorf("log of %s: %v", p.Name, err)
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			for i, ph := range phrases {
				if strings.Contains(line, ph) {
					counts[i]++
				}
			}
		}
	}
	var out []string
	for i, ph := range phrases {
		out = append(out, fmt.Sprintf("%q %d×", ph, counts[i]))
	}
	return strings.Join(out, ", ")
}

// The Sentinel override adds a replica and three Sentinels to the
// multi-instance file, points every service of ours at the Sentinels, and
// mounts configuration files that exist and monitor the compose master.
func TestComposeSentinel(t *testing.T) {
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.multi.yml"), filepath.Join(root, "docker-compose.sentinel.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithoutEnvironmentResolution)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.sentinel.yml does not load over docker-compose.multi.yml: %v", err)
	}
	var sentinels []string
	for _, name := range []string{"redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"} {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		if s.Image != "redis:7-alpine" || s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s: image %q, healthcheck %v", name, s.Image, s.HealthCheck)
		}
		for _, v := range s.Volumes {
			if v.Type != "bind" {
				continue // a named data volume (redisdata), not a config file
			}
			if _, err := os.Stat(v.Source); err != nil || !v.ReadOnly {
				t.Errorf("%s mounts %s (read-only %v): %v", name, v.Source, v.ReadOnly, err)
			}
		}
		if strings.HasPrefix(name, "sentinel-") {
			sentinels = append(sentinels, name+":26379")
		}
	}
	if !strings.Contains(strings.Join(p.Services["redis-replica"].Command, " "), "--replicaof redis 6379") {
		t.Errorf("redis-replica command %v does not replicate redis", p.Services["redis-replica"].Command)
	}
	for _, name := range []string{"auth", "gateway-1", "gateway-2", "fetcher"} {
		env := p.Services[name].Environment
		get := func(k string) string {
			if env[k] == nil {
				return ""
			}
			return *env[k]
		}
		if get("REDIS_SENTINELS") != strings.Join(sentinels, ",") || get("REDIS_MASTER_NAME") != testkit.SentinelMaster {
			t.Errorf("%s: REDIS_SENTINELS %q REDIS_MASTER_NAME %q", name, get("REDIS_SENTINELS"), get("REDIS_MASTER_NAME"))
		}
		// The override adds to the multi file's environment, not replaces it.
		if get("HOST") != "0.0.0.0" || (strings.HasPrefix(name, "gateway-") && get("INSTANCE_ID") != name) {
			t.Errorf("%s lost its environment to the override: %v", name, env)
		}
		for _, s := range []string{"sentinel-1", "sentinel-2", "sentinel-3", "redis"} {
			if _, ok := p.Services[name].DependsOn[s]; !ok {
				t.Errorf("%s does not wait for %s", name, s)
			}
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "redis-sentinel", "sentinel.conf"))
	if err != nil || !strings.Contains(string(conf), "sentinel monitor mymaster redis 6379 2") ||
		!strings.Contains(string(conf), "sentinel resolve-hostnames yes") {
		t.Errorf("deploy/redis-sentinel/sentinel.conf must monitor mymaster at redis:6379 with quorum 2, by host name: %v", err)
	}
}
