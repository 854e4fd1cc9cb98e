package benchload

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cryptopulse/tools/cgsim"
	"cryptopulse/tools/devstack"
)

// Measurement is what one scenario measured on one build.
type Measurement struct {
	// Requests answered (any status) over Elapsed, and their rate.
	Requests int
	Elapsed  time.Duration
	RPS      float64
	// P50 and P99 are response latencies.
	P50, P99 time.Duration
	// Status counts answers by HTTP status; Errors counts requests that got
	// no answer (timeouts, resets), by kind.
	Status map[int]int
	Errors map[string]int
	// Calls is how many calls the CoinGecko simulator received during the
	// scenario, CallsMax60 the most inside any 60 s span of them.
	Calls, CallsMax60 int
	// GatewayRSS and FetcherRSS are each instance's peak resident memory in
	// bytes, sampled every 100 ms while the scenario ran.
	GatewayRSS, FetcherRSS []int64
	// NoRate marks a measurement whose request rate means nothing (a few
	// requests timed one by one); its req/s and ratio cells show "-".
	NoRate bool
	// Floor, in the stream scenario, is the delivery p99 of bare servers
	// behind the same nginx with the same clients and burst: the most this
	// machine allows (see floor.go).
	Floor time.Duration
	// Detail says what a scenario found beyond the columns (semantics).
	Detail string
	// Pass and Why are the verdict against the scenario's target.
	Pass bool
	Why  string
	// Err is set when the scenario could not be run at all.
	Err error
}

// Non2xx counts answers outside 200..299.
func (m Measurement) Non2xx() int {
	n := 0
	for s, c := range m.Status {
		if s < 200 || s > 299 {
			n += c
		}
	}
	return n
}

// ErrorCount is how many requests got no answer.
func (m Measurement) ErrorCount() int {
	n := 0
	for _, c := range m.Errors {
		n += c
	}
	return n
}

// MaxGatewayRSS is the largest of the gateways' peaks.
func (m Measurement) MaxGatewayRSS() int64 { return maxOf(m.GatewayRSS) }

func maxOf(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// rssSampler records the peak VmRSS of each process it watches.
type rssSampler struct {
	pids []int
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	peak []int64
}

// sampleRSS starts sampling the current runs of procs every 100 ms.
func sampleRSS(procs []*devstack.Proc) *rssSampler {
	r := &rssSampler{stop: make(chan struct{}), done: make(chan struct{}), peak: make([]int64, len(procs))}
	for _, p := range procs {
		r.pids = append(r.pids, p.Pid())
	}
	go func() {
		defer close(r.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			r.sample()
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

func (r *rssSampler) sample() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, pid := range r.pids {
		if v, err := vmRSS(pid); err == nil {
			r.peak[i] = max(r.peak[i], v)
		}
	}
}

// Stop ends sampling (after one last sample) and returns the peaks.
func (r *rssSampler) Stop() []int64 {
	close(r.stop)
	<-r.done
	r.sample()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.peak)
}

// vmRSS reads a process's resident set size from /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// simCalls reads the simulator's call log.
func simCalls(ctx context.Context, simURL string) ([]cgsim.Call, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, simURL+"/_sim/calls", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("simulator call log: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("simulator call log: %s", resp.Status)
	}
	var rep cgsim.CallsReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("simulator call log: %w", err)
	}
	return rep.Log, nil
}

// maxInWindow is the most calls inside any span of length w: the sliding
// maximum a budget of "N per w" must stay under.
func maxInWindow(calls []cgsim.Call, w time.Duration) int {
	ts := make([]time.Time, len(calls))
	for i, c := range calls {
		ts[i] = c.Time
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range ts {
		// A span [t, t+w) holds the calls strictly less than w after t.
		for ts[hi].Sub(ts[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}
