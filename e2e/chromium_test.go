package e2e

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Viewport of every page the tests look at, and of the screenshots.
const viewportW, viewportH = 1280, 900

// chromiumPath finds Debian's chromium, which scripts/install-deps.sh installs.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found in PATH or /usr/bin: run scripts/install-deps.sh")
	return ""
}

// browser is a headless Chromium with one tab that may only talk to the
// stack under test: every request to any other host is failed before it
// leaves the browser, and recorded, so a page that tries to load something
// from the internet is seen (the machine has none, and CI must not wait on
// DNS for it either).
type browser struct {
	t      *testing.T
	ctx    context.Context
	origin *url.URL

	mu         sync.Mutex
	external   map[string][]string // host -> URLs it was asked for
	exceptions []string            // uncaught JavaScript exceptions
}

// startBrowser starts Chromium with a fresh profile. host is the name the
// page is opened under (mapped to 127.0.0.1 inside the browser only, so the
// page is not treated as localhost, which Swagger UI special-cases); addr is
// the stack's "127.0.0.1:port".
func startBrowser(t *testing.T, host, addr string) *browser {
	t.Helper()
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("bad address %q", addr)
	}
	origin := &url.URL{Scheme: "http", Host: host + ":" + port}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		// No DNS at all: our name is 127.0.0.1, every other one fails at once.
		chromedp.Flag("host-resolver-rules", "MAP "+host+" 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(viewportW, viewportH),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, origin: origin, external: map[string][]string{}}

	// The first action starts the browser; it gets no timeout of its own,
	// since a context with one would end the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go b.gate(paused)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.mu.Lock()
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			b.exceptions = append(b.exceptions, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			b.mu.Unlock()
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{}); err != nil {
		t.Fatalf("chromium: intercept requests: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
		t.Fatalf("chromium: viewport: %v", err)
	}
	return b
}

// gate lets the stack's own requests through and fails every other one.
func (b *browser) gate(paused iter.Seq2[fetch.EventRequestPaused, error]) {
	for ev, err := range paused {
		if err != nil {
			return
		}
		u, perr := url.Parse(ev.Request.URL)
		if perr == nil && u.Scheme == b.origin.Scheme && u.Host == b.origin.Host {
			_, _ = chromedp.Call(b.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
			continue
		}
		host := ev.Request.URL
		if perr == nil {
			host = u.Hostname()
		}
		b.mu.Lock()
		b.external[host] = append(b.external[host], ev.Request.URL)
		b.mu.Unlock()
		_, _ = chromedp.Call(b.ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
	}
}

// externalHosts returns the hosts other than the stack that the page asked for.
func (b *browser) externalHosts() map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]string, len(b.external))
	for h, urls := range b.external {
		out[h] = append([]string(nil), urls...)
	}
	return out
}

// url returns the page address of path under the browser's origin.
func (b *browser) url(path string) string { return b.origin.String() + path }

// do runs actions within timeout; on failure it saves a screenshot and the
// page's HTML for the log, then fails the test naming step.
func (b *browser) do(step string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(step, err)
	}
}

// text returns the text of the first element sel matches, waiting for it up to timeout.
func (b *browser) text(step, sel string, timeout time.Duration) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fail(step, err)
	}
	return s
}

// screenshot returns a PNG of the viewport.
func (b *browser) screenshot() ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.CaptureScreenshot())
}

func (b *browser) fail(step string, err error) {
	b.t.Helper()
	dir := b.t.TempDir()
	if failDir := os.Getenv("E2E_ARTIFACTS"); failDir != "" {
		dir = failDir
	}
	var saved []string
	if png, serr := b.screenshot(); serr == nil {
		p := filepath.Join(dir, "browser-failure.png")
		if os.WriteFile(p, png, 0o644) == nil {
			saved = append(saved, p)
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if html, herr := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body"))); herr == nil {
		p := filepath.Join(dir, "browser-failure.html")
		if os.WriteFile(p, []byte(html), 0o644) == nil {
			saved = append(saved, p)
		}
	}
	b.mu.Lock()
	exc := strings.Join(b.exceptions, "\n")
	b.mu.Unlock()
	var hosts []string
	for h := range b.externalHosts() {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	b.t.Fatalf("browser: %s: %v\n(saved %s; set E2E_ARTIFACTS=dir to keep them)\nJavaScript exceptions: %s\nexternal hosts asked for: %v",
		step, err, strings.Join(saved, ", "), orNone(exc), hosts)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("\n%s", s)
}
