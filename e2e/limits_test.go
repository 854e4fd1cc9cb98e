package e2e

import (
	"net/http"
	"strings"
	"testing"

	"cryptopulse/tools/devstack"
)

// Requests too big to read are refused through nginx with JSON in the
// services' shape, whichever side notices: nginx for a request line or a
// single header over its 8 KiB buffers, the gateway for line and headers
// over 8 KiB together. Just under the limit is an ordinary answer.
func TestOversizedRequestsThroughNginx(t *testing.T) {
	t.Parallel()
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, Nginx: true})
	pad := func(n int) string { return strings.Repeat("a", n) }
	for _, tt := range []struct {
		name, path string
		header     http.Header
		status     int
		message    string
		error      string
		byGateway  bool
	}{
		{
			name: "request line over 8 KiB", path: "/v1/price/bitcoin?vsCurrency=" + pad(9<<10),
			status: 414, message: "Request line too long", error: "Request URI Too Long",
		},
		{
			name: "one header over 8 KiB", path: "/v1/price/bitcoin", header: http.Header{"X-Pad": {pad(9 << 10)}},
			status: 431, message: "Request Header Fields Too Large", error: "Request Header Fields Too Large",
		},
		{
			name: "headers over 8 KiB together", path: "/v1/price/bitcoin",
			header: http.Header{"X-Pad-1": {pad(3 << 10)}, "X-Pad-2": {pad(3 << 10)}, "X-Pad-3": {pad(3 << 10)}},
			status: 431, message: "Request Header Fields Too Large", error: "Request Header Fields Too Large", byGateway: true,
		},
		{
			name: "headers just under 8 KiB", path: "/v1/price/bitcoin", header: http.Header{"X-Pad": {pad(7 << 10)}},
			status: 401, message: "Missing Authorization header", error: "Unauthorized", byGateway: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := getWith(s.URL, tt.path, tt.header)
			if a.Err != nil || a.Status != tt.status || a.Body["statusCode"] != float64(tt.status) ||
				a.str("message") != tt.message || a.str("error") != tt.error {
				t.Fatalf("%d %v %.300s; want %d %q (%q)", a.Status, a.Err, a.Raw, tt.status, tt.message, tt.error)
			}
			if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if a.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			// Only a gateway names itself: this tells who refused.
			if got := a.Gateway != ""; got != tt.byGateway {
				t.Errorf("answered by a gateway: %v, want %v", got, tt.byGateway)
			}
		})
	}
}
