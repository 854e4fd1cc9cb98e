package main

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"

	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/web"
)

// inlineHash is the CSP source that allows the one inline element tag of page.
func inlineHash(t *testing.T, page, tag string) string {
	t.Helper()
	open, end := "<"+tag+">", "</"+tag+">"
	if strings.Count(page, open) != 1 || strings.Count(page, end) != 1 {
		t.Fatalf("/live: want exactly one %s...%s", open, end)
	}
	body := page[strings.Index(page, open)+len(open) : strings.Index(page, end)]
	sum := sha256.Sum256([]byte(body))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// GET /live is an HTML page, unauthenticated, whose policy lets its own
// inline style and script run and nothing else, and that asks for nothing
// the policy would block.
func TestLivePageIsServedWithAStrictPolicy(t *testing.T) {
	app := web.New(web.Options{Service: "gateway", Instance: "t", Log: zap.NewNop()})
	routes(app, deps{cfg: Config{}, registry: web.NewRegistry(), store: &pricedb.Store{}})
	resp, err := app.Test(httptestRequest("/live"), -1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	page := string(raw)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /live without a token: %d %s", resp.StatusCode, page)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q, want text/html; charset=utf-8", ct)
	}
	if !strings.Contains(page, "<title>CryptoPulse live prices</title>") {
		t.Errorf("/live is not the live page: %.200s", page)
	}

	csp := resp.Header.Get("Content-Security-Policy")
	got := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		got[name] = value
	}
	want := map[string]string{
		"default-src":     "'none'",
		"script-src":      inlineHash(t, page, "script"),
		"style-src":       inlineHash(t, page, "style"),
		"connect-src":     "'self'",
		"img-src":         "data:",
		"base-uri":        "'none'",
		"form-action":     "'none'",
		"frame-ancestors": "'none'",
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("CSP %s = %q, want %q (policy %q)", name, got[name], v, csp)
		}
	}
	if len(got) != len(want) {
		t.Errorf("CSP has directives %v, want exactly %v", got, want)
	}
	if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy %q, want no-referrer", rp)
	}

	// What such a policy blocks, the page must not need: style attributes,
	// inline event handlers, anything loaded from elsewhere.
	for what, re := range map[string]*regexp.Regexp{
		"a style attribute":       regexp.MustCompile(`<[^>]*\sstyle=`),
		"an inline event handler": regexp.MustCompile(`<[^>]*\son[a-z]+=`),
		"an outside resource":     regexp.MustCompile(`\s(?:src|href)="(?:[^d"]|d[^a"])`),
		"a second script":         regexp.MustCompile(`<script\s`),
	} {
		if m := re.FindString(page); m != "" {
			t.Errorf("/live holds %s, which its policy blocks: %q", what, m)
		}
	}
}

// A page the policy cannot describe is refused when the routes are built,
// not served with a policy that breaks it.
func TestLivePolicyWantsOneScriptAndOneStyle(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("livePolicy accepted a page with two scripts")
		}
	}()
	livePolicy([]byte("<style></style><script>a()</script><script>b()</script>"))
}
