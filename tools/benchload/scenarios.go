package benchload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"cryptopulse/tools/loadgen"
)

// Scenario is one line of the table: a stack configuration, a load and a
// target.
type Scenario struct {
	// Name selects it (Options.Scenarios); Title labels its row.
	Name, Title string
	// Target says in words what check accepts.
	Target string
	// Env is the stack's settings on top of the common ones.
	Env map[string]string
	// SimRateLimit is the simulator's own limit per minute (0: none),
	// always above the fetchers' budget so it never decides a result.
	SimRateLimit int

	run   func(ctx context.Context, h *harness, st *stackRun) (Measurement, error)
	check func(h *harness, m Measurement) (bool, string)
}

// ScenarioNames lists the scenarios in the order they run.
func ScenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.Name)
	}
	return names
}

func selectScenarios(names []string) ([]Scenario, error) {
	all := scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, s := range all {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		if n != "ceiling" && !slices.ContainsFunc(all, func(s Scenario) bool { return s.Name == n }) {
			return nil, fmt.Errorf("benchload: unknown scenario %q (have ceiling, %s)", n, strings.Join(ScenarioNames(), ", "))
		}
	}
	return out, nil
}

// hotCoin is the one coin the closed-loop scenarios ask for.
const hotCoin = "bitcoin"

// duration picks a scenario's length for the mode (or Options.Duration).
func (h *harness) duration(full, quick time.Duration) time.Duration {
	switch {
	case h.opts.Duration > 0:
		return h.opts.Duration
	case h.opts.Quick:
		return quick
	}
	return full
}

func (h *harness) waitingClients() int {
	switch {
	case h.opts.WaitingClients > 0:
		return h.opts.WaitingClients
	case h.opts.Quick:
		return 2000
	}
	return 10_000
}

// openLoopRate is the fixed arrival rate of the open-loop scenario.
const openLoopRate = 500

// ceilingScenario is GET /health through nginx: nginx, the gateways' HTTP
// stack and the client, without JWT, Redis or a fetcher. Every ratio is to
// this figure, so it always runs.
func ceilingScenario() Scenario {
	return Scenario{
		Name: "ceiling", Title: "ceiling: GET /health via nginx, -c64",
		Env: map[string]string{}, Target: "(the reference)",
		run: func(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
			return runWrk(ctx, h.wrk, st.dir, wrkRun{URL: st.URL + "/health", Connections: 64, Duration: h.duration(20*time.Second, 5*time.Second)})
		},
	}
}

// scenarios are the targets of the tracker, in order.
func scenarios() []Scenario {
	closedHot := func(full, quick time.Duration) func(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
		return func(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
			return runWrk(ctx, h.wrk, st.dir, wrkRun{
				URL: st.URL + "/v1/price/" + hotCoin, Header: "Authorization: Bearer " + st.token,
				Connections: 64, Duration: h.duration(full, quick),
			})
		}
	}
	return append([]Scenario{
		{
			Name: "machinery", Title: "machinery: no budget, hot coin, -c64",
			Env:    map[string]string{"COINGECKO_RATE_LIMIT": "0"},
			Target: "≥ 33% of ceiling, p50 ≤ 10 ms, all 2xx",
			run:    closedHot(30*time.Second, 5*time.Second),
			check: func(h *harness, m Measurement) (bool, string) {
				return all(fast(h, m), ok2xx(m))
			},
		},
		{
			Name: "budget", Title: "default budget 30/min, hot coin, -c64",
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget)},
			SimRateLimit: 1000,
			Target:       "0 non-2xx, ≤ 30 calls in any 60 s",
			run:          closedHot(60*time.Second, 10*time.Second),
			check: func(h *harness, m Measurement) (bool, string) {
				return all(ok2xx(m), inBudget(m))
			},
		},
		{
			Name: "maxage", Title: "default budget, PRICE_MAX_AGE_MS=60000, hot coin, -c64",
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget), "PRICE_MAX_AGE_MS": "60000"},
			Target:       "0 non-2xx, ≥ 33% of ceiling, p50 ≤ 10 ms, ≤ 30 calls in any 60 s",
			SimRateLimit: 1000,
			run:          closedHot(30*time.Second, 5*time.Second),
			check: func(h *harness, m Measurement) (bool, string) {
				return all(ok2xx(m), fast(h, m), inBudget(m))
			},
		},
		{
			Name: "openloop", Title: fmt.Sprintf("open loop %d req/s, Zipf over 100 coins, default budget", openLoopRate),
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget)},
			SimRateLimit: 1000,
			Target:       fmt.Sprintf("0 non-2xx, p99 < %v (BATCH_RESULT_TIMEOUT_MS), ≤ 30 calls in any 60 s", resultTimeout),
			run:          runOpenLoop,
			check: func(h *harness, m Measurement) (bool, string) {
				var p99 []string
				if m.P99 >= resultTimeout {
					p99 = append(p99, fmt.Sprintf("p99 %s ≥ %v", ms(m.P99), resultTimeout))
				}
				return all(ok2xx(m), inBudget(m), verdict(p99))
			},
		},
		{
			Name: "watch", Title: fmt.Sprintf("open loop %d req/s as above, plus %d watched coins (WATCH_REFRESH_MS 60000)", openLoopRate, watchedCoins),
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget), "WATCH_REFRESH_MS": fmt.Sprint(watchPeriod.Milliseconds())},
			SimRateLimit: 1000,
			Target:       fmt.Sprintf("as open loop (p99 alike), each watched coin a new price at least every %v", watchPeriod),
			run:          runWatch,
			check: func(h *harness, m Measurement) (bool, string) {
				var p99 []string
				if m.P99 >= resultTimeout {
					p99 = append(p99, fmt.Sprintf("p99 %s ≥ %v", ms(m.P99), resultTimeout))
				}
				// runWatch leaves the watched coins' verdict in Why.
				return all(ok2xx(m), inBudget(m), verdict(p99), check{m.Why == "", m.Why})
			},
		},
		{
			Name: "semantics", Title: "PRICE_MAX_AGE_MS=0: lone request (p50), then 3 concurrent (p99)",
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget), "PRICE_MAX_AGE_MS": "0"},
			Target:       "lone answered by the 5 s window; 3 concurrent by 1 call",
			SimRateLimit: 1000,
			run:          runSemantics,
			check: func(h *harness, m Measurement) (bool, string) {
				// runSemantics decides; it leaves its verdict in Why.
				return m.Why == "", m.Why
			},
		},
		{
			Name: "waiting", Title: "waiting clients, one 5 s window, 10 coins",
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget), "BATCH_THRESHOLD": "10000"},
			Target:       "0 errors, RSS ≤ 150 MB per gateway",
			SimRateLimit: 1000,
			run:          runWaiting,
			check: func(h *harness, m Measurement) (bool, string) {
				var why []string
				if g := m.MaxGatewayRSS(); g > 150<<20 {
					why = append(why, fmt.Sprintf("gateway RSS %s > 150 MB", mb(g)))
				}
				return all(ok2xx(m), verdict(why))
			},
		},
	}, liveScenarios()...)
}

// A check is a pass or a reason.
type check struct {
	ok  bool
	why string
}

func verdict(why []string) check { return check{len(why) == 0, strings.Join(why, ", ")} }

func all(cs ...check) (bool, string) {
	var why []string
	for _, c := range cs {
		if !c.ok {
			why = append(why, c.why)
		}
	}
	return len(why) == 0, strings.Join(why, "; ")
}

func ok2xx(m Measurement) check {
	var why []string
	if n := m.Non2xx(); n > 0 {
		why = append(why, fmt.Sprintf("%d non-2xx", n))
	}
	if n := m.ErrorCount(); n > 0 {
		why = append(why, fmt.Sprintf("%d without answer", n))
	}
	if m.Requests == 0 {
		why = append(why, "no answers")
	}
	return verdict(why)
}

func fast(h *harness, m Measurement) check {
	var why []string
	if r := ratio(m.RPS, h.ceiling); r < 0.33 {
		why = append(why, fmt.Sprintf("%.0f%% of ceiling < 33%%", 100*r))
	}
	if m.P50 > 10*time.Millisecond {
		why = append(why, fmt.Sprintf("p50 %s > 10 ms", ms(m.P50)))
	}
	return verdict(why)
}

func inBudget(m Measurement) check {
	if m.CallsMax60 > budget {
		return check{false, fmt.Sprintf("%d calls in 60 s > %d", m.CallsMax60, budget)}
	}
	return check{true, ""}
}

func ratio(v, ceiling float64) float64 {
	if ceiling <= 0 {
		return 0
	}
	return v / ceiling
}

// openLoopCoins are 100 coin ids the simulator quotes, hottest first: its
// 30 built-in coins by market rank (bitcoin first), then 70 coins the
// harness lists in it with POST /_sim/coin, as it has no more of its own.
func openLoopCoins() (builtin []string, added []string) {
	builtin = []string{
		"bitcoin", "ethereum", "tether", "binancecoin", "solana", "usd-coin", "ripple", "dogecoin",
		"the-open-network", "cardano", "shiba-inu", "avalanche-2", "tron", "polkadot", "chainlink",
		"bitcoin-cash", "near", "matic-network", "litecoin", "internet-computer", "uniswap", "dai",
		"ethereum-classic", "stellar", "monero", "cosmos", "aptos", "arbitrum", "wrapped-bitcoin", "pepe",
	}
	for i := 1; len(builtin)+len(added) < 100; i++ {
		added = append(added, fmt.Sprintf("bench-coin-%02d", i))
	}
	return builtin, added
}

// simCoins lists coins in the simulator, which quotes only 30 of its own.
func simCoins(ctx context.Context, st *stackRun, ids []string) error {
	for _, id := range ids {
		body, _ := json.Marshal(map[string]string{"id": id, "symbol": strings.TrimPrefix(id, "bench-"), "name": id})
		if err := postJSON(ctx, st.SimURL+"/_sim/coin", body); err != nil {
			return err
		}
	}
	return nil
}

func runOpenLoop(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	return openLoop(ctx, h, st, h.duration(60*time.Second, 10*time.Second))
}

func openLoop(ctx context.Context, h *harness, st *stackRun, d time.Duration) (Measurement, error) {
	builtin, added := openLoopCoins()
	if err := simCoins(ctx, st, added); err != nil {
		return Measurement{}, err
	}
	var urls []string
	for _, id := range append(builtin, added...) {
		urls = append(urls, st.URL+"/v1/price/"+id)
	}
	res, err := loadgen.Run(ctx, loadgen.Config{
		URLs: urls, Rate: openLoopRate, Duration: d,
		Header:  http.Header{"Authorization": {"Bearer " + st.token}},
		Timeout: 20 * time.Second,
	})
	if err != nil {
		return Measurement{}, err
	}
	m := Measurement{
		Requests: res.Responses(), Elapsed: res.Elapsed, RPS: res.Rate, P50: res.P50, P99: res.P99,
		Status: res.Status, Errors: res.Errors,
	}
	if res.Dropped > 0 {
		m.Errors["dropped (over 10,000 in flight)"] = res.Dropped
	}
	m.Detail = fmt.Sprintf("sent %d of %d at %d/s (sender at most %s late)", res.Sent, res.Planned, openLoopRate, ms(res.MaxLag))
	return m, nil
}

func postJSON(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("benchload: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("benchload: POST %s: %s", url, resp.Status)
	}
	return nil
}

// priceAnswer is the part of a price answer the semantics check reads.
type priceAnswer struct {
	status  int
	latency time.Duration
	batch   struct {
		ID          string `json:"id"`
		Size        int    `json:"size"`
		FlushReason string `json:"flushReason"`
		Source      string `json:"source"`
	}
	err error
}

func getPrice(ctx context.Context, client *http.Client, st *stackRun, coin string) priceAnswer {
	var a priceAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL+"/v1/price/"+coin, nil)
	if err != nil {
		a.err = err
		return a
	}
	req.Header.Set("Authorization", "Bearer "+st.token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	a.latency, a.status, a.err = time.Since(start), resp.StatusCode, err
	var v struct {
		Batch json.RawMessage `json:"batch"`
	}
	if json.Unmarshal(body, &v) == nil && len(v.Batch) > 0 {
		_ = json.Unmarshal(v.Batch, &a.batch)
	}
	return a
}

// runSemantics checks the original's batching where PRICE_MAX_AGE_MS is 0:
// a lone request waits out the window, three concurrent ones flush at the
// threshold and share one upstream call.
func runSemantics(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	client := &http.Client{Timeout: 20 * time.Second}
	m := Measurement{Status: map[int]int{}, Errors: map[string]int{}, NoRate: true}
	var why []string
	record := func(a priceAnswer) {
		if a.err != nil {
			m.Errors[a.err.Error()]++
			return
		}
		m.Status[a.status]++
		m.Requests++
	}
	start := time.Now()
	lone := getPrice(ctx, client, st, "ethereum")
	record(lone)
	m.P50 = lone.latency
	if lone.err != nil || lone.status != http.StatusOK {
		why = append(why, fmt.Sprintf("lone request: %d %v", lone.status, lone.err))
	} else if lone.latency < batchWindow-200*time.Millisecond || lone.latency > batchWindow+1500*time.Millisecond || lone.batch.FlushReason != "window" {
		why = append(why, fmt.Sprintf("lone request answered in %s by %q, want the %v window", ms(lone.latency), lone.batch.FlushReason, batchWindow))
	}
	before, err := simCalls(ctx, st.SimURL)
	if err != nil {
		return m, err
	}
	three := make([]priceAnswer, 3)
	var wg sync.WaitGroup
	for i := range three {
		wg.Add(1)
		go func() {
			defer wg.Done()
			three[i] = getPrice(ctx, client, st, "solana")
		}()
	}
	wg.Wait()
	after, err := simCalls(ctx, st.SimURL)
	if err != nil {
		return m, err
	}
	batches := map[string]bool{}
	for _, a := range three {
		record(a)
		m.P99 = max(m.P99, a.latency)
		if a.err != nil || a.status != http.StatusOK {
			why = append(why, fmt.Sprintf("concurrent request: %d %v", a.status, a.err))
		}
		batches[a.batch.ID] = true
	}
	calls := len(after) - len(before)
	if calls != 1 || len(batches) != 1 {
		why = append(why, fmt.Sprintf("3 concurrent requests made %d calls in %d batches, want 1", calls, len(batches)))
	}
	m.Elapsed = time.Since(start)
	m.RPS = float64(m.Requests) / m.Elapsed.Seconds()
	m.Detail = fmt.Sprintf("lone: %s, flushed by %q; 3 concurrent: %d call(s), batch size %d, %q, slowest %s",
		ms(lone.latency), lone.batch.FlushReason, calls, three[0].batch.Size, three[0].batch.FlushReason, ms(m.P99))
	m.Why = strings.Join(why, "; ")
	return m, nil
}

// runWaiting sends every client's request at once, for 10 coins, so all of
// them wait out one batch window together, holding a connection each.
func runWaiting(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	n := h.waitingClients()
	coins := []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin", "ripple", "polkadot", "litecoin", "chainlink", "tron"}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: n,
		MaxIdleConns:        n,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 30 * time.Second, Transport: transport}
	type result struct {
		status  int
		latency time.Duration
		err     string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := getPrice(ctx, client, st, coins[i%len(coins)])
			results[i] = result{status: a.status, latency: a.latency}
			if a.err != nil {
				results[i].err = loadgenKind(a.err)
			}
		}()
	}
	wg.Wait()
	m := Measurement{Elapsed: time.Since(start), Status: map[int]int{}, Errors: map[string]int{}}
	var lat []time.Duration
	for _, r := range results {
		if r.err != "" {
			m.Errors[r.err]++
			continue
		}
		m.Status[r.status]++
		lat = append(lat, r.latency)
	}
	slices.Sort(lat)
	m.Requests = len(lat)
	m.RPS = float64(m.Requests) / m.Elapsed.Seconds()
	m.P50, m.P99 = loadgen.Percentile(lat, 50), loadgen.Percentile(lat, 99)
	m.Detail = fmt.Sprintf("%d clients at once, all answered within %s", n, ms(m.Elapsed))
	return m, nil
}

// loadgenKind buckets a client error the way loadgen does, keeping the
// table's error column short.
func loadgenKind(err error) string {
	s := err.Error()
	for _, k := range []string{"timeout", "refused", "reset", "EOF", "too many open files"} {
		if strings.Contains(s, k) {
			return strings.ToLower(k)
		}
	}
	return "other"
}

// summary is one progress line.
func summary(m Measurement, ceiling float64) string {
	return fmt.Sprintf("%.0f req/s (%.0f%%), p50 %s, p99 %s, %s, calls %d (max %d/60s), gw %s MB, fetcher %s MB, %s",
		m.RPS, 100*ratio(m.RPS, ceiling), ms(m.P50), ms(m.P99), statusText(m), m.Calls, m.CallsMax60,
		mbList(m.GatewayRSS), mbList(m.FetcherRSS), passText(m))
}
