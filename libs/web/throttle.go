package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/throttle"
)

// Messages a throttled client can see.
const (
	// MsgTooManyRequests is the message NestJS's ThrottlerGuard sent, kept so
	// clients of the original see the same answer.
	MsgTooManyRequests = "ThrottlerException: Too Many Requests"
	// MsgUnavailable answers when the limiter cannot reach Redis: failing
	// closed, since an unthrottled login would invite password guessing.
	MsgUnavailable = "Service unavailable: rate limiter store (Redis) is unreachable"
)

// Throttle checks rules for the request in c with l, c.UserContext() bounding
// the Redis call, and puts the remaining budget on the answer in both the common
// X-RateLimit-* headers and the IETF RateLimit / RateLimit-Policy fields.
//
// It returns nil when the request may proceed; a 429 *httperr.Error with
// Retry-After when it may not; a 503 *httperr.Error wrapping the cause when
// Redis fails; and an error wrapping throttle.ErrInvalidRule (a 500) for a bad
// rule. The limiter itself knows nothing of HTTP: this is its HTTP face.
func Throttle(c *fiber.Ctx, l *throttle.Limiter, rules ...throttle.Rule) error {
	d, err := l.Allow(c.UserContext(), rules...)
	return respond(c, d, err)
}

// ThrottleAdd is Throttle with AllowAdd: when the request may proceed, e is on
// the stream and its entry id is returned; the answers and headers are
// Throttle's.
func ThrottleAdd(c *fiber.Ctx, l *throttle.Limiter, e throttle.Entry, rules ...throttle.Rule) (string, error) {
	d, id, err := l.AllowAdd(c.UserContext(), e, rules...)
	if err := respond(c, d, err); err != nil {
		return "", err
	}
	return id, nil
}

// respond puts a decision's headers on the answer and turns it, or the
// error of reaching it, into Throttle's result.
func respond(c *fiber.Ctx, d throttle.Decision, err error) error {
	if err != nil {
		if errors.Is(err, throttle.ErrInvalidRule) {
			return err
		}
		return httperr.Wrap(http.StatusServiceUnavailable, MsgUnavailable, err)
	}
	h := rateLimitHeaders(d)
	for _, kv := range h {
		c.Set(kv[0], kv[1])
	}
	if d.Allowed {
		return nil
	}
	e := httperr.New(http.StatusTooManyRequests, MsgTooManyRequests)
	// Carried on the error too, so the answer keeps them whatever the error
	// handler does with headers set before it ran.
	for _, kv := range h {
		e.WithHeader(kv[0], kv[1])
	}
	return e.WithHeader(fiber.HeaderRetryAfter, httperr.RetryAfter(ceilMillis(d.RetryAfter)))
}

// rateLimitHeaders returns the rate-limit header fields describing d, as
// name/value pairs in a fixed order. Times are whole seconds, rounded up so a
// client that waits that long is never early.
func rateLimitHeaders(d throttle.Decision) [][2]string {
	limit := strconv.Itoa(d.Limit)
	remaining := strconv.Itoa(d.Remaining)
	reset := strconv.FormatInt(ceilSeconds(d.Reset), 10)
	policy := sfString(d.Rule.Policy)
	return [][2]string{
		{"X-RateLimit-Limit", limit},
		{"X-RateLimit-Remaining", remaining},
		{"X-RateLimit-Reset", reset},
		// draft-ietf-httpapi-ratelimit-headers: q is the quota, w the window,
		// r the remaining quota and t the seconds until it resets.
		{"RateLimit-Policy", policy + ";q=" + limit + ";w=" + strconv.FormatInt(ceilSeconds(d.Rule.Window), 10)},
		{"RateLimit", policy + ";r=" + remaining + ";t=" + reset},
	}
}

func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// sfString quotes a policy name as a structured-field string (RFC 8941),
// which allows only printable ASCII with '"' and '\' escaped.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	b.WriteByte('"')
	return b.String()
}
