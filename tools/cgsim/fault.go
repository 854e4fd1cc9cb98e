package cgsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// RateLimitStyle selects how a 429 looks. CoinGecko has answered rate-limited
// calls in all three ways over the years, and a client has to survive each.
type RateLimitStyle int

const (
	// RetryAfterJSON answers 429 with a JSON body and a Retry-After header in
	// whole seconds. It is the zero value because it is the current behaviour.
	RetryAfterJSON RateLimitStyle = iota
	// HeadersOnlyJSON answers 429 with a JSON body and only the
	// x-ratelimit-limit/remaining/reset headers, so a client must work the
	// wait out from x-ratelimit-reset (format "2006-01-02 15:04:05 -0700").
	HeadersOnlyJSON
	// CloudflareHTML answers 429 with a Cloudflare "1015" HTML page and no
	// retry hint at all, as reported for older keyless traffic.
	CloudflareHTML
)

// String returns the wire name used by the /_sim/fault control route.
func (s RateLimitStyle) String() string {
	switch s {
	case RetryAfterJSON:
		return "retry_after_json"
	case HeadersOnlyJSON:
		return "headers_only_json"
	case CloudflareHTML:
		return "cloudflare_html"
	}
	return fmt.Sprintf("RateLimitStyle(%d)", int(s))
}

// MarshalText makes the style readable in JSON control bodies.
func (s RateLimitStyle) MarshalText() ([]byte, error) {
	switch s {
	case RetryAfterJSON, HeadersOnlyJSON, CloudflareHTML:
		return []byte(s.String()), nil
	}
	return nil, fmt.Errorf("cgsim: unknown rate limit style %d", int(s))
}

// UnmarshalText accepts the wire names plus a few short forms, because people
// type these by hand in curl commands.
func (s *RateLimitStyle) UnmarshalText(b []byte) error {
	v, err := ParseRateLimitStyle(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseRateLimitStyle maps a name such as "retry_after_json", "headers_only"
// or "cloudflare" to its style; the empty string means RetryAfterJSON.
func ParseRateLimitStyle(name string) (RateLimitStyle, error) {
	switch strings.ToLower(strings.TrimSpace(strings.ReplaceAll(name, "-", "_"))) {
	case "", "retry_after_json", "retry_after", "json":
		return RetryAfterJSON, nil
	case "headers_only_json", "headers_only", "headers":
		return HeadersOnlyJSON, nil
	case "cloudflare_html", "cloudflare", "html":
		return CloudflareHTML, nil
	}
	return 0, fmt.Errorf("cgsim: unknown rate limit style %q", name)
}

// FaultKind names an injectable failure.
type FaultKind int

const (
	// None means no fault: calls are answered normally.
	None FaultKind = iota
	// Status answers with Fault.Code (default 500) and a JSON error body.
	Status
	// RateLimited answers 429 in Fault.Style, whatever the configured limit.
	RateLimited
	// HTML answers with a Cloudflare-like HTML page and Fault.Code (default
	// 503); 403 renders the "1020 Access denied" page.
	HTML
	// Malformed answers 200 with truncated JSON.
	Malformed
	// Empty answers 200 with an empty body.
	Empty
	// Hang never answers: the handler waits until the client gives up or the
	// Server is closed.
	Hang
	// Slow waits Fault.Delay and then answers normally.
	Slow
)

// String returns the wire name used by the /_sim/fault control route.
func (k FaultKind) String() string {
	switch k {
	case None:
		return "none"
	case Status:
		return "status"
	case RateLimited:
		return "rate_limited"
	case HTML:
		return "html"
	case Malformed:
		return "malformed"
	case Empty:
		return "empty"
	case Hang:
		return "hang"
	case Slow:
		return "slow"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// MarshalText makes the kind readable in JSON control bodies.
func (k FaultKind) MarshalText() ([]byte, error) {
	if k < None || k > Slow {
		return nil, fmt.Errorf("cgsim: unknown fault kind %d", int(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText parses a wire name such as "rate_limited" or "hang".
func (k *FaultKind) UnmarshalText(b []byte) error {
	v, err := ParseFaultKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseFaultKind maps a wire name ("status", "rate_limited", "html",
// "malformed", "empty", "hang", "slow", "none" or "") to its kind.
func ParseFaultKind(name string) (FaultKind, error) {
	n := strings.ToLower(strings.TrimSpace(strings.ReplaceAll(name, "-", "_")))
	switch n {
	case "":
		return None, nil
	case "ratelimited", "429":
		// Spellings that turn up in hand-written curl bodies.
		return RateLimited, nil
	}
	for k := None; k <= Slow; k++ {
		if k.String() == n {
			return k, nil
		}
	}
	return None, fmt.Errorf("cgsim: unknown fault kind %q", name)
}

// Fault describes an injected failure. The zero value is no fault.
type Fault struct {
	// Kind selects the failure.
	Kind FaultKind
	// Code is the HTTP status for Status (default 500) and HTML (default 503).
	Code int
	// Style is how a RateLimited fault renders its 429.
	Style RateLimitStyle
	// RetryAfter is what a RateLimited fault advertises (rounded up to whole
	// seconds; zero means 60 s, CoinGecko's window).
	RetryAfter time.Duration
	// Delay is how long a Slow fault waits before answering.
	Delay time.Duration
	// Times limits the fault to the next N calls; 0 keeps it until cleared.
	Times int
}

// faultWire is the control-route shape: durations travel as milliseconds
// because JSON has no duration type and Go's nanoseconds surprise curl users.
type faultWire struct {
	Kind         FaultKind      `json:"kind"`
	Code         int            `json:"code,omitempty"`
	Style        RateLimitStyle `json:"style"`
	RetryAfterMS int64          `json:"retry_after_ms,omitempty"`
	DelayMS      int64          `json:"delay_ms,omitempty"`
	Times        int            `json:"times,omitempty"`
}

// MarshalJSON renders the control-route shape, e.g.
// {"kind":"slow","style":"retry_after_json","delay_ms":1500}.
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultWire{
		Kind:         f.Kind,
		Code:         f.Code,
		Style:        f.Style,
		RetryAfterMS: f.RetryAfter.Milliseconds(),
		DelayMS:      f.Delay.Milliseconds(),
		Times:        f.Times,
	})
}

// UnmarshalJSON parses the control-route shape and rejects unknown fields,
// so a typo such as "delay" instead of "delay_ms" fails loudly.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var w faultWire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("cgsim: bad fault: %w", err)
	}
	if w.RetryAfterMS < 0 || w.DelayMS < 0 || w.Times < 0 {
		return fmt.Errorf("cgsim: bad fault: negative retry_after_ms, delay_ms or times")
	}
	if w.Code != 0 && (w.Code < 100 || w.Code > 999) {
		return fmt.Errorf("cgsim: bad fault: code %d is not an HTTP status", w.Code)
	}
	*f = Fault{
		Kind:       w.Kind,
		Code:       w.Code,
		Style:      w.Style,
		RetryAfter: time.Duration(w.RetryAfterMS) * time.Millisecond,
		Delay:      time.Duration(w.DelayMS) * time.Millisecond,
		Times:      w.Times,
	}
	return nil
}

// SetFault injects f; it replaces any fault already set.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Kind == None {
		s.fault = Fault{}
		return
	}
	s.fault = f
}

// ClearFault removes the injected fault. Requests already hanging keep
// hanging: a real stalled connection does not recover when the cause does.
func (s *Server) ClearFault() {
	s.SetFault(Fault{})
}

// currentFault reports the fault without consuming one of its Times.
func (s *Server) currentFault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// takeFaultLocked returns the fault that applies to this call and uses up one
// of its Times. The caller holds s.mu.
func (s *Server) takeFaultLocked() Fault {
	f := s.fault
	if f.Kind == None {
		return Fault{}
	}
	if s.fault.Times > 0 {
		s.fault.Times--
		if s.fault.Times == 0 {
			s.fault = Fault{}
		}
	}
	return f
}
