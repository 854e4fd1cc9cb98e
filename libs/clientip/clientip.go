// Package clientip decides who the client of a request is: the TCP peer, or,
// when the peer is a proxy we trust (nginx), the address that proxy says it
// saw. Forwarded headers from anyone else are ignored, so a client cannot
// dodge a per-address limit by sending its own X-Forwarded-For.
package clientip

import (
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Resolver finds the client address of requests. It is safe for concurrent
// use; its prefixes never change after New.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes forwarded headers only from peers
// inside trusted. IPv4-mapped IPv6 prefixes are turned into their IPv4 form,
// as addresses are, so either spelling matches.
func New(trusted []netip.Prefix) *Resolver {
	ps := make([]netip.Prefix, 0, len(trusted))
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		ps = append(ps, p.Masked())
	}
	return &Resolver{trusted: ps}
}

// Trusted reports whether addr is inside a trusted prefix.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	addr = normalize(addr)
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address of the request in c, as a string.
//
// An untrusted peer is the client, whatever its headers say. A trusted peer's
// X-Forwarded-For is walked from the right, each proxy having appended the
// address it saw, skipping trusted hops; the first untrusted address is the
// client. With no such address it falls back to X-Real-IP, then to the peer.
// An entry that is not an address means the chain cannot be followed past it,
// so the peer is used.
func (r *Resolver) ClientIP(c *fiber.Ctx) string {
	peer, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	peer = normalize(peer)
	if !r.Trusted(peer) {
		return peer.String()
	}
	// Several header lines form one list, in order.
	lines := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	for i := len(lines) - 1; i >= 0; i-- {
		rest := string(lines[i])
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else {
				rest, entry = "", rest
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue // empty list elements are legal and mean nothing
			}
			addr, ok := parse(entry)
			if !ok {
				return peer.String()
			}
			if !r.Trusted(addr) {
				return addr.String()
			}
		}
	}
	if v := strings.TrimSpace(c.Get("X-Real-IP")); v != "" {
		if addr, ok := parse(v); ok {
			return addr.String()
		}
	}
	return peer.String()
}

// parse reads one forwarded address, with or without a port (some proxies
// add one), normalised.
func parse(s string) (netip.Addr, bool) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return normalize(addr), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	// A bracketed IPv6 address without a port.
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if addr, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && addr.Is6() {
			return normalize(addr), true
		}
	}
	return netip.Addr{}, false
}

// normalize makes one spelling of each address: IPv4-mapped IPv6 becomes
// IPv4, so ::ffff:10.0.0.1 and 10.0.0.1 are one client, and zones go, since a
// zone names a local interface, not a client.
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
