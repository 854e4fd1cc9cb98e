package chaos

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// documented are the statuses GET /v1/price/{coinId} may answer.
var documented = map[int]bool{200: true, 400: true, 401: true, 404: true, 429: true, 502: true, 503: true, 504: true}

// Growth tolerances: the last period's median may exceed the first's by
// this factor plus this much before it counts as growing.
const (
	growFactor     = 1.5
	growGoroutines = 25
	growRSS        = 32 << 20
)

// Report is what a soak saw and what it concluded.
type Report struct {
	Config  Config
	Timeout time.Duration // BATCH_RESULT_TIMEOUT_MS
	Bound   time.Duration // longest acceptable wait
	Allow   time.Duration // recovery allowance after a fault's end
	LogDir  string

	LoadStart, LoadEnd time.Time
	Windows            []Window
	Records            []Record
	Samples            []Sample
	Drain              DrainState
	Rows               []Row
	DBErr, CloseErr    error

	// Filled by check.
	Violations []string
	faultStats map[Kind]*kindStats
	lost       []string // batch ids lost without excuse
	excused    []string // lost to an empty Redis restart during a Postgres outage
	doubled    []string
	mismatched []string
	batches    int
	notFresh   int
	growth     []string
	compared   int
}

type kindStats struct {
	runs, requests int
	failures       map[int]int
	sole           map[int]int // failures overlapping no other fault
	recovery       []time.Duration
	unmeasured     int // the next fault came first
}

// Failed reports whether the soak found any violation.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// answeredBatches lists the batches that answered a 200 with a price
// fetched for them (a snapshot or a stale price has no row of its own).
func (r *Report) answeredBatches() []string {
	seen := map[string]bool{}
	var out []string
	for _, rec := range r.Records {
		if rec.Status == http.StatusOK && fresh(rec) && rec.BatchID != "" && !seen[rec.BatchID] {
			seen[rec.BatchID] = true
			out = append(out, rec.BatchID)
		}
	}
	return out
}

func fresh(rec Record) bool { return !rec.Stale && (rec.Source == "" || rec.Source == "coingecko") }

// at says when a moment was, relative to the start of the load.
func (r *Report) at(t time.Time) string { return fmt.Sprintf("+%.1fs", t.Sub(r.LoadStart).Seconds()) }

// check applies every invariant.
func (r *Report) check() {
	r.checkRequests()
	r.checkRecords()
	r.checkDrain()
	r.checkGrowth()
	for _, w := range r.Windows {
		if w.Err != nil {
			r.violate("fault %d (%s on %s at %s): repair failed: %v", w.N, w.Kind, w.Target, r.at(w.Start), firstLine(w.Err))
		}
	}
	if r.CloseErr != nil {
		r.violate("stopping the stack (SIGTERM must exit 0): %v", firstLine(r.CloseErr))
	}
	if len(r.Records) == 0 {
		r.violate("no requests were made")
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (r *Report) windowsOf(rec Record) []Window {
	var out []Window
	for _, w := range r.Windows {
		if w.covers(rec.Start, rec.End) {
			out = append(out, w)
		}
	}
	return out
}

func (r *Report) checkRequests() {
	r.faultStats = map[Kind]*kindStats{}
	for _, k := range Kinds {
		r.faultStats[k] = &kindStats{failures: map[int]int{}, sole: map[int]int{}}
	}
	for _, w := range r.Windows {
		r.faultStats[w.Kind].runs++
	}
	const maxListed = 10
	listed := 0
	bad := func(rec Record, why string) {
		if listed < maxListed {
			r.violate("request %s %s (client %d, %s, took %s via %s): %s",
				r.at(rec.Start), rec.Coin, rec.Client, statusText(rec), rec.Took().Round(time.Millisecond), orDash(rec.Instance), why)
		} else if listed == maxListed {
			r.violate("... more request violations; the soak's records hold them all")
		}
		listed++
	}
	for _, rec := range r.Records {
		ws := r.windowsOf(rec)
		for _, w := range ws {
			st := r.faultStats[w.Kind]
			st.requests++
			if rec.Status != http.StatusOK {
				st.failures[rec.Status]++
				if len(ws) == 1 {
					st.sole[rec.Status]++
				}
			}
		}
		if rec.Took() > r.Bound {
			bad(rec, fmt.Sprintf("waited longer than BATCH_RESULT_TIMEOUT_MS + 1 s (%s)%s", r.Bound, inWindows(ws)))
		}
		switch {
		case rec.Status == 0 || rec.Err != "":
			bad(rec, "no JSON answer: "+rec.Err+inWindows(ws))
		case !documented[rec.Status]:
			bad(rec, "status not documented for the price route"+inWindows(ws))
		case rec.Status == http.StatusOK:
		case rec.Status == 400 || rec.Status == 401 || rec.Status == 404:
			bad(rec, "a valid request for a known coin with a valid token was refused: "+rec.Message)
		case rec.Status == http.StatusTooManyRequests:
			if !slices.ContainsFunc(ws, func(w Window) bool { return w.Kind == Upstream429 }) {
				bad(rec, "429 outside every upstream-429 window (the user throttle is lifted): "+rec.Message+inWindows(ws))
			}
		default: // 502, 503, 504
			if len(ws) == 0 {
				bad(rec, "5xx outside every fault window: "+rec.Message)
			}
		}
	}
	// Recovery: from a fault's last repair to the answer of the first
	// probe sent after it that got a 200; not measured when the next fault
	// began before that answer.
	for i, w := range r.Windows {
		st := r.faultStats[w.Kind]
		for _, rec := range r.Records {
			if rec.Client != probeClient || rec.Start.Before(w.End) || rec.Status != http.StatusOK {
				continue
			}
			if i+1 < len(r.Windows) && rec.End.After(r.Windows[i+1].Start) {
				st.unmeasured++
			} else {
				st.recovery = append(st.recovery, rec.End.Sub(w.End))
			}
			break
		}
	}
}

func inWindows(ws []Window) string {
	if len(ws) == 0 {
		return " [no fault]"
	}
	var names []string
	for _, w := range ws {
		names = append(names, fmt.Sprintf("#%d %s", w.N, w.Kind))
	}
	return " [during " + strings.Join(names, ", ") + "]"
}

func statusText(rec Record) string {
	if rec.Status == 0 {
		return "no answer"
	}
	return strconv.Itoa(rec.Status)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Report) checkRecords() {
	if r.DBErr != nil {
		r.violate("reading price_records: %v", r.DBErr)
		return
	}
	rows := map[string][]Row{}
	for _, row := range r.Rows {
		rows[row.BatchID] = append(rows[row.BatchID], row)
	}
	first := map[string]Record{} // batch → its earliest 200
	for _, rec := range r.Records {
		if rec.Status != http.StatusOK {
			continue
		}
		if !fresh(rec) {
			r.notFresh++
			continue
		}
		if rec.BatchID == "" {
			r.violate("a 200 for %s at %s carries no batch id", rec.Coin, r.at(rec.Start))
			continue
		}
		if f, ok := first[rec.BatchID]; !ok || rec.End.Before(f.End) {
			first[rec.BatchID] = rec
		}
		if got := rows[rec.BatchID]; len(got) == 1 && (got[0].Coin != rec.Coin || !samePrice(got[0].Price, rec.Price)) {
			r.mismatched = append(r.mismatched, rec.BatchID)
			if len(r.mismatched) <= 5 {
				r.violate("batch %s answered %s %s at %s, but its row says %s %s", rec.BatchID, rec.Coin, rec.Price, r.at(rec.End), got[0].Coin, got[0].Price)
			}
		}
	}
	r.batches = len(first)
	ids := make([]string, 0, len(first))
	for id := range first {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		switch n := len(rows[id]); {
		case n == 1:
		case n > 1:
			r.doubled = append(r.doubled, id)
			r.violate("batch %s has %d price_records rows", id, n)
		default:
			rec := first[id]
			if r.queuedAtEmptyRestart(rec.End) {
				r.excused = append(r.excused, id)
				continue
			}
			r.lost = append(r.lost, id)
			if len(r.lost) <= 10 {
				r.violate("batch %s (%s, answered 200 at %s%s) has no price_records row", id, rec.Coin, r.at(rec.End), inWindows(r.windowsOf(rec)))
			}
		}
	}
}

// persistRetry is how soon after Postgres is back a queued record is
// written: the fetchers' persister retries a failed write after 1 s; one
// retry and some slack.
const persistRetry = 2 * time.Second

// queuedAtEmptyRestart reports whether a price answered at t was, by
// design, only queued in Redis for a down Postgres (or one back for less
// than persistRetry) when Redis restarted empty: the one loss the outbox
// cannot prevent without Redis persistence.
func (r *Report) queuedAtEmptyRestart(t time.Time) bool {
	if r.Config.AppendOnly {
		return false
	}
	var restarts []time.Time
	for _, w := range r.Windows {
		switch {
		case w.Kind == RedisRestart:
			restarts = append(restarts, w.Start)
		case w.Kind == PostgresRedis && !w.RedisAt.IsZero():
			restarts = append(restarts, w.RedisAt)
		}
	}
	for _, p := range r.Windows {
		if p.Kind != PostgresDown && p.Kind != PostgresRedis {
			continue
		}
		queuedFrom, queuedTo := p.Start, p.End.Add(persistRetry)
		if t.Before(queuedFrom) || t.After(queuedTo) {
			continue
		}
		for _, at := range restarts {
			if !at.Before(t) && !at.After(queuedTo) {
				return true
			}
		}
	}
	return false
}

func samePrice(a, b string) bool {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return math.Abs(x-y) <= 1e-9*math.Max(math.Abs(x), math.Abs(y))
}

func (r *Report) checkDrain() {
	d := r.Drain
	if !d.Drained {
		r.violate("not drained %s after the load: pending %d, open batches %d, due %d, records queued %d, waiting clients %.0f (%v)",
			d.After.Round(time.Second), d.Pending, d.Open, d.Due, d.Records, d.Waiting, d.Err)
	}
}

// period is the length of the first and last stretch compared for growth:
// a minute, or a quarter of a shorter soak.
func (r *Report) period() time.Duration {
	return min(time.Minute, r.LoadEnd.Sub(r.LoadStart)/4)
}

type series struct{ first, last []float64 }

func (r *Report) checkGrowth() {
	p := r.period()
	firstEnd, lastStart := r.LoadStart.Add(p), r.LoadEnd.Add(-p)
	inFirst := func(s Sample) bool { return !s.At.Before(r.LoadStart) && s.At.Before(firstEnd) }
	inLast := func(s Sample) bool { return s.At.After(lastStart) && !s.At.After(r.LoadEnd) }

	// Per instance, where one process lived through both periods.
	type key struct {
		name string
		pid  int
	}
	gor, rss := map[key]*series{}, map[key]*series{}
	// Per kind, summed over the instances of a scrape round: a restarted
	// process starts fresh, so a sum only grows if something leaks.
	type kround struct {
		kind  string
		round int
	}
	sums := map[kround]float64{}
	when := map[kround]time.Time{}
	for _, s := range r.Samples {
		k := key{s.Name, s.Pid}
		for _, m := range []struct {
			into map[key]*series
			v    float64
		}{{gor, s.Goroutines}, {rss, s.RSS}} {
			if m.into[k] == nil {
				m.into[k] = &series{}
			}
			if inFirst(s) {
				m.into[k].first = append(m.into[k].first, m.v)
			}
			if inLast(s) {
				m.into[k].last = append(m.into[k].last, m.v)
			}
		}
		kr := kround{kindOf(s.Name), s.Round}
		sums[kr] += s.Goroutines
		when[kr] = s.At
	}
	keys := make([]key, 0, len(gor))
	for k := range gor {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name < keys[j].name })
	for _, k := range keys {
		g, m := gor[k], rss[k]
		if len(g.first) < 3 || len(g.last) < 3 {
			continue
		}
		r.compared++
		g0, g1, m0, m1 := median(g.first), median(g.last), median(m.first), median(m.last)
		line := fmt.Sprintf("%s (pid %d): goroutines %.0f → %.0f, RSS %.1f → %.1f MiB", k.name, k.pid, g0, g1, m0/(1<<20), m1/(1<<20))
		r.growth = append(r.growth, line)
		if g1 > g0*growFactor+growGoroutines || m1 > m0*growFactor+growRSS {
			r.violate("%s kept growing (first vs last %s, medians)", line, p.Round(time.Second))
		}
	}
	kinds := map[string]*series{}
	for kr, v := range sums {
		if kinds[kr.kind] == nil {
			kinds[kr.kind] = &series{}
		}
		at := when[kr]
		if !at.Before(r.LoadStart) && at.Before(firstEnd) {
			kinds[kr.kind].first = append(kinds[kr.kind].first, v)
		}
		if at.After(lastStart) && !at.After(r.LoadEnd) {
			kinds[kr.kind].last = append(kinds[kr.kind].last, v)
		}
	}
	for _, kind := range []string{"auth", "gateway", "fetcher"} {
		s := kinds[kind]
		if s == nil || len(s.first) < 3 || len(s.last) < 3 {
			r.violate("too few /metrics samples of the %ss to judge growth", kind)
			continue
		}
		n := float64(r.instances(kind))
		g0, g1 := median(s.first), median(s.last)
		line := fmt.Sprintf("all %ss: goroutines %.0f → %.0f", kind, g0, g1)
		r.growth = append(r.growth, line)
		if g1 > g0*growFactor+growGoroutines*n {
			r.violate("%s kept growing (first vs last %s, medians of the sum)", line, p.Round(time.Second))
		}
	}
}

func (r *Report) instances(kind string) int {
	switch kind {
	case "gateway":
		return r.Config.Gateways
	case "fetcher":
		return r.Config.Fetchers
	}
	return 1
}

func kindOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		return name[:i]
	}
	return name
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func durMedian(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// Write prints the report.
func (r *Report) Write(w io.Writer) {
	c := r.Config
	aof := "no (restarts come back empty)"
	if c.AppendOnly {
		aof = "yes (restarts reload the append-only file)"
	}
	fmt.Fprintf(w, "# chaos soak: seed %d, load %s (planned %s), Redis appendonly %s\n", c.Seed, r.LoadEnd.Sub(r.LoadStart).Round(time.Second), c.Duration, aof)
	fmt.Fprintf(w, "topology: nginx, 1 auth, %d gateways, %d fetchers, redis-server, PostgreSQL 15, cgsim; %d clients over %d coins, plus a probe request every 250 ms\n",
		c.Gateways, c.Fetchers, c.Clients, c.Coins)
	var env []string
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	fmt.Fprintf(w, "settings: %s\n", strings.Join(env, " "))
	fmt.Fprintf(w, "bounds: wait <= %s (BATCH_RESULT_TIMEOUT_MS + 1 s); a failure belongs to a fault if the request overlaps [start, end + %s] (BATCH_LEASE_MS + 2 s; + Retry-After for 429)\n\n", r.Bound, r.Allow)

	byStatus := map[string]int{}
	var took []time.Duration
	for _, rec := range r.Records {
		byStatus[statusText(rec)]++
		took = append(took, rec.Took())
	}
	slices.Sort(took)
	fmt.Fprintf(w, "requests: %d (%.1f/s); by status: %s\n", len(r.Records), float64(len(r.Records))/r.LoadEnd.Sub(r.LoadStart).Seconds(), countList(byStatus))
	if len(took) > 0 {
		fmt.Fprintf(w, "wait: p50 %s, p99 %s, max %s\n", took[len(took)/2].Round(time.Millisecond), took[len(took)*99/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	}

	fmt.Fprintf(w, "\nfaults as run (times from the start of the load):\n")
	fmt.Fprintf(w, "  %-3s %-8s %-31s %-34s %-7s %-8s %-9s %s\n", "#", "start", "kind", "target", "hold", "took", "requests", "failures")
	for _, win := range r.Windows {
		reqs, fails := 0, map[string]int{}
		for _, rec := range r.Records {
			if win.covers(rec.Start, rec.End) {
				reqs++
				if rec.Status != http.StatusOK {
					fails[statusText(rec)]++
				}
			}
		}
		hold := "-"
		if win.Hold > 0 {
			hold = win.Hold.String()
		}
		fmt.Fprintf(w, "  %-3d %-8s %-31s %-34s %-7s %-8s %-9d %s%s\n", win.N, r.at(win.Start), win.Kind, win.Target, hold,
			win.End.Sub(win.Start).Round(100*time.Millisecond), reqs, orDash(countList(fails)), errSuffix(win.Err))
	}

	fmt.Fprintf(w, "\nper fault kind (a request overlapping two faults counts for both):\n")
	fmt.Fprintf(w, "  %-31s %-5s %-9s %-28s %-28s %s\n", "kind", "runs", "requests", "failures by status", "of which no other fault", "recovery (first probe 200 after repair) median / max")
	for _, k := range Kinds {
		st := r.faultStats[k]
		fails, sole := map[string]int{}, map[string]int{}
		for s, n := range st.failures {
			fails[strconv.Itoa(s)] = n
		}
		for s, n := range st.sole {
			sole[strconv.Itoa(s)] = n
		}
		rec := "-"
		if len(st.recovery) > 0 {
			rec = fmt.Sprintf("%s / %s", durMedian(st.recovery).Round(time.Millisecond), slices.Max(st.recovery).Round(time.Millisecond))
		}
		if st.unmeasured > 0 {
			rec += fmt.Sprintf(" (%d not measured: the next fault came first)", st.unmeasured)
		}
		fmt.Fprintf(w, "  %-31s %-5d %-9d %-28s %-28s %s\n", k, st.runs, st.requests, orDash(countList(fails)), orDash(countList(sole)), rec)
	}

	fmt.Fprintf(w, "\nprice_records: %d batches answered 200 with a fresh price; rows found %d; lost %d; doubled %d; price differs %d",
		r.batches, r.batches-len(r.lost)-len(r.excused), len(r.lost), len(r.doubled), len(r.mismatched))
	fmt.Fprintf(w, "; lost to an empty Redis restart while queued for a down Postgres (counted apart) %d", len(r.excused))
	if r.notFresh > 0 {
		fmt.Fprintf(w, "; %d answers were snapshot or stale (no row of their own)", r.notFresh)
	}
	fmt.Fprintln(w)
	d := r.Drain
	state := "drained"
	if !d.Drained {
		state = "NOT drained"
	}
	fmt.Fprintf(w, "after the load: %s in %s (pending %d, open batches %d, due %d, records queued %d, waiting clients %.0f)\n",
		state, d.After.Round(10*time.Millisecond), d.Pending, d.Open, d.Due, d.Records, d.Waiting)
	fmt.Fprintf(w, "growth, first vs last %s (median; %d instances lived through both):\n", r.period().Round(time.Second), r.compared)
	for _, g := range r.growth {
		fmt.Fprintf(w, "  %s\n", g)
	}
	if r.Failed() {
		fmt.Fprintf(w, "\nVIOLATIONS (%d):\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  - %s\n", v)
		}
		fmt.Fprintf(w, "service logs: %s\n", r.LogDir)
	} else {
		fmt.Fprintf(w, "\nviolations: none\n")
	}
}

// countList renders {"200": 5, "502": 1} as "200: 5, 502: 1".
func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
