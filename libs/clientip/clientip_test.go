package clientip_test

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"cryptopulse/libs/clientip"
)

func prefixes(tb testing.TB, ss ...string) []netip.Prefix {
	tb.Helper()
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

func TestClientIP(t *testing.T) {
	// nginx's network, an internal load balancer, an IPv6 range, and a range
	// written as IPv4-mapped IPv6.
	r := clientip.New(prefixes(t, "10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "::ffff:172.16.0.0/108"))
	app := fiber.New()

	type header struct{ key, value string }
	xff := func(v string) header { return header{"X-Forwarded-For", v} }
	realIP := func(v string) header { return header{"X-Real-IP", v} }
	tests := []struct {
		name    string
		peer    string
		headers []header
		want    string
	}{
		// An untrusted peer is the client, whatever it claims.
		{"untrusted peer, no headers", "203.0.113.7", nil, "203.0.113.7"},
		{"untrusted peer spoofs X-Forwarded-For", "203.0.113.7", []header{xff("198.51.100.1")}, "203.0.113.7"},
		{"untrusted peer spoofs a trusted-looking chain", "203.0.113.7", []header{xff("198.51.100.1, 10.0.0.5")}, "203.0.113.7"},
		{"untrusted peer spoofs X-Real-IP", "203.0.113.7", []header{realIP("198.51.100.1")}, "203.0.113.7"},

		// A trusted peer's word is taken, from the right.
		{"trusted peer forwards the client", "10.0.0.2", []header{xff("203.0.113.7")}, "203.0.113.7"},
		{"client's spoofed entry left of the real one", "10.0.0.2", []header{xff("198.51.100.1, 203.0.113.7")}, "203.0.113.7"},
		{"several trusted hops", "10.0.0.2", []header{xff("198.51.100.1, 203.0.113.7, 192.168.1.20, 10.9.9.9")}, "203.0.113.7"},
		{"header lines joined in order", "10.0.0.2", []header{xff("203.0.113.7"), xff("192.168.1.20")}, "203.0.113.7"},
		{"later header line wins", "10.0.0.2", []header{xff("198.51.100.1"), xff("203.0.113.7")}, "203.0.113.7"},
		{"spaces and empty elements", "10.0.0.2", []header{xff(" ,203.0.113.7 ,, 10.0.0.3 , ")}, "203.0.113.7"},
		{"port on an entry", "10.0.0.2", []header{xff("203.0.113.7:51234")}, "203.0.113.7"},
		{"X-Real-IP without X-Forwarded-For", "10.0.0.2", []header{realIP("203.0.113.7")}, "203.0.113.7"},
		{"X-Forwarded-For preferred to X-Real-IP", "10.0.0.2", []header{realIP("10.0.0.3"), xff("203.0.113.7")}, "203.0.113.7"},
		{"all hops trusted: X-Real-IP", "10.0.0.2", []header{xff("10.0.0.9, 192.168.1.3"), realIP("10.0.0.9")}, "10.0.0.9"},
		{"all hops trusted, no X-Real-IP: peer", "10.0.0.2", []header{xff("10.0.0.9")}, "10.0.0.2"},
		{"trusted peer, no headers", "10.0.0.2", nil, "10.0.0.2"},

		// Garbage is ignored.
		{"garbage rightmost", "10.0.0.2", []header{xff("not-an-ip")}, "10.0.0.2"},
		{"garbage between trusted hop and client", "10.0.0.2", []header{xff("203.0.113.7, bogus, 10.0.0.3")}, "10.0.0.2"},
		{"garbage left of the client is never reached", "10.0.0.2", []header{xff("<script>, 203.0.113.7")}, "203.0.113.7"},
		{"unknown", "10.0.0.2", []header{xff("unknown")}, "10.0.0.2"},
		{"garbage does not fall back to X-Real-IP", "10.0.0.2", []header{xff("999.1.1.1"), realIP("203.0.113.7")}, "10.0.0.2"},
		{"garbage X-Real-IP", "10.0.0.2", []header{realIP("203.0.113.7; drop table")}, "10.0.0.2"},
		{"CIDR is not an address", "10.0.0.2", []header{xff("203.0.113.0/24")}, "10.0.0.2"},
		{"empty header", "10.0.0.2", []header{xff("")}, "10.0.0.2"},

		// IPv6.
		{"untrusted IPv6 peer", "2001:db8::9", []header{xff("2001:db8::1")}, "2001:db8::9"},
		{"trusted IPv6 peer forwards IPv6 client", "fd00::1", []header{xff("2001:db8::7")}, "2001:db8::7"},
		{"trusted IPv6 peer forwards IPv4 client", "fd00::1", []header{xff("203.0.113.7")}, "203.0.113.7"},
		{"bracketed IPv6 with port", "10.0.0.2", []header{xff("[2001:db8::7]:443")}, "2001:db8::7"},
		{"bracketed IPv6 without port", "10.0.0.2", []header{xff("[2001:db8::7]")}, "2001:db8::7"},
		{"IPv6 written long", "10.0.0.2", []header{xff("2001:0db8:0000:0000:0000:0000:0000:0007")}, "2001:db8::7"},
		{"zone dropped", "10.0.0.2", []header{xff("fe80::1%eth0")}, "fe80::1"},
		{"IPv4-mapped peer is trusted as IPv4", "::ffff:10.0.0.2", []header{xff("203.0.113.7")}, "203.0.113.7"},
		{"IPv4-mapped client is reported as IPv4", "10.0.0.2", []header{xff("::ffff:203.0.113.7")}, "203.0.113.7"},
		{"untrusted IPv4-mapped peer is reported as IPv4", "::ffff:203.0.113.7", nil, "203.0.113.7"},
		{"mapped trusted prefix matches IPv4 peer", "172.16.5.5", []header{xff("203.0.113.7")}, "203.0.113.7"},
		{"mapped trusted hop skipped", "10.0.0.2", []header{xff("203.0.113.7, ::ffff:172.16.0.1")}, "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fctx fasthttp.RequestCtx
			fctx.Request.SetRequestURI("/price")
			fctx.SetRemoteAddr(&net.TCPAddr{IP: net.ParseIP(tt.peer), Port: 40000})
			for _, h := range tt.headers {
				fctx.Request.Header.Add(h.key, h.value)
			}
			c := app.AcquireCtx(&fctx)
			defer app.ReleaseCtx(c)
			if got := r.ClientIP(c); got != tt.want {
				t.Fatalf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrusted(t *testing.T) {
	r := clientip.New(prefixes(t, "10.0.0.0/8", "127.0.0.1/32", "fd00::/8", "::ffff:172.16.0.0/108", "192.168.1.77/24"))
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"127.0.0.1", true},
		{"127.0.0.2", false},
		{"::ffff:10.0.0.1", true},
		{"fd12::1", true},
		{"fe80::1", false},
		{"172.16.0.1", true},
		{"::ffff:172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true}, // the prefix's host bits are ignored
		{"::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := r.Trusted(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Fatalf("Trusted(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	if clientip.New(nil).Trusted(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("a Resolver with no prefixes trusts nobody")
	}
}

// Through a real listener the peer is the real TCP peer, 127.0.0.1.
func TestClientIPOverTCP(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		xff     string
		want    string
	}{
		{"loopback untrusted: spoof ignored", nil, "203.0.113.7", "127.0.0.1"},
		{"loopback trusted: forwarded client", []string{"127.0.0.0/8"}, "203.0.113.7", "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clientip.New(prefixes(t, tt.trusted...))
			app := fiber.New(fiber.Config{DisableStartupMessage: true})
			app.Get("/", func(c *fiber.Ctx) error { return c.SendString(r.ClientIP(c)) })
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = app.Listener(ln) }()
			t.Cleanup(func() { _ = app.Shutdown() })

			req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-For", tt.xff)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tt.want {
				t.Fatalf("ClientIP = %q, want %q", body, tt.want)
			}
		})
	}
}

func BenchmarkClientIP(b *testing.B) {
	r := clientip.New(prefixes(b, "10.0.0.0/8", "192.168.1.0/24"))
	app := fiber.New()
	var fctx fasthttp.RequestCtx
	fctx.SetRemoteAddr(&net.TCPAddr{IP: net.ParseIP("10.0.0.2")})
	fctx.Request.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 192.168.1.20")
	c := app.AcquireCtx(&fctx)
	defer app.ReleaseCtx(c)
	for b.Loop() {
		_ = r.ClientIP(c)
	}
}
