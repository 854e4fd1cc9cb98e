package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// A dependency that hangs (its processes stopped with SIGSTOP: connections
// open, nothing answering) must cost a request seconds, not the proxy's
// timeout. The bounds asserted here are generous for a loaded machine and
// still far below the 30 s nginx took before the waits were bounded.
const (
	// hungBound is what any answer may take while a dependency hangs
	// (DB_QUERY_TIMEOUT_MS is 2 s, Redis's fail-fast under 1 s).
	hungBound = 5 * time.Second
	// readyBound is the readiness probes' own timeout (Kubernetes'
	// timeoutSeconds and the container healthcheck's, both 2 s).
	readyBound = 2 * time.Second
)

// hungProbe is one request a user makes while a dependency hangs.
type hungProbe struct {
	name, method, path, body string
	token                    bool
}

// hungProbes are the routes measured: one of each kind of dependency use.
var hungProbes = []hungProbe{
	{name: "history", method: http.MethodGet, path: "/v1/price/litecoin/history", token: true},
	{name: "price", method: http.MethodGet, path: "/v1/price/litecoin", token: true},
	{name: "many-coins", method: http.MethodGet, path: "/v1/prices?ids=bitcoin,ethereum", token: true},
	{name: "login", method: http.MethodPost, path: "/auth/login"},
	{name: "ready", method: http.MethodGet, path: "/ready"},
}

// askAll sends every probe at once through nginx and returns the answers by
// name, logging each with its time (the numbers in bench/hung-deps.txt).
func askAll(t *testing.T, s *devstack.Stack, token, fault string) map[string]answer {
	t.Helper()
	out := make(map[string]answer, len(hungProbes))
	got := make([]answer, len(hungProbes))
	done := make(chan int)
	for i, p := range hungProbes {
		go func() {
			body := p.body
			if p.path == "/auth/login" {
				body = fmt.Sprintf(`{"username":%q,"password":%q}`, s.AdminUser, s.AdminPass)
			}
			tok := ""
			if p.token {
				tok = token
			}
			got[i] = send(p.method, s.URL+p.path, body, tok)
			done <- i
		}()
	}
	for range hungProbes {
		<-done
	}
	for i, p := range hungProbes {
		a := got[i]
		out[p.name] = a
		t.Logf("%s: %-10s %d in %5.2f s %s", fault, p.name, a.Status, a.Took.Seconds(), oneLine(a))
	}
	return out
}

// send makes one request with a client patient enough to see a proxy give
// up (nginx's retry on the second gateway ends at 30 s).
func send(method, url, body, token string) answer {
	start := time.Now()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{Err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(req, start, 60*time.Second)
}

func oneLine(a answer) string {
	if a.Err != nil && a.Status == 0 {
		return a.Err.Error()
	}
	if len(a.Raw) > 140 {
		return a.Raw[:140] + "..."
	}
	return a.Raw
}

// wantError checks a documented error answer: its status, in the NestJS
// shape, within the bound.
func wantError(t *testing.T, what string, a answer, status int, bound time.Duration) {
	t.Helper()
	if a.Status != status || a.Body["statusCode"] != float64(status) || a.str("message") == "" || a.str("error") == "" {
		t.Errorf("%s: %d %s, want %d in the {statusCode,message,error} shape", what, a.Status, a.Raw, status)
	}
	if a.Took >= bound {
		t.Errorf("%s answered after %s, want within %s", what, a.Took, bound)
	}
}

func wantOK(t *testing.T, what string, a answer) {
	t.Helper()
	if a.Status != http.StatusOK {
		t.Errorf("%s: %d %s, want 200", what, a.Status, a.Raw)
	}
}

// wantReadyNaming checks /ready's 503 names dep as down, within the probe
// timeout.
func wantReadyNaming(t *testing.T, a answer, dep string) {
	t.Helper()
	wantError(t, "/ready", a, http.StatusServiceUnavailable, readyBound)
	checks, _ := a.Body["checks"].(map[string]any)
	if checks[dep] != "down" || !strings.Contains(a.str("message"), dep) {
		t.Errorf("/ready: %s, want it to name %s as down", a.Raw, dep)
	}
}

// burst sends n requests at once and wants each answered status within bound.
func burst(t *testing.T, what string, n int, bound time.Duration, ask func() answer, status int) {
	t.Helper()
	bases := make([]string, n)
	var slowest time.Duration
	for i, a := range concurrently(bases, func(string) answer { return ask() }) {
		wantError(t, fmt.Sprintf("%s %d of %d at once", what, i+1, n), a, status, bound)
		slowest = max(slowest, a.Took)
	}
	t.Logf("%d %s requests at once: slowest %.2f s", n, what, slowest.Seconds())
}

// pids records every service's process id, to prove recovery needed no restart.
func pids(s *devstack.Stack) map[string]int {
	out := map[string]int{}
	for _, group := range [][]*devstack.Proc{s.Gateways, s.Fetchers, s.Auths} {
		for _, p := range group {
			out[p.Name] = p.Pid()
		}
	}
	return out
}

func wantSameProcesses(t *testing.T, s *devstack.Stack, before map[string]int) {
	t.Helper()
	for name, pid := range pids(s) {
		if before[name] != pid {
			t.Errorf("%s was restarted (pid %d, then %d): recovery must need none", name, before[name], pid)
		}
	}
}

func readyAgain(t *testing.T, s *devstack.Stack, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, "every gateway ready again", func() bool {
		for _, g := range s.Gateways {
			if a := send(http.MethodGet, g.URL()+"/ready", "", ""); a.Status != http.StatusOK {
				return false
			}
		}
		return true
	})
}

// Postgres hung: history is 503 within the query bound, prices, many coins
// and login still 200, /ready 503 naming postgres within its probe timeout;
// after SIGCONT everything recovers by itself and every price fetched during
// the hang is in price_records.
func TestHungPostgresCostsSecondsAndLosesNoPrices(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true, DatabaseURL: ownPostgres,
		Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	wantOK(t, "price before the hang", send(http.MethodGet, s.URL+"/v1/price/litecoin", "", tok))
	testkit.Eventually(t, 10*time.Second, "the first price in history", func() bool {
		a := send(http.MethodGet, s.URL+"/v1/price/litecoin/history", "", tok)
		return a.Status == http.StatusOK && a.Body["totalItems"] == float64(1)
	})
	procs := pids(s)

	s.Postgres.Freeze(t)
	got := askAll(t, s, tok, "postgres hung")
	wantError(t, "history", got["history"], http.StatusServiceUnavailable, hungBound)
	wantOK(t, "price", got["price"])
	wantOK(t, "many-coins", got["many-coins"])
	wantOK(t, "login", got["login"])
	wantReadyNaming(t, got["ready"], "postgres")
	// More callers than a gateway's pool holds (DB_POOL_SIZE 10): a request
	// waiting for a connection is bounded too.
	burst(t, "history", 30, hungBound, func() answer {
		return send(http.MethodGet, s.URL+"/v1/price/litecoin/history", "", tok)
	}, http.StatusServiceUnavailable)
	fetched := 2 // the litecoin prices so far: before the hang and the probe's
	for range 3 {
		a := send(http.MethodGet, s.URL+"/v1/price/litecoin", "", tok)
		wantOK(t, "price during the hang", a)
		if a.Status == http.StatusOK {
			fetched++
		}
	}
	// The persister's write gives up on its bound and keeps the records
	// queued in Redis, rather than waiting on Postgres forever.
	testkit.Eventually(t, 15*time.Second, "the fetcher reports its write failed", func() bool {
		return strings.Contains(s.Fetchers[0].Output(), "writing price records failed")
	})
	again := send(http.MethodGet, s.URL+"/v1/price/litecoin/history", "", tok)
	wantError(t, "history, still hung", again, http.StatusServiceUnavailable, hungBound)

	thawed := time.Now()
	s.Postgres.Thaw(t)
	readyAgain(t, s, 15*time.Second)
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("all %d litecoin prices in history", fetched), func() bool {
		a := send(http.MethodGet, s.URL+"/v1/price/litecoin/history", "", tok)
		return a.Status == http.StatusOK && a.Body["totalItems"] == float64(fetched)
	})
	t.Logf("postgres thawed: ready and all %d prices in history after %.2f s", fetched, time.Since(thawed).Seconds())
	wantSameProcesses(t, s, procs)
}

// Redis hung: the throttled and batched routes are 503 within the fail-fast
// bound, /ready 503 naming redis within its probe timeout; after SIGCONT
// prices are answered again with no restart.
func TestHungRedisCostsSeconds(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true,
		Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	tok := login(t, s)
	wantOK(t, "price before the hang", send(http.MethodGet, s.URL+"/v1/price/litecoin", "", tok))
	procs := pids(s)

	s.Redis.Freeze(t)
	got := askAll(t, s, tok, "redis hung")
	// History is throttled, and the throttle lives in Redis.
	for _, name := range []string{"history", "price", "many-coins", "login"} {
		wantError(t, name, got[name], http.StatusServiceUnavailable, hungBound)
	}
	wantReadyNaming(t, got["ready"], "redis")
	// More callers than a gateway's Redis pool holds (10 per CPU).
	burst(t, "price", 60, hungBound, func() answer {
		return send(http.MethodGet, s.URL+"/v1/price/litecoin", "", tok)
	}, http.StatusServiceUnavailable)

	thawed := time.Now()
	s.Redis.Thaw(t)
	readyAgain(t, s, 15*time.Second)
	testkit.Eventually(t, 20*time.Second, "a price answered again", func() bool {
		return send(http.MethodGet, s.URL+"/v1/price/litecoin", "", tok).Status == http.StatusOK
	})
	t.Logf("redis thawed: ready and a price answered after %.2f s", time.Since(thawed).Seconds())
	wantOK(t, "login after the hang", send(http.MethodPost, s.AuthURL+"/auth/login",
		fmt.Sprintf(`{"username":%q,"password":%q}`, s.AdminUser, s.AdminPass), ""))
	wantSameProcesses(t, s, procs)
}

// A network that silently drops every packet between a gateway and Postgres
// (a namespace link cut with a zero-length queue: established connections
// retransmit into nothing, new ones get no SYN-ACK): the same bounds as a
// stopped server, and the gateway serves history again once the link is
// back, with no restart.
func TestBlackholedPostgresCostsSeconds(t *testing.T) {
	t.Parallel()
	ns := testkit.NewNetns(t)
	pgLink, other := ns.AddLink(t), ns.AddLink(t)
	r, err := testkit.LaunchRedisArgs(t.TempDir(), 0, "--bind", "127.0.0.1 "+other.HostIP, "--protected-mode", "no")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	_, port, _ := net.SplitHostPort(r.Addr)
	dbURL := kit.pg.NewDatabase(t)
	// The gateway inside reaches Postgres only over pgLink, Redis over the other link.
	relay := pgLink.Forward(t, kit.pg.Addr)
	inside := &devstack.Netns{Name: ns.Name, Host: other.NsIP,
		Env: map[string]string{"DATABASE_URL": strings.Replace(dbURL, kit.pg.Addr, relay, 1)}}
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, RedisURL: "redis://" + net.JoinHostPort(other.HostIP, port) + "/0",
		DatabaseURL: dbURL, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	g, err := s.AddGatewayIn(context.Background(), inside)
	if err != nil {
		t.Fatal(err)
	}
	tok := login(t, s)
	wantOK(t, "price before the cut", send(http.MethodGet, g.URL()+"/v1/price/litecoin", "", tok))
	testkit.Eventually(t, 10*time.Second, "the price in history", func() bool {
		a := send(http.MethodGet, g.URL()+"/v1/price/litecoin/history", "", tok)
		return a.Status == http.StatusOK && a.Body["totalItems"] == float64(1)
	})
	pid := g.Pid()

	if err := pgLink.Cut(); err != nil {
		t.Fatal(err)
	}
	// Twice: first on the pooled connection, then on a fresh dial.
	for i := range 2 {
		a := send(http.MethodGet, g.URL()+"/v1/price/litecoin/history", "", tok)
		t.Logf("postgres blackholed: history %d in %.2f s %s", a.Status, a.Took.Seconds(), oneLine(a))
		wantError(t, fmt.Sprintf("history %d", i), a, http.StatusServiceUnavailable, hungBound)
	}
	ready := send(http.MethodGet, g.URL()+"/ready", "", "")
	t.Logf("postgres blackholed: ready %d in %.2f s %s", ready.Status, ready.Took.Seconds(), oneLine(ready))
	wantReadyNaming(t, ready, "postgres")
	wantOK(t, "price while Postgres is cut off", send(http.MethodGet, g.URL()+"/v1/price/litecoin", "", tok))

	if err := pgLink.Restore(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	testkit.Eventually(t, 20*time.Second, "history again", func() bool {
		return send(http.MethodGet, g.URL()+"/v1/price/litecoin/history", "", tok).Status == http.StatusOK
	})
	t.Logf("postgres link restored: history 200 after %.2f s", time.Since(restored).Seconds())
	if g.Pid() != pid {
		t.Errorf("%s was restarted: recovery must need none", g.Name)
	}
}
