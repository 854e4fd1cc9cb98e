// Package cgsim simulates the slice of the CoinGecko API that the fetcher
// uses (see docs/coingecko.md): /simple/price and friends under /api/v3,
// both hosts' key rules, a sliding-window rate limit with three 429 styles,
// injectable faults, and prices that move between cache windows but hold
// still within one. Tests embed it with httptest; the cgsim command serves it
// as a separate process, driven through the JSON routes under /_sim/.
package cgsim

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config sets up a Server. The zero value is a keyless demo host with no
// rate limit, no latency and 60 s cache windows.
type Config struct {
	// Plan is "demo" (default) or "pro": which host's key rules to apply.
	// Anything other than "pro" is treated as demo.
	Plan string
	// APIKey, if non-empty, is the only key accepted, and a key becomes
	// mandatory on demo too. Empty accepts any key (of the right plan) and
	// lets demo calls go keyless.
	APIKey string
	// RateLimit is calls per minute over a sliding 60 s window; 0 is
	// unlimited. Every call counts, errors and 429s included, as upstream.
	RateLimit int
	// RateLimitStyle is how the configured limit answers when it is hit.
	RateLimitStyle RateLimitStyle
	// Latency is added to every API response (not to /_sim control routes,
	// which would only slow the tests that drive them).
	Latency time.Duration
	// CacheWindow is how long prices hold still; default 60 s, CoinGecko's
	// demo caching.
	CacheWindow time.Duration
	// Clock drives price windows, timestamps and the rate-limit window;
	// default time.Now. Waits (latency, Slow) use real timers regardless.
	Clock func() time.Time
}

// Call is one API call as the simulator received it.
type Call struct {
	// Time is the Clock reading when the call arrived.
	Time time.Time `json:"time"`
	// Path is the request path, e.g. "/api/v3/simple/price".
	Path string `json:"path"`
	// Query is the raw query string, for assertions on optional parameters.
	Query string `json:"query,omitempty"`
	// IDs are the normalised ids asked for (simple/price only).
	IDs []string `json:"ids,omitempty"`
	// VsCurrencies are the normalised currencies asked for (simple/price only).
	VsCurrencies []string `json:"vs_currencies,omitempty"`
	// APIKey is the key presented, from header or query, if any.
	APIKey string `json:"api_key,omitempty"`
	// Status is the status sent; 0 when nothing was sent (a hung call the
	// client abandoned, or one still in flight).
	Status int `json:"status"`
}

// Server is the simulator. It implements http.Handler and is safe for
// concurrent use.
type Server struct {
	pro       bool
	apiKey    string
	rateLimit int
	style     RateLimitStyle
	latency   time.Duration
	window    time.Duration
	clock     func() time.Time

	closeOnce sync.Once
	closed    chan struct{}

	mu    sync.Mutex
	calls int
	log   []Call
	gen   uint64 // bumped by Reset so in-flight calls cannot write into a newer log
	fault Fault
	hits  []time.Time // arrival times still inside the 60 s rate window
	coins map[string]coin
	pins  map[pinKey]string
}

// New builds a Server from cfg, filling in defaults.
func New(cfg Config) *Server {
	s := &Server{
		pro:       strings.EqualFold(strings.TrimSpace(cfg.Plan), "pro"),
		apiKey:    cfg.APIKey,
		rateLimit: cfg.RateLimit,
		style:     cfg.RateLimitStyle,
		latency:   cfg.Latency,
		window:    cfg.CacheWindow,
		clock:     cfg.Clock,
		closed:    make(chan struct{}),
		coins:     make(map[string]coin),
		pins:      make(map[pinKey]string),
	}
	if s.window <= 0 {
		s.window = 60 * time.Second
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	for _, c := range builtinCoins() {
		s.coins[c.id] = c
	}
	return s
}

// ServeHTTP routes /api/v3/* to the simulated API and /_sim/* to the
// control routes; anything else is a 404 that is not counted as a call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/_sim" || strings.HasPrefix(p, "/_sim/"):
		s.serveControl(w, r)
	case p == "/api/v3" || strings.HasPrefix(p, "/api/v3/"):
		s.serveAPI(w, r)
	default:
		writeJSON(w, http.StatusNotFound, errorBody("Not found: the simulator serves /api/v3/* and /_sim/*"))
	}
}

// Calls is how many /api/v3 calls arrived since New or the last Reset,
// rejected ones included.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// CallLog returns a copy of the calls received, oldest first.
func (s *Server) CallLog() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.log))
	for i, c := range s.log {
		c.IDs = slices.Clone(c.IDs)
		c.VsCurrencies = slices.Clone(c.VsCurrencies)
		out[i] = c
	}
	return out
}

// Reset clears the call count, the log, the fault and the rate-limit window,
// so one Server can serve several independent scenarios. Pinned prices and
// added coins stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = 0
	s.log = nil
	s.gen++
	s.fault = Fault{}
	s.hits = nil
}

// Close releases every handler that is hanging or waiting (Hang, Slow,
// Latency): each drops its connection without answering, by panicking with
// http.ErrAbortHandler, which net/http handles quietly. Later waits end the
// same way at once; calls that do not wait are still answered. Call it before httptest.Server.Close, which otherwise
// blocks on hung handlers until their clients give up.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// sleep waits d unless the client goes away or the Server is closed; false
// means the handler should return without answering.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

// abandon drops the connection without an answer when the Server was
// closed: returning normally would make net/http send an empty 200, which a
// client would mistake for a real (if odd) response. When the client itself
// went away there is no one to answer, so a plain return is enough.
func (s *Server) abandon() {
	select {
	case <-s.closed:
		panic(http.ErrAbortHandler)
	default:
	}
}

// statusWriter remembers the status sent so the call log can record it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the status before passing it on.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records the implicit 200 of a body written without a header.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
