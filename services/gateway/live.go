package main

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// livePage is GET /live, where a person logs in and watches prices move:
// one HTML file with its CSS and JavaScript inline, so there is no build
// step and nothing is loaded from anywhere but this host.
//
//go:embed live.html
var livePage []byte

// live serves the page. Like /docs it is neither authenticated nor
// throttled: the page logs in itself, and its API calls are.
func live(app *fiber.App) {
	policy := livePolicy(livePage)
	app.Get("/live", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		c.Set(fiber.HeaderContentSecurityPolicy, policy)
		c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
		return c.Send(livePage)
	})
}

// livePolicy is the page's Content-Security-Policy: its own inline style
// and script, allowed by their hashes (computed here, so editing the page
// cannot leave a stale hash behind), requests to this origin only (login,
// candles, the EventSource), and nothing else: no other script, no frames,
// no form that posts a password anywhere. It panics if the page does not
// hold exactly one <style> and one <script>, which the tests catch.
func livePolicy(page []byte) string {
	hash := func(tag string) string {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		found := re.FindAllSubmatch(page, -1)
		if len(found) != 1 {
			panic(fmt.Sprintf("gateway: live.html holds %d <%s> elements, want 1", len(found), tag))
		}
		sum := sha256.Sum256(found[0][1])
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + hash("script"),
		"style-src " + hash("style"),
		"connect-src 'self'",
		"img-src data:", // the empty favicon, so the browser asks for none
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}
