package jwtauth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"cryptopulse/libs/jwtauth"
)

const secret = "jwtauth-test-secret-at-least-32-chars"

// now is the fixed clock of these tests.
var now = time.Date(2026, 2, 28, 3, 55, 0, 0, time.UTC)

func clock() time.Time { return now }

// sign builds a token by hand: any header, any claims, an HMAC-SHA256 (or
// no) signature, so tests can make tokens the library would refuse to make.
func sign(t *testing.T, header, claims map[string]any, key string, hash func() []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	if hash != nil {
		return signing + "." + base64.RawURLEncoding.EncodeToString(hash())
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func claims(change func(map[string]any)) map[string]any {
	c := map[string]any{"sub": "admin", "username": "admin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if change != nil {
		change(c)
	}
	return c
}

var hs256 = map[string]any{"alg": "HS256", "typ": "JWT"}

func TestVerifyHeader(t *testing.T) {
	v, err := jwtauth.NewVerifier(secret, clock)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, hs256, claims(nil), secret, nil)
	libHS512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims(claims(nil))).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	// Flip a character in the middle of the signature; the last one may
	// only carry padding bits.
	sig := strings.LastIndexByte(valid, '.') + 10
	flip := map[byte]byte{'A': 'B'}[valid[sig]]
	if flip == 0 {
		flip = 'A'
	}
	badSig := valid[:sig] + string(flip) + valid[sig+1:]
	bigClaims := claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 10<<10) })

	table := []struct {
		name   string
		header string
		want   error // nil: accepted
	}{
		{"valid", "Bearer " + valid, nil},
		{"scheme is case-insensitive", "bearer " + valid, nil},
		{"surrounding spaces", "  Bearer " + valid + "  ", nil},

		{"no header", "", jwtauth.ErrMissingHeader},
		{"blank header", "   ", jwtauth.ErrMissingHeader},
		{"basic", "Basic YWRtaW46cGFzcw==", jwtauth.ErrNotBearer},
		{"token without scheme", valid, jwtauth.ErrNotBearer},
		{"tab after scheme", "Bearer\t" + valid, jwtauth.ErrNotBearer},
		{"Bearer alone", "Bearer", jwtauth.ErrBadBearer},
		{"Bearer and a space", "Bearer ", jwtauth.ErrBadBearer},
		{"two segments", "Bearer a.b", jwtauth.ErrBadBearer},
		{"four segments", "Bearer a.b.c.d", jwtauth.ErrBadBearer},
		{"junk characters", "Bearer <script>.alert(1).x", jwtauth.ErrBadBearer},
		{"two tokens", "Bearer " + valid + " " + valid, jwtauth.ErrBadBearer},
		{"non-ASCII", "Bearer é.é.é", jwtauth.ErrBadBearer},
		{"10 KB of junk", "Bearer " + strings.Repeat("a", 5<<10) + "." + strings.Repeat("b", 5<<10) + ".c", jwtauth.ErrBadBearer},
		{"10 KB validly signed", "Bearer " + sign(t, hs256, bigClaims, secret, nil), jwtauth.ErrBadBearer},

		{"alg none", "Bearer " + sign(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(nil), "", func() []byte { return nil }), jwtauth.ErrInvalidToken},
		{"alg None signed", "Bearer " + sign(t, map[string]any{"alg": "None"}, claims(nil), secret, nil), jwtauth.ErrInvalidToken},
		{"HS512 with the secret", "Bearer " + libHS512, jwtauth.ErrInvalidToken},
		{"RS256 header, HMAC signature", "Bearer " + sign(t, map[string]any{"alg": "RS256", "typ": "JWT"}, claims(nil), secret, nil), jwtauth.ErrInvalidToken},
		{"no alg", "Bearer " + sign(t, map[string]any{"typ": "JWT"}, claims(nil), secret, nil), jwtauth.ErrInvalidToken},
		{"bad signature", "Bearer " + badSig, jwtauth.ErrInvalidToken},
		{"empty signature", "Bearer " + valid[:strings.LastIndexByte(valid, '.')+1], jwtauth.ErrInvalidToken},
		{"other secret", "Bearer " + sign(t, hs256, claims(nil), secret+"-other", nil), jwtauth.ErrInvalidToken},
		{"expired", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), secret, nil), jwtauth.ErrInvalidToken},
		{"nbf in the future", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), secret, nil), jwtauth.ErrInvalidToken},
		{"iat in the future", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), secret, nil), jwtauth.ErrInvalidToken},
		{"no exp", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { delete(c, "exp") }), secret, nil), jwtauth.ErrInvalidToken},
		{"exp as text", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["exp"] = "tomorrow" }), secret, nil), jwtauth.ErrInvalidToken},
		{"no sub", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { delete(c, "sub") }), secret, nil), jwtauth.ErrInvalidToken},
		{"empty sub", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["sub"] = "" }), secret, nil), jwtauth.ErrInvalidToken},
		{"numeric sub", "Bearer " + sign(t, hs256, claims(func(c map[string]any) { c["sub"] = 42 }), secret, nil), jwtauth.ErrInvalidToken},
		{"claims not an object", "Bearer " + base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + ".W10.x", jwtauth.ErrInvalidToken},
		{"segments not base64", "Bearer a.b.c", jwtauth.ErrInvalidToken},
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.VerifyHeader(tt.header)
			if tt.want == nil {
				if err != nil || c == nil || c.Subject != "admin" || c.Username != "admin" {
					t.Fatalf("VerifyHeader = %+v, %v; want the claims", c, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || c != nil {
				t.Fatalf("VerifyHeader = %+v, %v; want %v", c, err, tt.want)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	v, err := jwtauth.NewVerifier(secret, clock)
	if err != nil {
		t.Fatal(err)
	}
	// A few seconds of clock skew between instances is forgiven, no more.
	for _, tt := range []struct {
		name string
		c    map[string]any
		ok   bool
	}{
		{"expired 2s ago", claims(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Second).Unix() }), true},
		{"expired 10s ago", claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }), false},
		{"issued 2s ahead", claims(func(c map[string]any) { c["iat"] = now.Add(2 * time.Second).Unix() }), true},
		{"issued 10s ahead", claims(func(c map[string]any) { c["iat"] = now.Add(10 * time.Second).Unix() }), false},
	} {
		if _, err := v.Verify(sign(t, hs256, tt.c, secret, nil)); (err == nil) != tt.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestIssue(t *testing.T) {
	iss, err := jwtauth.NewIssuer(secret, "1h", clock)
	if err != nil {
		t.Fatal(err)
	}
	if iss.ExpiresIn() != "1h" {
		t.Errorf("ExpiresIn = %q", iss.ExpiresIn())
	}
	tok, err := iss.Issue("sub-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	var header, body map[string]any
	for i, v := range []*map[string]any{&header, &body} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "HS256" || header["typ"] != "JWT" || len(header) != 2 {
		t.Errorf("header = %v", header)
	}
	want := map[string]any{"sub": "sub-1", "username": "alice", "iat": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix())}
	if len(body) != len(want) {
		t.Errorf("claims = %v, want %v", body, want)
	}
	for k, w := range want {
		if body[k] != w {
			t.Errorf("claim %s = %v, want %v", k, body[k], w)
		}
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Errorf("signature is not HMAC-SHA256 with the secret")
	}

	v, err := jwtauth.NewVerifier(secret, clock)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.VerifyHeader("Bearer " + tok)
	if err != nil || c.Subject != "sub-1" || c.Username != "alice" {
		t.Errorf("round trip: %+v, %v", c, err)
	}
	// An hour and a bit later the verifier says expired.
	late, _ := jwtauth.NewVerifier(secret, func() time.Time { return now.Add(time.Hour + 10*time.Second) })
	if _, err := late.VerifyHeader("Bearer " + tok); !errors.Is(err, jwtauth.ErrInvalidToken) {
		t.Errorf("after expiry: %v, want ErrInvalidToken", err)
	}
}

func TestShortSecretRefused(t *testing.T) {
	short := strings.Repeat("s", jwtauth.MinSecretLen-1)
	if _, err := jwtauth.NewIssuer(short, "1h", nil); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("NewIssuer with a 31-char secret: %v", err)
	}
	if _, err := jwtauth.NewVerifier(short, nil); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("NewVerifier with a 31-char secret: %v", err)
	}
	if _, err := jwtauth.NewIssuer(strings.Repeat("s", jwtauth.MinSecretLen), "1h", nil); err != nil {
		t.Errorf("NewIssuer with a 32-char secret: %v", err)
	}
	if _, err := jwtauth.NewIssuer(secret, "1x", nil); err == nil || !strings.Contains(err.Error(), "JWT_EXPIRES_IN") {
		t.Errorf("NewIssuer with expiresIn 1x: %v", err)
	}
}

func TestParseExpiresIn(t *testing.T) {
	table := []struct {
		in   string
		want time.Duration // 0: refused
	}{
		{"3600", time.Hour},
		{"1h", time.Hour},
		{"15m", 15 * time.Minute},
		{"30s", 30 * time.Second},
		{"7d", 7 * 24 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{" 1h ", time.Hour},
		{"", 0},
		{"h", 0},
		{"0", 0},
		{"-1h", 0},
		{"1x", 0},
		{"1.5h", 0},
		{"1h30m", 0},
		{"forever", 0},
		{"100w", 0},
		{"366d", 366 * 24 * time.Hour},
		{"52w", 52 * 7 * 24 * time.Hour},
		{"367d", 0},
		{"53w", 0},
		// These once overflowed time.Duration: a negative lifetime (every
		// token born expired) or a few days, accepted without a word.
		{"31536000w", 0},
		{"31536000d", 0},
		{"15250285w", 0},
		{"99999999999999999999", 0},
		{"9223372036854775807s", 0},
	}
	for _, tt := range table {
		got, err := jwtauth.ParseExpiresIn(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("ParseExpiresIn(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseExpiresIn(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// A token the verifier has already accepted (and keeps) is still refused
// once it expires, and a token that differs by one signature character is
// not taken for it.
func TestKeptTokenStillExpires(t *testing.T) {
	at := now
	v, err := jwtauth.NewVerifier(secret, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, hs256, claims(func(c map[string]any) { c["exp"] = now.Add(time.Minute).Unix() }), secret, nil)
	for range 3 {
		if c, err := v.Verify(tok); err != nil || c.Subject != "admin" {
			t.Fatalf("Verify = %+v, %v; want the claims", c, err)
		}
	}
	sig := strings.LastIndexByte(tok, '.') + 5
	other := tok[:sig] + map[bool]string{true: "B", false: "A"}[tok[sig] == 'A'] + tok[sig+1:]
	if _, err := v.Verify(other); !errors.Is(err, jwtauth.ErrInvalidToken) {
		t.Fatalf("a forged signature next to a kept token: %v, want ErrInvalidToken", err)
	}
	at = now.Add(time.Minute + 4*time.Second) // inside the leeway
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	at = now.Add(time.Minute + 6*time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, jwtauth.ErrInvalidToken) {
		t.Fatalf("expired kept token: %v, want ErrInvalidToken", err)
	}
}
