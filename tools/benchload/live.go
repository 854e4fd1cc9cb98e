package benchload

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/tools/loadgen"
)

// liveCoins are the 10 coins the stream clients follow, one each.
var liveCoins = []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin", "ripple", "polkadot", "litecoin", "chainlink", "tron"}

// liveEnv makes every request its own fetch, so the harness sets the pace
// of updates: a batch flushes at its first request, with no budget.
var liveEnv = map[string]string{
	"COINGECKO_RATE_LIMIT": "0",
	"BATCH_THRESHOLD":      "1",
	// The clients of a coin are one user (see liveRun.tokens): up to 1,000
	// streams each, plus the slots of a killed gateway's streams, which
	// lapse only after three heartbeats.
	"STREAMS_PER_USER": "10000",
}

// updatePeriod is how often the generator asks for each coin once: 10
// updates a second over the 10 coins.
const updatePeriod = time.Second

// streamTarget is the delivery p99 the issue asks for.
const streamTarget = 100 * time.Millisecond

func (h *harness) streamClients() int {
	switch {
	case h.opts.StreamClients > 0:
		return h.opts.StreamClients
	case h.opts.Quick:
		return 1000
	}
	return 10_000
}

func (h *harness) failoverClients() int {
	if h.opts.Quick {
		return 200
	}
	return 1000
}

// liveScenarios are the live-price targets: hot reads, many streams, and
// a gateway killed under streaming clients.
func liveScenarios() []Scenario {
	return []Scenario{
		{
			Name: "hot", Title: "hot coin, PRICE_MAX_AGE_MS=60000 (gateway hot reads), -c64",
			Env:          map[string]string{"COINGECKO_RATE_LIMIT": fmt.Sprint(budget), "PRICE_MAX_AGE_MS": "60000"},
			SimRateLimit: 1000,
			Target:       "0 non-2xx, ≥ 50% of ceiling, answered from the feed copy, ≤ 30 calls in any 60 s",
			run:          runHot,
			check: func(h *harness, m Measurement) (bool, string) {
				var why []string
				if r := ratio(m.RPS, h.ceiling); r < 0.5 {
					why = append(why, fmt.Sprintf("%.0f%% of ceiling < 50%%", 100*r))
				}
				if m.Why != "" {
					why = append(why, m.Why)
				}
				return all(ok2xx(m), inBudget(m), verdict(why))
			},
		},
		{
			Name: "stream", Title: "stream clients over 2 gateways, 1 of 10 coins each (p50/p99: fetch → client)",
			Env:    liveEnv,
			Target: "every client gets every update (missed 0), delivery p99 ≤ 100 ms, RSS ≤ 150 MB per gateway, XREAD and other Redis commands per update flat from 100 to N clients",
			run:    runStream,
			check: func(h *harness, m Measurement) (bool, string) {
				var why []string
				if m.P99 > streamTarget {
					w := fmt.Sprintf("delivery p99 %s > %s", ms(m.P99), ms(streamTarget))
					if m.Floor > 0 {
						w += fmt.Sprintf(" (this machine's floor for the same burst, bare servers behind the same nginx: p99 %s)", ms(m.Floor))
					}
					why = append(why, w)
				}
				if g := m.MaxGatewayRSS(); g > 150<<20 {
					why = append(why, fmt.Sprintf("gateway RSS %s > 150 MB", mb(g)))
				}
				if m.Why != "" {
					why = append(why, m.Why)
				}
				return all(ok2xx(m), verdict(why))
			},
		},
		{
			Name: "failover", Title: "gateway SIGKILLed under stream clients, reconnect via nginx",
			Env:    liveEnv,
			Target: "every client back through nginx with Last-Event-ID, 0 updates missed (gaps counted per client)",
			run:    runFailover,
			check: func(h *harness, m Measurement) (bool, string) {
				return all(ok2xx(m), check{m.Why == "", m.Why})
			},
		},
	}
}

// runHot warms the coin once, then drives the hot read with wrk.
func runHot(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	client := &http.Client{Timeout: 20 * time.Second}
	if a := getPrice(ctx, client, st, hotCoin); a.err != nil || a.status != http.StatusOK {
		return Measurement{}, fmt.Errorf("warming %s: %d %v", hotCoin, a.status, a.err)
	}
	// Both gateways read the warming fetch off the feed, which the fetcher
	// appends to after it answers: a request that reaches the other gateway
	// first is batched (answered from the snapshot when its window ends, 5 s
	// later). Give the feed a moment, then ask through nginx until 4 answers
	// in a row come from a gateway's copy, for up to 15 s.
	time.Sleep(200 * time.Millisecond)
	sources := map[string]int{}
	for inRow, deadline := 0, time.Now().Add(15*time.Second); inRow < 4 && time.Now().Before(deadline); {
		a := getPrice(ctx, client, st, hotCoin)
		sources[a.batch.Source]++
		if a.batch.Source == price.SourceFeed {
			inRow++
		} else {
			inRow = 0
			time.Sleep(10 * time.Millisecond)
		}
	}
	m, err := runWrk(ctx, h.wrk, st.dir, wrkRun{
		URL: st.URL + "/v1/price/" + hotCoin, Header: "Authorization: Bearer " + st.token,
		Connections: 64, Duration: h.duration(30*time.Second, 5*time.Second),
	})
	if err != nil {
		return m, err
	}
	if sources[price.SourceFeed] < 4 {
		m.Why = fmt.Sprintf("after warming, answers came from %v, want 4 in a row from the feed copy", sources)
	}
	m.Detail = fmt.Sprintf("warmed by 1 request, then batch.source of answers until 4 in a row came from the feed: %v; %.0f req/s = %.0f%% of /health", sources, m.RPS, 100*ratio(m.RPS, h.ceiling))
	return m, nil
}

// liveRun is the shared machinery of the stream scenarios.
type liveRun struct {
	st     *stackRun
	rdb    *redis.Client
	target sseTarget
	// tokens are one user's per coin, signed with the stack's secret: a
	// user holds at most STREAMS_PER_USER streams, and 10,000 are more
	// than one user may open.
	tokens  map[string]string
	clients []*sseClient
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	ctx     context.Context
	gen     genStats
}

func newLiveRun(ctx context.Context, st *stackRun) (*liveRun, error) {
	opt, err := redis.ParseURL(st.RedisURL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(st.URL)
	if err != nil {
		return nil, err
	}
	iss, err := jwtauth.NewIssuer(st.JWTSecret, "1h", nil)
	if err != nil {
		return nil, err
	}
	tokens := map[string]string{}
	for _, coin := range liveCoins {
		if tokens[coin], err = iss.Issue("bench-"+coin, "bench-"+coin); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	return &liveRun{
		st: st, rdb: redis.NewClient(opt), ctx: cctx, cancel: cancel, tokens: tokens,
		target: sseTarget{addr: u.Host, dials: make(chan struct{}, 128), reconnect: true},
		gen:    genStats{status: map[int]int{}, errors: map[string]int{}},
	}, nil
}

// close ends every client and waits for them; it may be called again.
func (l *liveRun) close() {
	l.cancel()
	l.wg.Wait()
	if l.rdb != nil {
		_ = l.rdb.Close()
		l.rdb = nil
	}
}

// open adds clients until there are n, and waits until each has its
// stream (or 2 minutes). It returns how many are not connected.
func (l *liveRun) open(n int) int {
	start := len(l.clients)
	for i := start; i < n; i++ {
		coin := liveCoins[i%len(liveCoins)]
		c := newSSEClient(coin, l.tokens[coin])
		l.clients = append(l.clients, c)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c.run(l.ctx, l.target)
		}()
	}
	deadline := time.After(2 * time.Minute)
	missing := 0
	for _, c := range l.clients[start:] {
		select {
		case <-c.connected:
		case <-deadline:
			missing++
		case <-l.ctx.Done():
			missing++
		}
	}
	return missing
}

// genStats are the answers to the generator's requests.
type genStats struct {
	mu     sync.Mutex
	sent   int
	status map[int]int
	errors map[string]int
}

// generate asks for each coin once per updatePeriod for d, through nginx:
// with liveEnv each request is one fetch and one update. All coins are
// asked at once (every client's update lands in the same instant, the
// hardest case for delivery), unless staggered: then the coins are asked
// evenly spread over the period, the same 10 updates a second. during,
// when set, runs once at the given offset.
func (l *liveRun) generate(ctx context.Context, d time.Duration, staggered bool, at time.Duration, during func()) {
	client := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	tick := time.NewTicker(updatePeriod)
	defer tick.Stop()
	end := time.After(d)
	var fired <-chan time.Time
	if during != nil {
		fired = time.After(at)
	}
	round := func() {
		for i, coin := range liveCoins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if staggered {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Duration(i) * updatePeriod / time.Duration(len(liveCoins))):
					}
				}
				a := getPrice(ctx, client, l.st, coin)
				l.gen.mu.Lock()
				defer l.gen.mu.Unlock()
				l.gen.sent++
				if a.err != nil {
					l.gen.errors[loadgenKind(a.err)]++
					return
				}
				l.gen.status[a.status]++
			}()
		}
	}
	round()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-fired:
			during()
		case <-tick.C:
			round()
		}
	}
	wg.Wait()
}

// newest is the feed's newest id, 0-0 when it is empty.
func (l *liveRun) newest(ctx context.Context) (pricefeed.ID, error) {
	msgs, err := l.rdb.XRevRangeN(ctx, pricefeed.Key, "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return pricefeed.ID{}, err
	}
	return pricefeed.ParseID(msgs[0].ID)
}

// updatesAfter are the feed's ids after from, by coin, oldest first.
func (l *liveRun) updatesAfter(ctx context.Context, from pricefeed.ID) (map[string][]pricefeed.ID, int, error) {
	msgs, err := l.rdb.XRange(ctx, pricefeed.Key, "("+from.String(), "+").Result()
	if err != nil {
		return nil, 0, err
	}
	want := map[string][]pricefeed.ID{}
	for _, m := range msgs {
		id, err := pricefeed.ParseID(m.ID)
		if err != nil {
			return nil, 0, err
		}
		coin, _ := m.Values["coin"].(string)
		want[coin] = append(want[coin], id)
	}
	return want, len(msgs), nil
}

// commandStats is INFO commandstats: calls by command.
func (l *liveRun) commandStats(ctx context.Context) (map[string]int, error) {
	info, err := l.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(v)
			}
		}
	}
	return calls, nil
}

// redisPerUpdate is the Redis commands of one generation window, per
// update. Streams cost Redis work by time too (each gateway renews its
// streams' slots every heartbeat, once per user streaming, and its feed read
// times out every second when idle), so an idle window of the same length
// with the same clients is counted as well: the difference is the work the
// updates caused.
type redisPerUpdate struct {
	clients, updates int
	idle, active     map[string]int
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// total is every command of the window with updates, per update.
func (r redisPerUpdate) total() float64 {
	return float64(sum(r.active)) / float64(max(1, r.updates))
}

// marginal is the commands the updates added to the idle window's, per
// update.
func (r redisPerUpdate) marginal() float64 {
	return float64(sum(r.active)-sum(r.idle)) / float64(max(1, r.updates))
}

// slotCommands are what the stream slots' renewal script runs (one per
// gateway per heartbeat, a few users to a call; before 8ebc5a6 one per
// stream): counted by time, not by update. Other services use
// them too, so this leaves some per-update work out, the same at any
// client count.
var slotCommands = []string{"evalsha", "time", "zadd", "pexpire"}

// others is the busy window's commands other than slotCommands, per
// update: nothing else a stream does scales with the clients, so this
// stays flat when the feed is read once per gateway, even on a machine
// too loaded for the idle window to hold the same renewals as the busy one.
func (r redisPerUpdate) others() float64 {
	n := 0
	for c, v := range r.active {
		if !slices.Contains(slotCommands, c) {
			n += v
		}
	}
	return float64(n) / float64(max(1, r.updates))
}

func (r redisPerUpdate) per(cmd string) float64 {
	return float64(r.active[cmd]) / float64(max(1, r.updates))
}

// top lists the commands the updates added the most of, per update.
func (r redisPerUpdate) top(n int) string {
	added := map[string]int{}
	for c, v := range r.active {
		added[c] = v - r.idle[c]
	}
	cmds := slices.Collect(maps.Keys(added))
	slices.SortFunc(cmds, func(a, b string) int { return added[b] - added[a] })
	var parts []string
	for _, c := range cmds[:min(n, len(cmds))] {
		parts = append(parts, fmt.Sprintf("%s %.1f", c, float64(added[c])/float64(max(1, r.updates))))
	}
	return strings.Join(parts, ", ")
}

// commandDelta is the calls by command while do ran.
func (l *liveRun) commandDelta(ctx context.Context, do func()) (map[string]int, error) {
	before, err := l.commandStats(ctx)
	if err != nil {
		return nil, err
	}
	do()
	after, err := l.commandStats(ctx)
	if err != nil {
		return nil, err
	}
	delta := map[string]int{}
	for k, v := range after {
		if v > before[k] {
			delta[k] = v - before[k]
		}
	}
	return delta, nil
}

// streamHeartbeat is the gateways' default STREAM_HEARTBEAT_MS.
const streamHeartbeat = 15 * time.Second

// redisWindow is how long each Redis counting window lasts: a whole
// number of heartbeats (STREAM_HEARTBEAT_MS, 15 s), so an idle and a busy
// window hold the same slot renewals.
func (h *harness) redisWindow() time.Duration {
	if h.opts.Quick {
		return streamHeartbeat
	}
	return 2 * streamHeartbeat
}

// measureRedis counts Redis commands over an idle window, then over a
// window of the generator's updates, and returns the feed id the updates
// came after.
func (l *liveRun) measureRedis(ctx context.Context, d time.Duration) (redisPerUpdate, pricefeed.ID, error) {
	r := redisPerUpdate{clients: len(l.clients)}
	// Streams opened together beat together: start half a heartbeat
	// later, so no burst of renewals sits on a window's edge.
	select {
	case <-ctx.Done():
	case <-time.After(streamHeartbeat / 2):
	}
	var err error
	r.idle, err = l.commandDelta(ctx, func() {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	})
	if err != nil {
		return r, pricefeed.ID{}, err
	}
	from, err := l.newest(ctx)
	if err != nil {
		return r, from, err
	}
	if r.active, err = l.commandDelta(ctx, func() { l.generate(ctx, d, false, 0, nil) }); err != nil {
		return r, from, err
	}
	_, r.updates, err = l.updatesAfter(ctx, from)
	return r, from, err
}

// settle waits until every client holds the newest update of its coin (or
// 20 s), and returns the updates after from by coin.
func (l *liveRun) settle(ctx context.Context, from pricefeed.ID) (map[string][]pricefeed.ID, int, error) {
	want, n, err := l.updatesAfter(ctx, from)
	if err != nil {
		return nil, 0, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for !caughtUp(l.clients, want) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	return want, n, nil
}

// measurement turns a tally into the table's cells: delivered events are
// the requests, connected clients the 200s.
func (l *liveRun) measurement(t tally, notConnected int, elapsed time.Duration) Measurement {
	m := Measurement{Requests: t.delivered, Elapsed: elapsed, NoRate: true, Status: map[int]int{}, Errors: map[string]int{}}
	for _, c := range l.clients {
		c.mu.Lock()
		switch {
		case c.connects > 0:
			m.Status[http.StatusOK]++
		case c.status != 0:
			m.Status[c.status]++
		}
		c.mu.Unlock()
	}
	if notConnected > 0 {
		m.Errors["stream not opened"] = notConnected
	}
	slices.Sort(t.latencies)
	m.P50, m.P99 = loadgen.Percentile(t.latencies, 50), loadgen.Percentile(t.latencies, 99)
	slices.Sort(t.toFeed)
	feedP50, feedP99 := loadgen.Percentile(t.toFeed, 50), loadgen.Percentile(t.toFeed, 99)
	m.Detail = fmt.Sprintf("of the delivery latency, fetch → on the feed (XADD, the event id's Redis time): p50 %s, p99 %s; ", ms(feedP50), ms(feedP99))
	var why []string
	if t.missed > 0 {
		why = append(why, fmt.Sprintf("%d updates missed by %d clients", t.missed, t.clientsMissing))
	}
	if t.duplicates > 0 || t.disordered > 0 {
		why = append(why, fmt.Sprintf("%d duplicates, %d out of order", t.duplicates, t.disordered))
	}
	m.Why = strings.Join(why, "; ")
	return m
}

// runStream opens 100 streams, counts Redis commands per update, opens the
// rest up to N, counts again and checks every client got every update.
func runStream(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	n := h.streamClients()
	l, err := newLiveRun(ctx, st)
	if err != nil {
		return Measurement{}, err
	}
	defer l.close()
	phase := h.redisWindow()

	missing := l.open(min(100, n))
	small, _, err := l.measureRedis(ctx, phase)
	if err != nil {
		return Measurement{}, err
	}
	opening := time.Now()
	missing += l.open(n)
	opened := time.Since(opening)
	fds := nginxWorkerFDs(st.Nginx.Pid())

	start := time.Now()
	large, from, err := l.measureRedis(ctx, phase)
	if err != nil {
		return Measurement{}, err
	}
	want, updates, err := l.settle(ctx, from)
	if err != nil {
		return Measurement{}, err
	}
	t := count(l.clients, from, want)
	m := l.measurement(t, missing, time.Since(start))

	// The same rate with the coins' updates spread over each second: how
	// delivery fares when not every client's update lands at once.
	from2, err := l.newest(ctx)
	if err != nil {
		return Measurement{}, err
	}
	l.generate(ctx, phase/2, true, 0, nil)
	want2, updates2, err := l.settle(ctx, from2)
	if err != nil {
		return Measurement{}, err
	}
	t2 := count(l.clients, from2, want2)
	slices.Sort(t2.latencies)

	// The machine's floor for the same burst, the stack's clients closed
	// first: the harness may hold only so many descriptors.
	l.close()
	floor, ferr := h.measureFloor(ctx, st, n, phase/2)

	var why []string
	if m.Why != "" {
		why = append(why, m.Why)
	}
	if updates == 0 || updates2 == 0 {
		why = append(why, "no updates")
	}
	if t2.missed > 0 || t2.duplicates > 0 || t2.disordered > 0 {
		why = append(why, fmt.Sprintf("staggered: %d updates missed by %d clients, %d duplicates, %d out of order", t2.missed, t2.clientsMissing, t2.duplicates, t2.disordered))
	}
	feedSmall, feedLarge := small.per("xread"), large.per("xread")
	if feedLarge > 1.1*feedSmall+0.05 {
		why = append(why, fmt.Sprintf("feed reads per update grew from %.2f (%d clients) to %.2f (%d)", feedSmall, small.clients, feedLarge, large.clients))
	}
	if large.others() > 1.1*small.others()+1 {
		why = append(why, fmt.Sprintf("Redis commands per update (other than %s) grew from %.1f (%d clients) to %.1f (%d)",
			strings.Join(slotCommands, "/"), small.others(), small.clients, large.others(), large.clients))
	}
	if ferr != nil {
		why = append(why, ferr.Error())
	}
	m.Why = strings.Join(why, "; ")
	m.Detail += fmt.Sprintf("%d clients (%d opened in %s), %d updates in %s (1 a second per coin), %d events delivered, "+
		"missed %d (clients missing any: %d), duplicates %d, streams ended and resumed %d, opens failed and retried %d (last error per client: %v); "+
		"Redis commands per update (busy %s window minus an idle one, same clients): %.1f at %d clients (%s), %.1f at %d clients (%s); "+
		"all commands of the busy window per update %.1f → %.1f (the rest is slot renewals: per 15 s heartbeat, one script per gateway for all its streams' slots); "+
		"per update without %s: %.1f → %.1f; XREAD per update %.2f → %.2f; "+
		"nginx descriptors per worker at %d clients: %s; generator: %s",
		n, n-min(100, n), opened.Round(time.Second), updates, phase, t.delivered, t.missed, t.clientsMissing, t.duplicates, t.ends, t.failedOpens, t.lastErrors,
		phase, small.marginal(), small.clients, small.top(4), large.marginal(), large.clients, large.top(4), small.total(), large.total(), strings.Join(slotCommands, "/"), small.others(), large.others(), feedSmall, feedLarge,
		n, fds, l.gen.text())
	m.Detail += fmt.Sprintf("; staggered (the same 10 updates a second, the coins asked %s apart, %s): %d updates, %d events, missed %d, p50 %s, p99 %s",
		updatePeriod/time.Duration(len(liveCoins)), phase/2, updates2, t2.delivered, t2.missed,
		ms(loadgen.Percentile(t2.latencies, 50)), ms(loadgen.Percentile(t2.latencies, 99)))
	m.Detail += "; " + floor.String()
	m.Floor = floor.p99
	return m, nil
}

// runFailover kills a gateway with SIGKILL while updates flow to the
// clients, and checks each got every update anyway.
func runFailover(ctx context.Context, h *harness, st *stackRun) (Measurement, error) {
	n := h.failoverClients()
	l, err := newLiveRun(ctx, st)
	if err != nil {
		return Measurement{}, err
	}
	defer l.close()
	missing := l.open(n)
	from, err := l.newest(ctx)
	if err != nil {
		return Measurement{}, err
	}
	start := time.Now()
	run, killAt := h.duration(20*time.Second, 10*time.Second), h.duration(5*time.Second, 3*time.Second)
	victim := st.Gateways[0]
	var killErr error
	l.generate(ctx, run, false, killAt, func() {
		h.logf("failover: SIGKILL %s (pid %d)", victim.Name, victim.Pid())
		killErr = victim.Kill()
	})
	if killErr != nil {
		return Measurement{}, killErr
	}
	want, updates, err := l.settle(ctx, from)
	if err != nil {
		return Measurement{}, err
	}
	t := count(l.clients, from, want)
	m := l.measurement(t, missing, time.Since(start))
	var why []string
	if m.Why != "" {
		why = append(why, m.Why)
	}
	if t.reconnected == 0 {
		why = append(why, "no client reconnected: the kill did not cut any stream")
	}
	m.Why = strings.Join(why, "; ")
	m.Detail += fmt.Sprintf("%d clients, %s SIGKILLed %s in; %d updates in %s; %d clients reconnected through nginx with Last-Event-ID (%d streams ended, %d reopen attempts failed and were retried), "+
		"missed %d (clients missing any: %d), duplicates %d, out of order %d; p50/p99 include replays after the reconnect; generator: %s",
		n, victim.Name, killAt, updates, run, t.reconnected, t.ends, t.failedOpens, t.missed, t.clientsMissing, t.duplicates, t.disordered, l.gen.text())
	return m, nil
}

// text says what the generator's requests got: a request in flight on a
// killed gateway may fail, which is not a stream client's loss.
func (g *genStats) text() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := fmt.Sprintf("%d requests", g.sent)
	for _, code := range slices.Sorted(maps.Keys(g.status)) {
		s += fmt.Sprintf(", %d×%d", code, g.status[code])
	}
	for _, k := range slices.Sorted(maps.Keys(g.errors)) {
		s += fmt.Sprintf(", %s×%d", k, g.errors[k])
	}
	return s
}

// nginxWorkerFDs counts the open descriptors of each nginx worker (the
// master's children), "9,871/10,140".
func nginxWorkerFDs(master int) string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return "?"
	}
	var counts []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command (which may hold spaces) start with
		// state, then the parent's pid.
		_, rest, ok := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 2 || f[1] != strconv.Itoa(master) {
			continue
		}
		fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		if err != nil {
			continue
		}
		counts = append(counts, strconv.Itoa(len(fds)))
	}
	if len(counts) == 0 {
		return "?"
	}
	return strings.Join(counts, "/")
}
