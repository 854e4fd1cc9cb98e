// Package coingecko calls CoinGecko's /simple/price the way its contract
// (docs/coingecko.md) describes: the demo or pro key header, prices decoded
// without float rounding, null values treated as absent, and every failure
// mode (429 in its three shapes, 5xx, HTML pages, bad bodies, timeouts)
// turned into one typed error.
package coingecko

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind classifies an upstream failure.
type Kind string

// The failure kinds.
const (
	RateLimited Kind = "rate_limited" // 429
	Unavailable Kind = "unavailable"  // 503
	Failed      Kind = "failed"       // other 5xx, HTML pages, bad bodies
	Timeout     Kind = "timeout"      // no answer in time
	Rejected    Kind = "rejected"     // 4xx: our key or request was refused
)

// Error is an upstream failure.
type Error struct {
	Kind   Kind
	Status int
	// RetryAfter is how long CoinGecko asked us to wait (429), or zero.
	RetryAfter time.Duration
	Msg        string
}

func (e *Error) Error() string {
	return fmt.Sprintf("coingecko %s (status %d): %s", e.Kind, e.Status, e.Msg)
}

// Retryable reports whether asking again may succeed.
func (e *Error) Retryable() bool { return e.Kind != Rejected }

// Quote maps coin id to currency to price, as decimal text.
type Quote map[string]map[string]json.Number

// Client talks to one CoinGecko host.
type Client struct {
	base      string
	keyHeader string
	key       string
	http      *http.Client
	// DefaultRetryAfter is assumed for a 429 that says nothing (a Cloudflare page).
	defaultRetryAfter time.Duration
	plan              string
}

// CacheWindow is how long CoinGecko holds a price still on the client's
// plan (docs/coingecko.md): asking more often returns the same number.
func (c *Client) CacheWindow() time.Duration {
	if c.plan == PlanPro {
		return 20 * time.Second
	}
	return time.Minute
}

// Plans name CoinGecko's hosts.
const (
	PlanDemo = "demo"
	PlanPro  = "pro"
)

// New returns a client for baseURL (without /api/v3). The plan decides the
// key header; "" picks pro for the pro-api host and demo otherwise.
func New(baseURL, apiKey, plan string, defaultRetryAfter time.Duration) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("COINGECKO_BASE_URL: %q is not an http(s) URL", baseURL)
	}
	if plan == "" {
		plan = PlanDemo
		if strings.HasPrefix(u.Host, "pro-api.") {
			plan = PlanPro
		}
	}
	header := "x-cg-demo-api-key"
	if plan == PlanPro {
		header = "x-cg-pro-api-key"
	}
	return &Client{
		base: u.String() + "/api/v3", keyHeader: header, key: apiKey, plan: plan,
		// Per-call timeouts come from the caller's context; this transport
		// only bounds connection setup.
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 0,
		}},
		defaultRetryAfter: defaultRetryAfter,
	}, nil
}

// maxBody bounds what we read of an answer; a price answer is small.
const maxBody = 4 << 20

// SimplePrice asks for the prices of ids in currencies in one call.
func (c *Client) SimplePrice(ctx context.Context, ids, currencies []string) (Quote, error) {
	q := url.Values{}
	q.Set("ids", strings.Join(sortedUnique(ids), ","))
	q.Set("vs_currencies", strings.Join(sortedUnique(currencies), ","))
	q.Set("precision", "full")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/simple/price?"+q.Encode(), nil)
	if err != nil {
		return nil, &Error{Kind: Failed, Msg: err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cryptopulse-fetcher")
	if c.key != "" {
		req.Header.Set(c.keyHeader, c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &Error{Kind: Timeout, Msg: "no answer before the deadline"}
		}
		return nil, &Error{Kind: Failed, Msg: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Error{Kind: Timeout, Status: resp.StatusCode, Msg: "body not read before the deadline"}
		}
		return nil, &Error{Kind: Failed, Status: resp.StatusCode, Msg: "reading body: " + err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusError(resp, body)
	}
	return decode(body)
}

func (c *Client) statusError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, Msg: summary(body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = RateLimited
		e.RetryAfter = retryAfter(resp.Header, time.Now())
		if e.RetryAfter <= 0 {
			e.RetryAfter = c.defaultRetryAfter
		}
	case resp.StatusCode == http.StatusServiceUnavailable:
		e.Kind = Unavailable
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusGatewayTimeout:
		e.Kind = Timeout
	case resp.StatusCode >= 500:
		e.Kind = Failed
	default:
		e.Kind = Rejected
	}
	return e
}

// retryAfter reads Retry-After (seconds or an HTTP date), falling back to
// x-ratelimit-reset (a Unix time, or seconds when small).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			return t.Sub(now)
		}
	}
	if v := strings.TrimSpace(h.Get("x-ratelimit-reset")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n > 1_000_000_000 {
				return time.Unix(n, 0).Sub(now)
			}
			return time.Duration(n) * time.Second
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.Sub(now)
		}
	}
	return 0
}

// decode reads {"bitcoin":{"usd":67187.33,"usd_24h_change":null}} keeping
// each price's digits; nulls and non-numbers are left out, never zero.
func decode(body []byte) (Quote, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw map[string]map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, &Error{Kind: Failed, Status: http.StatusOK, Msg: "malformed price body: " + summary(body)}
	}
	q := Quote{}
	for coin, vals := range raw {
		m := map[string]json.Number{}
		for k, v := range vals {
			if n, ok := v.(json.Number); ok {
				m[k] = n
			}
		}
		q[coin] = m
	}
	return q, nil
}

func summary(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

func sortedUnique(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
