package e2e

import (
	"context"
	"database/sql"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// liveCoin is the coin the /live test opens and charts.
const liveCoin = "bitcoin"

// The /live page in headless Chromium through nginx, as a person uses it: a
// wrong password is told in words; they log in while their other streams
// fill the per-user cap, are told so, and the page connects by itself once
// those close; they pick coins, and the prices that requests on either
// gateway (or the page's own Fetch now) fetch appear as the stream pushes
// them (a real EventSource with access_token); the chart draws the coin's stored candles and its last
// candle follows the pushed prices. When the gateway serving the page stops,
// the page says so, reconnects through nginx to the other and shows the
// price fetched meanwhile. Nothing is loaded from outside and the page's CSP
// blocks nothing it needs. UPDATE_SCREENSHOT=1 saves the page as
// docs/live.png.
func TestLivePageShowsPushedPricesInBrowser(t *testing.T) {
	t.Parallel()
	began := time.Now()
	// A 1 s heartbeat: a closed stream gives its slot back within a second.
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: 1, Nginx: true,
		Env: map[string]string{"BATCH_THRESHOLD": "1", "STREAM_HEARTBEAT_MS": "1000"}})
	candles := seedCandles(t, s.DatabaseURL, liveCoin)
	b := startBrowser(t, docsHost, s.Nginx.Addr)
	var mu sync.Mutex
	var blocked []string
	go func() {
		for m, err := range chromedp.Console(b.ctx) {
			if err != nil {
				return
			}
			if m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				blocked = append(blocked, m.Text)
				mu.Unlock()
			}
		}
	}()

	b.do("open /live", 30*time.Second, chromedp.Navigate(b.url("/live")), chromedp.WaitVisible(chromedp.CSS("#username")))
	if title := b.text("title", "h1", 5*time.Second); !strings.Contains(title, "CryptoPulse") {
		t.Errorf("/live heading %q", title)
	}

	b.fill("username", "#username", s.AdminUser)
	b.fill("password", "#password", s.AdminPass+"-wrong")
	b.do("log in with a wrong password", 15*time.Second,
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#message.error")))
	if msg := b.text("login error", "#message", 5*time.Second); msg != "Wrong username or password." {
		t.Errorf("a wrong password shows %q", msg)
	}

	// The user's other streams hold every slot (STREAMS_PER_USER, 5).
	tok := login(t, s)
	others, closeOthers := context.WithCancel(context.Background())
	defer closeOthers()
	for i := range 5 {
		req, _ := http.NewRequestWithContext(others, http.MethodGet, s.URL+"/v1/prices/stream?ids=cardano", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of the user's 5: %v %v", i+1, err, resp)
		}
		defer resp.Body.Close()
	}
	b.watchMessages()
	b.fill("password", "#password", s.AdminPass)
	b.do("log in", 15*time.Second,
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#watch-panel")),
		chromedp.WaitVisible(chromedp.CSS("#status.down")),
		chromedp.WaitVisible(chromedp.CSS("#message.error")))
	full := b.text("stream cap message", "#message", 5*time.Second)
	if !strings.HasPrefix(full, "Opening the live feed: Too many open streams: at most 5 per user; close one first. Retrying in ") {
		t.Errorf("a full stream cap shows %q", full)
	}
	closeOthers()
	b.do("connect once the other streams closed", 20*time.Second, chromedp.WaitVisible(chromedp.CSS("#status.live")))

	// Pick coins: the stream is reopened for them, and the first is charted.
	b.fill("coins", "#coins", liveCoin+",ethereum,solana")
	b.do("watch coins", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#coins-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-coin="solana"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status.live")),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-coin="`+liveCoin+`"].open`)),
		chromedp.WaitVisible(chromedp.CSS("#chart g.candle")))
	// Streaming a coin watches it (docs/watching.md), so the refresher may
	// already have fetched a price of it: the page then draws that price as
	// a live candle in the current bucket, on top of the stored ones.
	switch n := b.count("#chart g.candle"); n {
	case candles:
	case candles + 1:
		testkit.Eventually(t, 10*time.Second, "the live candle's price stored", func() bool {
			return storedBuckets(t, s.DatabaseURL, liveCoin, 5*time.Minute) == candles+1
		})
		t.Logf("the chart draws %d stored candles and the live one of a refreshed price", candles)
	default:
		t.Errorf("the chart draws %d candles, the stored history has %d", n, candles)
	}

	// Each price is fetched by a request straight to one gateway, never
	// through the page; both gateways take a turn, so at least one price
	// comes from the gateway that does not serve the page's stream.
	for i, pinned := range []string{"70123.45", "70456.78"} {
		gw := s.Gateways[i%len(s.Gateways)]
		simPrice(t, s, liveCoin, pinned)
		if a := getJSON(gw.URL(), "/v1/price/"+liveCoin, tok); a.Status != http.StatusOK || !strings.Contains(a.Raw, `"price":`+pinned+`,`) {
			t.Fatalf("price through %s: %d %s", gw.Name, a.Status, a.Raw)
		}
		cell := `#rows tr[data-coin="` + liveCoin + `"] td.price[data-price="` + pinned + `"]`
		b.do("see "+pinned+" pushed from "+gw.Name, 20*time.Second, chromedp.WaitVisible(chromedp.CSS(cell)))
		shown := b.text("shown price", cell, 5*time.Second)
		if want := formatUSD(pinned); shown != want+" USD" {
			t.Errorf("price %s fetched through %s shows as %q, want %q", pinned, gw.Name, shown, want+" USD")
		}
	}
	if chg := b.text("change", `#rows tr[data-coin="`+liveCoin+`"] td.chg`, 5*time.Second); !strings.HasPrefix(chg, "▲") {
		t.Errorf("70123.45 then 70456.78 shows change %q, want a rise", chg)
	}
	// The newest candle follows the pushed price.
	if last := b.textContent("#chart .last-label"); last != "70,456.78" {
		t.Errorf("the chart's last price reads %q, want 70,456.78", last)
	}
	if n := b.count("#chart g.candle"); n < candles+1 {
		t.Errorf("the chart draws %d candles after live prices, want the %d stored and the live one", n, candles)
	}
	// The other rows fill in as their coins are fetched: by anyone's
	// request, or by the row's own button, whose answer comes over the
	// stream too.
	if a := getJSON(s.URL, "/v1/price/ethereum", tok); a.Status != http.StatusOK {
		t.Fatalf("price of ethereum: %d %s", a.Status, a.Raw)
	}
	b.do("see ethereum", 20*time.Second, chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-coin="ethereum"] td.price[data-price]`)))
	b.do("fetch solana from the page", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#rows tr[data-coin="solana"] button.quiet`)),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-coin="solana"] td.price[data-price]`)))

	shot := b.screenshotOf("#chart-panel")

	// The gateway serving the page stops: its stream ends with a reconnect
	// hint, and the page comes back through nginx on the other gateway with
	// its Last-Event-ID, catching up on a price fetched meanwhile.
	var serving, other *devstack.Proc
	testkit.Eventually(t, 10*time.Second, "one stream open, the page's", func() bool {
		serving, other = nil, nil
		for _, g := range s.Gateways {
			switch metric(g.URL()+"/metrics", "gateway_streams_open") {
			case 1:
				serving = g
			case 0:
				other = g
			}
		}
		return serving != nil && other != nil
	})
	before := len(b.messages())
	if err := serving.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	simPrice(t, s, liveCoin, "70999.99")
	if a := getJSON(other.URL(), "/v1/price/"+liveCoin, tok); a.Status != http.StatusOK {
		t.Fatalf("price through %s: %d %s", other.Name, a.Status, a.Raw)
	}
	b.do("see the price fetched while "+serving.Name+" stopped", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-coin="`+liveCoin+`"] td.price[data-price="70999.99"]`)),
		chromedp.WaitVisible(chromedp.CSS("#status.live")))
	said := b.messages()[before:]
	if want := []string{
		"The server answering this page is restarting; reconnecting to another one. No price will be missed.",
		"Reconnected. Prices sent while the connection was down have been caught up.",
	}; !slices.Equal(said, want) {
		t.Errorf("while %s stopped the page said %q, want %q", serving.Name, said, want)
	}
	b.checkExternal()
	mu.Lock()
	if len(blocked) > 0 {
		t.Errorf("the page's Content-Security-Policy blocked something: %s", strings.Join(blocked, "\n"))
	}
	mu.Unlock()
	b.mu.Lock()
	if len(b.exceptions) > 0 {
		t.Errorf("JavaScript exceptions on /live: %s", strings.Join(b.exceptions, "\n"))
	}
	b.mu.Unlock()
	if os.Getenv("UPDATE_SCREENSHOT") != "" {
		if err := os.WriteFile("../docs/live.png", shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to docs/live.png (%d bytes)", len(shot))
	}
	t.Logf("/live in Chromium through nginx: wrong password, full stream cap, login, coins, 2 pushed prices, Fetch now, "+
		"%d stored candles, %s stopped and resumed on %s, in %s", candles, serving.Name, other.Name, time.Since(began).Round(time.Millisecond))
}

// watchMessages records every text the page's #message shows, however
// briefly, for messages.
func (b *browser) watchMessages() {
	b.t.Helper()
	b.do("watch #message", 5*time.Second, chromedp.Evaluate[chromedp.Void](`(() => {
		const m = document.getElementById("message");
		window.cpSaid = [];
		new MutationObserver(() => { if (m.textContent) window.cpSaid.push(m.textContent); })
			.observe(m, {childList: true, characterData: true, subtree: true});
	})()`))
}

// messages returns what #message showed since watchMessages.
func (b *browser) messages() []string {
	b.t.Helper()
	said, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`window.cpSaid`))
	if err != nil {
		b.fail("read #message history", err)
	}
	return said
}

// count returns how many elements sel matches.
func (b *browser) count(sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	if err != nil {
		b.fail("count "+sel, err)
	}
	return n
}

// textContent returns the text of the first element sel matches, SVG
// elements included (they have no innerText, which chromedp.Text reads).
func (b *browser) textContent(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector(`+jsString(sel)+`)?.textContent ?? ""`))
	if err != nil {
		b.fail("text of "+sel, err)
	}
	return s
}

// formatUSD groups the integer digits of a decimal as en-US does.
func formatUSD(dec string) string {
	whole, frac, _ := strings.Cut(dec, ".")
	var out []byte
	for i := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, whole[i])
	}
	return string(out) + "." + frac
}

// seedCandles stores an hour of prices of coin, a few in each of the twelve
// 5-minute buckets before the current one (the page's default interval),
// and returns how many buckets that is.
// storedBuckets counts the width-wide time buckets that hold a stored price
// of coin in USD.
func storedBuckets(t *testing.T, dbURL, coin string, width time.Duration) int {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(DISTINCT floor(extract(epoch FROM fetched_at) / $2)) FROM price_records WHERE coin_id = $1 AND vs_currency = 'usd'`,
		coin, width.Seconds()).Scan(&n); err != nil {
		t.Fatalf("count stored buckets: %v", err)
	}
	return n
}

func seedCandles(t *testing.T, dbURL, coin string) int {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The services migrate the database as they start, in the background.
	testkit.Eventually(t, 30*time.Second, "price_records created", func() bool {
		var exists bool
		return db.QueryRow(`SELECT to_regclass('price_records') IS NOT NULL`).Scan(&exists) == nil && exists
	})
	const buckets, width = 12, 5 * time.Minute
	now := time.Now().UTC().Truncate(width)
	for k := range buckets {
		start := now.Add(-time.Duration(buckets-k) * width)
		base := 69900 + 30*float64(k) + 60*math.Sin(float64(k))
		for j, p := range []float64{base, base + 60*math.Cos(float64(k)*2.3) + 30, base + 40*math.Sin(float64(k)*3.1), base + 25*math.Cos(float64(k))} {
			at := start.Add(time.Duration(30+60*j) * time.Second)
			if _, err := db.Exec(`INSERT INTO price_records (coin_id, vs_currency, price, fetched_at) VALUES ($1, 'usd', $2, $3)`,
				coin, math.Round(p*100)/100, at); err != nil {
				t.Fatalf("seed history: %v", err)
			}
		}
	}
	return buckets
}
