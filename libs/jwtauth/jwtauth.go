// Package jwtauth issues and verifies the access tokens clients send as
// "Authorization: Bearer <token>". Tokens are HS256 only: a token that names
// any other algorithm, including "none", is rejected before its signature is
// even looked at.
package jwtauth

//lint:file-ignore ST1005 the error texts are the 401 messages clients match on, capitalised as the original sent them

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// MinSecretLen is the shortest JWT_SECRET a service accepts.
const MinSecretLen = 32

// MaxTokenLen bounds the token a verifier will parse; a real token is a few
// hundred bytes, so anything this large is junk or an attack.
const MaxTokenLen = 4096

// The 401 messages the original CryptoPulse sent; clients match on them.
var (
	ErrMissingHeader = errors.New("Missing Authorization header")
	ErrNotBearer     = errors.New("Authorization header must use Bearer token")
	ErrBadBearer     = errors.New("Invalid Bearer token")
	ErrInvalidToken  = errors.New("Invalid or expired token")
)

// Claims are what a token says about its holder.
type Claims struct {
	Username string `json:"username"`
	jwt.RegisteredClaims
}

// Issuer signs tokens.
type Issuer struct {
	secret    []byte
	ttl       time.Duration
	expiresIn string
	now       func() time.Time
}

// NewIssuer returns an Issuer; expiresIn is the JWT_EXPIRES_IN text ("1h").
func NewIssuer(secret, expiresIn string, now func() time.Time) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT_SECRET must be at least %d characters", MinSecretLen)
	}
	ttl, err := ParseExpiresIn(expiresIn)
	if err != nil {
		return nil, fmt.Errorf("JWT_EXPIRES_IN: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{secret: []byte(secret), ttl: ttl, expiresIn: expiresIn, now: now}, nil
}

// ExpiresIn is the configured lifetime as the client sees it ("1h").
func (i *Issuer) ExpiresIn() string { return i.expiresIn }

// Issue returns a signed token for the subject.
func (i *Issuer) Issue(sub, username string) (string, error) {
	now := i.now()
	claims := Claims{
		Username: username,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verifier checks tokens. It keeps the tokens it has verified, so a client
// that sends the same token on every request pays for its HMAC and its
// claims' JSON once: that was a tenth of the gateway's CPU on the price
// path. A kept token is still refused once it expires.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time

	mu   sync.RWMutex
	seen map[string]seenToken
}

// seenToken is a verified token's claims and when it stops being valid.
type seenToken struct {
	claims  Claims
	expires time.Time
}

// maxSeen bounds the verified tokens kept; past it the set starts empty
// again. Far more than one gateway's distinct clients within a token's
// lifetime, and small enough (~2 MB) to never matter.
const maxSeen = 8192

// leeway is the clock skew between instances that is forgiven.
const leeway = 5 * time.Second

// NewVerifier returns a Verifier for the secret.
func NewVerifier(secret string, now func() time.Time) (*Verifier, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT_SECRET must be at least %d characters", MinSecretLen)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	}
	if now == nil {
		now = time.Now
	}
	opts = append(opts, jwt.WithTimeFunc(now))
	return &Verifier{secret: []byte(secret), parser: jwt.NewParser(opts...), now: now, seen: map[string]seenToken{}}, nil
}

// VerifyHeader checks an Authorization header value and returns the claims,
// or one of the Err* values whose text is the message the client gets.
func (v *Verifier) VerifyHeader(header string) (*Claims, error) {
	if strings.TrimSpace(header) == "" {
		return nil, ErrMissingHeader
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(header), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, ErrNotBearer
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > MaxTokenLen || strings.Count(token, ".") != 2 || strings.IndexFunc(token, notTokenChar) >= 0 {
		return nil, ErrBadBearer
	}
	return v.Verify(token)
}

// Verify checks a bare token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	now := v.now()
	v.mu.RLock()
	st, ok := v.seen[token]
	v.mu.RUnlock()
	if ok {
		if now.Before(st.expires) {
			c := st.claims
			return &c, nil
		}
		v.mu.Lock()
		delete(v.seen, token)
		v.mu.Unlock()
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	// Only a token that is valid from now until it expires is kept: one
	// with a not-before is checked every time (the issuer sets none).
	if c.NotBefore == nil && c.ExpiresAt != nil {
		v.mu.Lock()
		if len(v.seen) >= maxSeen {
			clear(v.seen)
		}
		v.seen[token] = seenToken{claims: c, expires: c.ExpiresAt.Add(leeway)}
		v.mu.Unlock()
	}
	return &c, nil
}

// notTokenChar is true outside the base64url alphabet and the dots of a JWT.
func notTokenChar(r rune) bool {
	return !(r == '-' || r == '_' || r == '.' || r == '=' || (r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))))
}

// ParseExpiresIn reads a lifetime in the style of the original's
// JWT_EXPIRES_IN: a number of seconds ("3600") or a number with a unit
// s, m, h, d or w ("15m", "1h", "7d").
func ParseExpiresIn(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("is empty")
	}
	units := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}
	num, unit := s, "s"
	if last := s[len(s)-1:]; units[last] != 0 {
		num, unit = s[:len(s)-1], last
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > 365*24*3600 {
		return 0, fmt.Errorf("%q is not a lifetime such as 3600, 15m, 1h or 7d", s)
	}
	// Checked before multiplying: a large count of a large unit overflows
	// time.Duration and would wrap to a negative or short lifetime.
	if n > int64(366*24*time.Hour/units[unit]) {
		return 0, fmt.Errorf("%q is longer than a year", s)
	}
	d := time.Duration(n) * units[unit]
	if d > 366*24*time.Hour {
		return 0, fmt.Errorf("%q is longer than a year", s)
	}
	return d, nil
}
