package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"cryptopulse/tools/devstack"
)

// docsHost is the name the browser opens the stack under. Not localhost:
// Swagger UI behaves differently there (it skips its online validator), and
// a user's browser would not be on localhost either.
const docsHost = "api.cryptopulse.test"

// Swagger UI's ids for the operations of services/gateway/openapi.json:
// "operations-<tag>-<operationId>".
const (
	loginOp   = "#operations-auth-postAuthLogin"
	priceOp   = "#operations-price-getPrice"
	historyOp = "#operations-price-getPriceHistory"
)

// The whole Swagger UI journey of a user, in a real browser through nginx:
// log in with "Try it out", paste the token into Authorize, then read a
// price and its history. SWAGGER_SCREENSHOT=path saves the price answer as
// a PNG (docs/swagger-ui.png in the README).
func TestSwaggerUIInBrowser(t *testing.T) {
	t.Parallel()
	began := time.Now()
	// Threshold 1: a lone request flushes at once instead of waiting out the 5 s window.
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, Nginx: true, Env: map[string]string{"BATCH_THRESHOLD": "1"}})
	stackUp := time.Since(began)
	b := startBrowser(t, docsHost, s.Nginx.Addr)
	browserUp := time.Since(began) - stackUp

	b.do("open /docs", 30*time.Second, chromedp.Navigate(b.url("/docs")), chromedp.WaitVisible(chromedp.CSS(loginOp)))
	if title := b.text("title", ".info .title", 5*time.Second); !strings.Contains(title, "CryptoPulse API") {
		t.Errorf("/docs title %q, want CryptoPulse API", title)
	}

	// Log in: Try it out on POST /auth/login with the real credentials.
	b.tryItOut(loginOp)
	b.fill("login body", loginOp+" textarea.body-param__text",
		fmt.Sprintf(`{"username":%q,"password":%q}`, s.AdminUser, s.AdminPass))
	status, body := b.execute(loginOp, 15*time.Second)
	var login struct {
		AccessToken string `json:"accessToken"`
		TokenType   string `json:"tokenType"`
	}
	if status != "200" || json.Unmarshal([]byte(body), &login) != nil || login.AccessToken == "" || login.TokenType != "Bearer" {
		t.Fatalf("login in Swagger UI: %s %s", status, body)
	}

	// Authorize: paste the token, as the page tells a user to.
	b.do("authorize", 10*time.Second,
		chromedp.Click(chromedp.CSS(".auth-wrapper .btn.authorize")),
		chromedp.WaitVisible(chromedp.CSS(".modal-ux #auth-bearer-value")),
		chromedp.SendKeys(chromedp.CSS(".modal-ux #auth-bearer-value"), login.AccessToken),
		chromedp.Click(chromedp.CSS(".modal-ux .modal-btn.authorize")),
		chromedp.WaitVisible(chromedp.CSS(`.modal-ux button[aria-label="Remove authorization"]`)),
		chromedp.Click(chromedp.CSS(".modal-ux .btn-done")),
		chromedp.WaitNotPresent(chromedp.CSS(".modal-ux")),
	)

	// A price.
	b.tryItOut(priceOp)
	b.fill("coinId", priceOp+` tr[data-param-name="coinId"] input`, "bitcoin")
	status, body = b.execute(priceOp, 20*time.Second)
	var quote struct {
		CoinID     string      `json:"coinId"`
		VsCurrency string      `json:"vsCurrency"`
		Price      json.Number `json:"price"`
		Batch      struct {
			Size int `json:"size"`
		} `json:"batch"`
	}
	if status != "200" || decodeNumber(body, &quote) != nil {
		t.Fatalf("GET /v1/price/bitcoin in Swagger UI: %s %s", status, body)
	}
	if p, err := quote.Price.Float64(); err != nil || p <= 0 || quote.CoinID != "bitcoin" || quote.VsCurrency != "usd" || quote.Batch.Size < 1 {
		t.Fatalf("GET /v1/price/bitcoin in Swagger UI: no price in %s", body)
	}
	if url := b.text("request url", priceOp+" .request-url pre", 5*time.Second); !strings.HasSuffix(url, "/v1/price/bitcoin?vsCurrency=usd") && !strings.HasSuffix(url, "/v1/price/bitcoin") {
		t.Errorf("Swagger UI called %q", url)
	}
	shot := b.screenshotOf(priceOp + " .live-responses-table")
	pricedAt := time.Since(began)

	// Its history: the price just fetched, once the persister has written it.
	b.tryItOut(historyOp)
	b.fill("coinId", historyOp+` tr[data-param-name="coinId"] input`, "bitcoin")
	var page struct {
		CoinID string `json:"coinId"`
		Items  []struct {
			Price     json.Number `json:"price"`
			FetchedAt string      `json:"fetchedAt"`
		} `json:"items"`
		TotalItems int `json:"totalItems"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body = b.execute(historyOp, 15*time.Second)
		if status != "200" || decodeNumber(body, &page) != nil {
			t.Fatalf("GET /v1/price/bitcoin/history in Swagger UI: %s %s", status, body)
		}
		if len(page.Items) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(page.Items) == 0 || page.CoinID != "bitcoin" {
		t.Fatalf("history in Swagger UI has no price after 15 s: %s", body)
	}
	if page.Items[0].Price != quote.Price {
		t.Errorf("history's newest price %s, the price answer said %s", page.Items[0].Price, quote.Price)
	}

	b.checkExternal()
	if path := os.Getenv("SWAGGER_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the price answer saved to %s (%d bytes)", path, len(shot))
	}
	t.Logf("Swagger UI in Chromium through nginx: login, authorize, price, history in %s "+
		"(stack up %s, browser up %s, price answered at %s)",
		time.Since(began).Round(time.Millisecond), stackUp.Round(time.Millisecond),
		browserUp.Round(time.Millisecond), pricedAt.Round(time.Millisecond))
}

// decodeNumber decodes JSON keeping numbers as written (prices are decimal text).
func decodeNumber(body string, v any) error {
	d := json.NewDecoder(strings.NewReader(body))
	d.UseNumber()
	return d.Decode(v)
}

// tryItOut opens an operation and presses "Try it out".
func (b *browser) tryItOut(op string) {
	b.t.Helper()
	b.do("try it out on "+op, 10*time.Second,
		chromedp.ScrollIntoView(chromedp.CSS(op)),
		chromedp.Click(chromedp.CSS(op+" .opblock-summary-control")),
		chromedp.WaitVisible(chromedp.CSS(op+" .try-out__btn")),
		chromedp.Click(chromedp.CSS(op+" .try-out__btn")),
		chromedp.WaitVisible(chromedp.CSS(op+" .execute")),
	)
}

// fill replaces what a field holds (an example, a default) with text, by
// selecting all of it and typing, as a user does.
func (b *browser) fill(what, sel, text string) {
	b.t.Helper()
	b.do("fill "+what, 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Focus(chromedp.CSS(sel)),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.KeyEvent(text),
	)
	got, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		b.fail("read "+what, err)
	}
	if got != text {
		b.t.Fatalf("%s holds %q after typing %q", what, got, text)
	}
}

// execute presses Execute (clearing an earlier answer first) and returns the
// status and body Swagger UI shows for the live response.
func (b *browser) execute(op string, timeout time.Duration) (status, body string) {
	b.t.Helper()
	live := op + " .live-responses-table tr.response"
	b.do("clear "+op, 5*time.Second, chromedp.Evaluate[chromedp.Void](
		`document.querySelector(`+jsString(op+" .btn-clear")+`)?.click()`))
	b.do("execute "+op, timeout,
		chromedp.WaitNotPresent(chromedp.CSS(live)),
		chromedp.Click(chromedp.CSS(op+" .execute")),
		chromedp.WaitVisible(chromedp.CSS(live+" .response-col_status")),
	)
	status = strings.TrimSpace(b.text("status of "+op, live+" .response-col_status", 5*time.Second))
	body = b.text("body of "+op, live+" .highlight-code pre", 5*time.Second)
	return status, body
}

// screenshotOf scrolls sel to the top of the viewport, with its operation's
// header above it, and returns a PNG of the viewport.
func (b *browser) screenshotOf(sel string) []byte {
	b.t.Helper()
	b.do("scroll to "+sel, 5*time.Second,
		chromedp.ScrollIntoView(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+jsString(sel)+`).scrollIntoView({block: "end"})`),
	)
	shot, err := b.screenshot()
	if err != nil {
		b.fail("screenshot", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil || cfg.Width != viewportW || cfg.Height != viewportH {
		b.t.Fatalf("screenshot is not a %dx%d PNG: %v %+v", viewportW, viewportH, err, cfg)
	}
	return shot
}

// checkExternal fails on any internet host the page asked for: the docs of
// a self-hosted API must work offline (no fonts, no validator badge).
func (b *browser) checkExternal() {
	b.t.Helper()
	got := b.externalHosts()
	var hosts []string
	for h, urls := range got {
		hosts = append(hosts, h+" ("+strings.Join(urls, " ")+")")
	}
	sort.Strings(hosts)
	if len(hosts) > 0 {
		b.t.Errorf("the page asked for something outside the stack (the machine has no internet): %s", strings.Join(hosts, "; "))
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
