package throttle_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/tools/testkit"
)

// fastClient is configured as the services should configure theirs: short
// timeouts and no retries, so a dead Redis costs a request well under a
// second. DialerRetries matters as much as MaxRetries: its default of 5, with
// 100ms between attempts, adds 400ms to every check while Redis refuses
// connections, and five whole DialTimeouts when it black-holes them.
func fastClient(tb testing.TB, r *testkit.Redis) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          r.Addr,
		DialTimeout:   300 * time.Millisecond,
		ReadTimeout:   300 * time.Millisecond,
		WriteTimeout:  300 * time.Millisecond,
		PoolTimeout:   300 * time.Millisecond,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
