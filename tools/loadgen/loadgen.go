// Package loadgen is an open-loop HTTP load generator: it sends requests at a
// fixed arrival rate whatever the server's response times, so a slow server
// faces the same offered load as a fast one and queueing shows up in the
// latencies instead of silently lowering the rate (what a closed-loop tool
// like wrk does). Each request is timed from the moment it was due to be
// sent, not from when it actually left, which avoids coordinated omission:
// should the generator itself fall behind, the delay counts against the
// server's latency rather than vanishing.
//
// Targets are picked from a list by a Zipf distribution (the first target
// is the hottest), as requests for coins are in practice. A run is bounded
// in count and duration and stops by itself.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Config describes one run. URLs, Rate and Duration are required.
type Config struct {
	// URLs are the targets; each request goes to one of them, chosen by a
	// Zipf distribution over their index (URLs[0] the most often).
	URLs []string
	// ZipfS is the Zipf exponent, > 1 (math/rand's Zipf needs it); 0 means
	// 1.1. With one URL it does not matter.
	ZipfS float64
	// Rate is the arrival rate in requests per second.
	Rate float64
	// Duration is how long requests keep arriving.
	Duration time.Duration
	// MaxRequests caps the count; 0 means Rate×Duration.
	MaxRequests int
	// Header is sent with every request (say Authorization).
	Header http.Header
	// Timeout bounds each request; 0 means 30 s.
	Timeout time.Duration
	// MaxInFlight bounds requests outstanding at once, so a server that
	// stops answering cannot exhaust the generator's file descriptors; a
	// request due while the bound is reached is not sent and counts as
	// Dropped. 0 means 10,000.
	MaxInFlight int
	// Seed makes the target sequence repeatable; 0 means 1.
	Seed uint64
	// Transport overrides the HTTP transport; nil means one sized for
	// MaxInFlight connections.
	Transport http.RoundTripper
}

// Result is what a run measured. Durations marshal as nanoseconds; the *Ms
// fields say the same in milliseconds for people.
type Result struct {
	// Planned is how many requests the run meant to send.
	Planned int `json:"planned"`
	// Sent is how many were sent; Dropped were due but over MaxInFlight.
	Sent    int `json:"sent"`
	Dropped int `json:"dropped"`
	// Status counts responses by HTTP status.
	Status map[int]int `json:"status"`
	// Errors counts requests that got no response, by kind (timeout,
	// refused, reset, eof, other).
	Errors map[string]int `json:"errors"`
	// Elapsed is from the first request's due time to the last answer.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Rate is responses (any status) per second of Elapsed.
	Rate float64 `json:"rate"`
	// P50, P90, P99 and Max are latencies of the requests that got a
	// response, from their due time.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// MaxLag is how late, at worst, the generator sent a request after it
	// was due: near zero means the offered rate was the configured one.
	MaxLag time.Duration `json:"max_lag_ns"`
	// Targets counts requests sent per URL index, to check the spread.
	Targets []int `json:"targets"`
}

// Responses is how many requests got an HTTP response.
func (r Result) Responses() int {
	n := 0
	for _, c := range r.Status {
		n += c
	}
	return n
}

// Non2xx counts responses outside 200..299.
func (r Result) Non2xx() int {
	n := 0
	for s, c := range r.Status {
		if s < 200 || s > 299 {
			n += c
		}
	}
	return n
}

// ErrorCount is how many requests got no response at all.
func (r Result) ErrorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// validate checks cfg and fills in its defaults.
func (cfg *Config) validate() error {
	var errs []error
	if len(cfg.URLs) == 0 {
		errs = append(errs, errors.New("at least one URL is required"))
	}
	if !(cfg.Rate > 0) {
		errs = append(errs, fmt.Errorf("rate must be positive, got %v", cfg.Rate))
	}
	if cfg.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be positive, got %v", cfg.Duration))
	}
	if cfg.MaxRequests < 0 || cfg.MaxInFlight < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("max requests, max in flight and timeout must not be negative"))
	}
	if cfg.ZipfS == 0 {
		cfg.ZipfS = 1.1
	}
	if !(cfg.ZipfS > 1) {
		errs = append(errs, fmt.Errorf("zipf exponent must be > 1, got %v", cfg.ZipfS))
	}
	if len(errs) > 0 {
		return fmt.Errorf("loadgen: %w", errors.Join(errs...))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 10_000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	return nil
}

// Planned is how many requests cfg sends: Rate×Duration, capped by
// MaxRequests.
func (cfg Config) Planned() int {
	n := int(cfg.Rate * cfg.Duration.Seconds())
	if cfg.MaxRequests > 0 {
		n = min(n, cfg.MaxRequests)
	}
	return max(n, 1)
}

// outcome is one request's result.
type outcome struct {
	status  int // 0: no response
	errKind string
	latency time.Duration
	done    time.Time
}

// Run sends the requests cfg describes and waits for every answer (each
// bounded by cfg.Timeout). Cancelling ctx stops sending and abandons the
// requests in flight; what was measured so far is returned with ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	transport := cfg.Transport
	if transport == nil {
		t := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.MaxInFlight,
			MaxIdleConnsPerHost: cfg.MaxInFlight,
			IdleConnTimeout:     30 * time.Second,
		}
		defer t.CloseIdleConnections()
		transport = t
	}
	client := &http.Client{Transport: transport, Timeout: cfg.Timeout}

	planned := cfg.Planned()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	zipf := rand.NewZipf(rng, cfg.ZipfS, 1, uint64(len(cfg.URLs)-1))

	res := Result{Planned: planned, Status: map[int]int{}, Errors: map[string]int{}, Targets: make([]int, len(cfg.URLs))}
	outcomes := make([]outcome, 0, planned)
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inFlight = make(chan struct{}, cfg.MaxInFlight)
	)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var ctxErr error
send:
	for i := range planned {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				ctxErr = ctx.Err()
				break send
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			ctxErr = ctx.Err()
			break
		}
		res.MaxLag = max(res.MaxLag, time.Since(due))
		target := int(zipf.Uint64())
		select {
		case inFlight <- struct{}{}:
		default:
			res.Dropped++
			continue
		}
		res.Sent++
		res.Targets[target]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := do(ctx, client, cfg.URLs[target], cfg.Header, due)
			<-inFlight
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}()
	}
	wg.Wait()

	var lat []time.Duration
	last := start
	for _, o := range outcomes {
		if o.status == 0 {
			res.Errors[o.errKind]++
			continue
		}
		res.Status[o.status]++
		lat = append(lat, o.latency)
		if o.done.After(last) {
			last = o.done
		}
	}
	res.Elapsed = last.Sub(start)
	if res.Elapsed > 0 {
		res.Rate = float64(len(lat)) / res.Elapsed.Seconds()
	}
	slices.Sort(lat)
	res.P50, res.P90, res.P99 = Percentile(lat, 50), Percentile(lat, 90), Percentile(lat, 99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	return res, ctxErr
}

// do sends one GET and reads its body, timing it from due.
func do(ctx context.Context, client *http.Client, url string, header http.Header, due time.Time) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return outcome{errKind: "other", done: time.Now()}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err == nil {
		// The answer counts once it has fully arrived.
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	now := time.Now()
	if err != nil {
		return outcome{errKind: errorKind(err), done: now}
	}
	return outcome{status: resp.StatusCode, latency: now.Sub(due), done: now}
}

// errorKind names why a request got no response, in a few buckets people
// can act on.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "other"
}

// Percentile returns the p-th percentile (nearest rank) of sorted, or 0 for
// an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
