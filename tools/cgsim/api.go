package cgsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rateWindow is the span CoinGecko counts calls over.
const rateWindow = 60 * time.Second

// Header and query names of the two plans' keys.
const (
	demoHeader = "x-cg-demo-api-key"
	demoQuery  = "x_cg_demo_api_key"
	proHeader  = "x-cg-pro-api-key"
	proQuery   = "x_cg_pro_api_key"
)

// serveAPI runs one upstream call through the same gates CoinGecko's edge
// does: injected fault (standing in for the CDN and network), rate limit,
// key check, then the endpoint itself.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	now := s.clock()
	call := Call{Time: now, Path: r.URL.Path, Query: r.URL.RawQuery, APIKey: presentedKey(r, s.pro)}
	if r.URL.Path == "/api/v3/simple/price" {
		q := r.URL.Query()
		call.IDs = splitList(q.Get("ids"))
		call.VsCurrencies = splitList(q.Get("vs_currencies"))
	}

	s.mu.Lock()
	s.calls++
	idx, gen := len(s.log), s.gen
	s.log = append(s.log, call)
	fault := s.takeFaultLocked()
	limited, retry, resetAt := s.admitLocked(now)
	s.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gen == gen && idx < len(s.log) {
			s.log[idx].Status = sw.status
		}
	}()

	if !s.sleep(r.Context(), s.latency) {
		s.abandon()
		return
	}
	switch fault.Kind {
	case None:
	case Slow:
		if !s.sleep(r.Context(), fault.Delay) {
			s.abandon()
			return
		}
	default:
		s.writeFault(sw, r, fault, now)
		return
	}
	if limited {
		writeRateLimited(sw, s.style, s.rateLimit, retry, resetAt)
		return
	}
	if !s.checkKey(sw, r) {
		return
	}
	s.route(sw, r, now)
}

// admitLocked records a call at now in the sliding window and reports whether
// it is over the limit, with the wait until a call would be admitted again
// and when that is. The caller holds s.mu.
func (s *Server) admitLocked(now time.Time) (limited bool, retry time.Duration, resetAt time.Time) {
	if s.rateLimit <= 0 {
		return false, 0, time.Time{}
	}
	cutoff := now.Add(-rateWindow)
	keep := s.hits[:0]
	for _, h := range s.hits {
		if h.After(cutoff) {
			keep = append(keep, h)
		}
	}
	s.hits = append(keep, now)
	n := len(s.hits)
	if n <= s.rateLimit {
		return false, 0, time.Time{}
	}
	// A later call is admitted once at most limit-1 of these remain inside
	// its window, i.e. once hits[n-limit] has aged out.
	resetAt = s.hits[n-s.rateLimit].Add(rateWindow)
	return true, resetAt.Sub(now), resetAt
}

// presentedKey is the key a call carries, own plan's first, for the log.
func presentedKey(r *http.Request, pro bool) string {
	own, other := keyOf(r, demoHeader, demoQuery), keyOf(r, proHeader, proQuery)
	if pro {
		own, other = other, own
	}
	if own != "" {
		return own
	}
	return other
}

// keyOf reads a key from its header, falling back to the query parameter as
// CoinGecko does.
func keyOf(r *http.Request, header, query string) string {
	if v := strings.TrimSpace(r.Header.Get(header)); v != "" {
		return v
	}
	return strings.TrimSpace(r.URL.Query().Get(query))
}

// checkKey applies the host's key rules and answers the call if they fail.
func (s *Server) checkKey(w http.ResponseWriter, r *http.Request) bool {
	demo, pro := keyOf(r, demoHeader, demoQuery), keyOf(r, proHeader, proQuery)
	own, wrongPlan := demo, pro != ""
	wrongCode, wrongMsg := 10010, "If you are using Pro API key, please change your root URL from api.coingecko.com to pro-api.coingecko.com"
	if s.pro {
		own, wrongPlan = pro, demo != ""
		wrongCode, wrongMsg = 10011, "If you are using Demo API key, please change your root URL from pro-api.coingecko.com to api.coingecko.com"
	}
	switch {
	case own != "":
		if s.apiKey != "" && own != s.apiKey {
			writeJSON(w, http.StatusUnauthorized, topLevelCodeBody(10002, "You have provided incorrect API key credentials. Please check your keys in developer dashboard and ensure that your request is authorized"))
			return false
		}
		return true
	case wrongPlan:
		writeJSON(w, http.StatusBadRequest, statusBody(wrongCode, wrongMsg))
		return false
	case s.pro || s.apiKey != "":
		hint := "x_cg_demo_api_key"
		if s.pro {
			hint = "x_cg_pro_api_key"
		}
		writeJSON(w, http.StatusUnauthorized, statusBody(10002, "API Key Missing: please provide your API key as "+hint))
		return false
	}
	return true
}

// route dispatches an admitted, authorised call.
func (s *Server) route(w http.ResponseWriter, r *http.Request, now time.Time) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("Method Not Allowed"))
		return
	}
	switch r.URL.Path {
	case "/api/v3/ping":
		writeJSON(w, http.StatusOK, []byte(`{"gecko_says":"(V3) To the Moon!"}`))
	case "/api/v3/simple/price":
		s.simplePrice(w, r, now)
	case "/api/v3/simple/supported_vs_currencies":
		s.mu.Lock()
		list := s.supportedCurrenciesLocked()
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, mustMarshal(list))
	case "/api/v3/coins/list":
		writeJSON(w, http.StatusOK, s.coinsList())
	default:
		writeJSON(w, http.StatusNotFound, errorBody("Incorrect path. Please check https://docs.coingecko.com/"))
	}
}

// coinsList renders /coins/list sorted by id, as upstream does.
func (s *Server) coinsList() []byte {
	type entry struct {
		ID     string `json:"id"`
		Symbol string `json:"symbol"`
		Name   string `json:"name"`
	}
	s.mu.Lock()
	list := make([]entry, 0, len(s.coins))
	for _, c := range s.coins {
		list = append(list, entry{c.id, c.symbol, c.name})
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.ID, b.ID) })
	return mustMarshal(list)
}

// priceOptions are the optional /simple/price switches.
type priceOptions struct {
	marketCap, volume, change, updated bool
	precision                          int // -1: default digits
	full                               bool
}

// parsePriceOptions reads the optional switches; an unparsable precision is
// ignored rather than rejected, since upstream does not document an error.
func parsePriceOptions(q map[string][]string) priceOptions {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	on := func(k string) bool { return strings.EqualFold(get(k), "true") }
	o := priceOptions{
		marketCap: on("include_market_cap"),
		volume:    on("include_24hr_vol"),
		change:    on("include_24hr_change"),
		updated:   on("include_last_updated_at"),
		precision: -1,
	}
	switch p := get("precision"); {
	case strings.EqualFold(p, "full"):
		o.full = true
	case p != "":
		if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 18 {
			o.precision = n
		}
	}
	return o
}

// simplePrice serves GET /simple/price.
func (s *Server) simplePrice(w http.ResponseWriter, r *http.Request, now time.Time) {
	q := r.URL.Query()
	ids := splitList(q.Get("ids"))
	if len(ids) > MaxIDs {
		writeHTML(w, http.StatusRequestURITooLong, uriTooLongPage)
		return
	}
	vs := splitList(q.Get("vs_currencies"))
	if len(vs) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody("Missing parameter vs_currencies"))
		return
	}
	opts := parsePriceOptions(q)
	win := windowIndex(now, s.window)
	updatedAt := time.Unix(0, win*int64(s.window)).Unix()

	var b bytes.Buffer
	b.WriteByte('{')
	s.mu.Lock()
	first := true
	for _, id := range ids {
		c, ok := s.coins[id]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(mustMarshal(id))
		b.WriteString(":{")
		s.writeCoinLocked(&b, c, vs, opts, win, updatedAt)
		b.WriteByte('}')
	}
	s.mu.Unlock()
	b.WriteByte('}')
	writeJSON(w, http.StatusOK, b.Bytes())
}

// writeCoinLocked writes one coin's fields in upstream's order: each
// currency with its extras, then last_updated_at. The caller holds s.mu.
func (s *Server) writeCoinLocked(b *bytes.Buffer, c coin, vs []string, o priceOptions, win, updatedAt int64) {
	first := true
	field := func(name, value string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(mustMarshal(name))
		b.WriteByte(':')
		b.WriteString(value)
	}
	for _, cur := range vs {
		qt, ok := s.quoteLocked(c, cur, win)
		if !ok {
			continue
		}
		field(cur, formatPrice(qt, o))
		if o.marketCap {
			field(cur+"_market_cap", formatNumber(new(big.Rat).Mul(qt.value, new(big.Rat).SetInt64(c.supply)), defaultSigDigits))
		}
		if o.volume {
			mc := new(big.Rat).Mul(qt.value, new(big.Rat).SetInt64(c.supply))
			field(cur+"_24h_vol", formatNumber(mc.Mul(mc, volumeShare(c, win)), defaultSigDigits))
		}
		if o.change {
			if c.stale {
				field(cur+"_24h_change", "null")
			} else {
				field(cur+"_24h_change", formatNumber(change24h(c, win), defaultSigDigits))
			}
		}
	}
	if o.updated {
		ts := updatedAt
		if c.stale {
			ts = staleUpdatedAt
		}
		field("last_updated_at", strconv.FormatInt(ts, 10))
	}
}

// formatPrice renders a quote honouring the precision option; pinned text
// goes out untouched unless a precision was asked for.
func formatPrice(q quote, o priceOptions) string {
	switch {
	case o.precision >= 0:
		// 40 digits covers 18 decimals plus any integer part a price has.
		return formatNumber(roundDecimals(q.value, o.precision), 40)
	case q.text != "":
		return q.text
	case o.full:
		return formatNumber(q.value, fullSigDigits)
	}
	return formatNumber(q.value, defaultSigDigits)
}

// splitList splits a comma-separated parameter the way upstream reads it:
// trimmed, lower-cased, empty items and repeats dropped.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// writeFault answers a call with an injected failure other than Slow.
func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, f Fault, now time.Time) {
	switch f.Kind {
	case Status:
		code := f.Code
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, statusBody(code, statusText(code)))
	case RateLimited:
		retry := f.RetryAfter
		if retry <= 0 {
			retry = rateWindow
		}
		limit := s.rateLimit
		if limit <= 0 {
			limit = 30 // the demo limit upstream advertised in these headers
		}
		writeRateLimited(w, f.Style, limit, retry, now.Add(retry))
	case HTML:
		code := f.Code
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		writeHTML(w, code, cloudflarePage(code))
	case Malformed:
		writeJSON(w, http.StatusOK, []byte(`{"bitcoin":{"usd":67187.33,"eur":6`))
	case Empty:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		s.abandon()
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody("unknown simulated fault "+f.Kind.String()))
	}
}

// writeRateLimited answers 429 in the given style.
func writeRateLimited(w http.ResponseWriter, style RateLimitStyle, limit int, retry time.Duration, resetAt time.Time) {
	const msg = "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits."
	switch style {
	case CloudflareHTML:
		writeHTML(w, http.StatusTooManyRequests, cloudflarePage(http.StatusTooManyRequests))
	case HeadersOnlyJSON:
		h := w.Header()
		h.Set("x-ratelimit-limit", strconv.Itoa(limit))
		h.Set("x-ratelimit-remaining", "0")
		// Upstream rounds the reset to a whole second and prints it this way.
		h.Set("x-ratelimit-reset", ceilSecond(resetAt).UTC().Format("2006-01-02 15:04:05 -0700"))
		writeJSON(w, http.StatusTooManyRequests, statusBody(429, msg))
	default:
		w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(retry), 10))
		writeJSON(w, http.StatusTooManyRequests, statusBody(429, msg))
	}
}

// ceilSeconds rounds a wait up to whole seconds, at least 1, so a client
// that obeys it never comes back early.
func ceilSeconds(d time.Duration) int64 {
	n := int64((d + time.Second - 1) / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}

// ceilSecond rounds t up to the next whole second.
func ceilSecond(t time.Time) time.Time {
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// statusText is the reason phrase, with a fallback for odd test codes.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Error " + strconv.Itoa(code)
}

// The three error body shapes CoinGecko uses; clients must cope with all.

// statusBody is {"status":{"error_code":N,"error_message":"..."}}.
func statusBody(code int, msg string) []byte {
	return mustMarshal(map[string]any{"status": map[string]any{"error_code": code, "error_message": msg}})
}

// topLevelCodeBody is {"error_code":N,"status":{"error_message":"..."}}.
func topLevelCodeBody(code int, msg string) []byte {
	return mustMarshal(map[string]any{"error_code": code, "status": map[string]any{"error_message": msg}})
}

// errorBody is {"error":"..."}.
func errorBody(msg string) []byte {
	return mustMarshal(map[string]string{"error": msg})
}

// mustMarshal encodes values that cannot fail to encode. HTML escaping is
// off so logged query strings keep a readable "&" instead of "\u0026".
func mustMarshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("cgsim: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// writeJSON sends a JSON body with upstream's content type.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client may be gone; nothing useful to do
}

// writeHTML sends an HTML page the way Cloudflare's edge does.
func writeHTML(w http.ResponseWriter, code int, page string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=UTF-8")
	h.Set("Server", "cloudflare")
	h.Set("CF-RAY", "8a1b2c3d4e5f6789-AMS")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(page))
}

// uriTooLongPage is what the CDN sends for an over-long id list.
const uriTooLongPage = "<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n<center><h1>414 Request-URI Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

// cloudflarePage renders a Cloudflare error page for code; 403 and 429 get
// the specific 1020 and 1015 pages clients actually see.
func cloudflarePage(code int) string {
	title, detail := fmt.Sprintf("Error %d", code), statusText(code)
	switch code {
	case http.StatusForbidden:
		title, detail = "Error 1020", "Access denied"
	case http.StatusTooManyRequests:
		title, detail = "Error 1015", "You are being rate limited"
	}
	return `<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<html lang="en-US">
<head>
<title>` + detail + ` | api.coingecko.com | Cloudflare</title>
<meta charset="UTF-8" />
</head>
<body>
<div id="cf-wrapper">
<div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">` + title + `</span></h1>
<h2 class="cf-subheadline">` + detail + `</h2>
<p>The owner of this website (api.coingecko.com) has banned your access or the service is unavailable.</p>
<span class="cf-footer-item">Cloudflare Ray ID: <strong>8a1b2c3d4e5f6789</strong></span>
</div>
</div>
</body>
</html>
`
}
