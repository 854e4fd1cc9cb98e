// Package config reads a service's settings from its environment and a .env
// file, collecting every bad value so a service that will not start says at
// once which variables to fix. Nothing below a service's run function calls
// os.Getenv: the lookup function is passed in, so tests set what they need.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Getenv looks a variable up; the empty string means unset.
type Getenv func(key string) string

// WithDotEnv returns a lookup that prefers the real environment and falls back
// to the KEY=VALUE lines of the file at path (a missing file is not an error:
// .env is optional, .env.example documents it).
func WithDotEnv(getenv Getenv, path string) (Getenv, error) {
	file, err := ReadDotEnv(path)
	if err != nil {
		return nil, err
	}
	if len(file) == 0 {
		return getenv, nil
	}
	return func(key string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return file[key]
	}, nil
}

// Reader parses variables and remembers every problem; call Err once at the end.
type Reader struct {
	get  Getenv
	errs []error
}

// NewReader returns a Reader over getenv.
func NewReader(getenv Getenv) *Reader { return &Reader{get: getenv} }

func (r *Reader) fail(key, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
}

// Err reports every invalid or missing variable, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(r.errs...))
}

// String returns the variable or def when it is unset.
func (r *Reader) String(key, def string) string {
	if v := strings.TrimSpace(r.get(key)); v != "" {
		return v
	}
	return def
}

// Required returns the variable and records an error when it is unset or
// still a placeholder from .env.example or the deployment guide.
func (r *Reader) Required(key string) string {
	v := strings.TrimSpace(r.get(key))
	switch {
	case v == "":
		r.fail(key, "is required")
	case isPlaceholder(v):
		r.fail(key, "is still the example value %q, which anyone who has read the repository knows: "+
			"set a value of your own, for instance the output of `openssl rand -hex 32`", v)
	}
	return v
}

// isPlaceholder tells the values .env.example and the deployment guide show
// for the secrets. A deployment started from an unedited copy would let
// anyone forge an admin token, so no service starts with one of them.
func isPlaceholder(v string) bool {
	switch v {
	case "change-me", "change-me-to-a-random-string-of-at-least-32-characters",
		"your-secure-password", "your-secret-key-min-32-chars":
		return true
	}
	return false
}

// Secret is Required plus a minimum length.
func (r *Reader) Secret(key string, minLen int) string {
	v := r.Required(key)
	if v != "" && len(v) < minLen {
		r.fail(key, "must be at least %d characters (got %d)", minLen, len(v))
	}
	return v
}

// Int returns the variable as an integer within [lo, hi].
func (r *Reader) Int(key string, def, lo, hi int) int {
	raw := strings.TrimSpace(r.get(key))
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		r.fail(key, "must be a whole number, got %q", raw)
		return def
	}
	if n < lo || n > hi {
		r.fail(key, "must be between %d and %d, got %d", lo, hi, n)
		return def
	}
	return n
}

// Millis returns a variable holding milliseconds, as in BATCH_WINDOW_MS.
func (r *Reader) Millis(key string, def time.Duration, lo, hi time.Duration) time.Duration {
	n := r.Int(key, int(def/time.Millisecond), int(lo/time.Millisecond), int(hi/time.Millisecond))
	return time.Duration(n) * time.Millisecond
}

// Duration returns a variable in Go duration syntax ("2s", "150ms").
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	raw := strings.TrimSpace(r.get(key))
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		r.fail(key, "must be a duration such as 2s or 500ms, got %q", raw)
		return def
	}
	return d
}

// OneOf returns the variable if it is one of the allowed values.
func (r *Reader) OneOf(key, def string, allowed ...string) string {
	v := r.String(key, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	return def
}

// Prefixes returns a comma-separated list of CIDRs or addresses; a bare
// address means just that host.
func (r *Reader) Prefixes(key, def string) []netip.Prefix {
	raw := r.String(key, def)
	var out []netip.Prefix
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			r.fail(key, "%q is neither a CIDR nor an IP address", part)
			continue
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out
}

// HostPorts returns a comma-separated list of host:port addresses, such as
// REDIS_SENTINELS; unset means none.
func (r *Reader) HostPorts(key string) []string {
	var out []string
	for _, part := range strings.Split(r.String(key, ""), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		host, port, err := net.SplitHostPort(part)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			r.fail(key, "%q is not a host:port such as 10.0.0.5:26379", part)
			continue
		}
		out = append(out, part)
	}
	return out
}

// URL returns a variable holding a URL whose scheme is one of schemes.
func (r *Reader) URL(key, def string, schemes ...string) string {
	v := r.String(key, def)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		r.fail(key, "%q is not a URL such as %s://host:port/...", MaskURL(v), schemes[0])
		return v
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return v
		}
	}
	r.fail(key, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
	return v
}

// Fail records a problem found by a service's own checks.
func (r *Reader) Fail(key, format string, args ...any) { r.fail(key, format, args...) }

// Mask hides a secret for logging, keeping a hint of its length.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("***(%d chars)", len(s))
}

// MaskURL hides the password of a URL such as a DATABASE_URL.
func MaskURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	creds, host, ok := strings.Cut(rest, "@")
	if !ok {
		return s
	}
	if user, _, hasPass := strings.Cut(creds, ":"); hasPass {
		return scheme + "://" + user + ":***@" + host
	}
	return s
}

// FromEnv returns a Reader over the environment and the .env file that
// ENV_FILE names (default ".env"), the way every service loads its settings.
func FromEnv(getenv Getenv) (*Reader, error) {
	file := getenv("ENV_FILE")
	if file == "" {
		file = ".env"
	}
	withFile, err := WithDotEnv(getenv, file)
	if err != nil {
		return nil, err
	}
	return NewReader(withFile), nil
}

// ReadDotEnv reads the KEY=VALUE lines of a .env file the way docker
// compose's env_file does: blank lines and # comments are skipped, "export "
// is allowed, quotes are taken off, and an unquoted value ends at a comment
// preceded by white space. A missing file reads as empty.
func ReadDotEnv(path string) (map[string]string, error) {
	out := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected KEY=VALUE", path, n)
		}
		out[strings.TrimSpace(k)] = dotEnvValue(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

func dotEnvValue(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && strings.LastIndexByte(v, v[0]) > 0 {
		return v[1:strings.LastIndexByte(v, v[0])]
	}
	if strings.HasPrefix(v, "#") {
		return ""
	}
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}

// LoopbackAddr reads an optional host:port that must be on a loopback
// address (a debug listener such as PPROF_ADDR must not be reachable from
// outside); empty means off.
func (r *Reader) LoopbackAddr(key string) string {
	addr := r.String(key, "")
	if addr == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	ok := err == nil && host == "localhost"
	if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && ip.IsLoopback() {
		ok = true
	}
	if !ok {
		r.fail(key, "must be a loopback host:port such as 127.0.0.1:6060 (profiles must not be reachable from outside), got %q", addr)
		return ""
	}
	return addr
}
