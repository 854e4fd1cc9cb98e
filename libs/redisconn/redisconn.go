// Package redisconn opens the Redis client every service uses, tuned to fail
// fast: when Redis is down a request must get its 503 within a second rather
// than hang on a dead connection, and the client reconnects by itself when
// Redis is back.
package redisconn

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open parses a redis:// URL and returns a client with short timeouts.
func Open(url string, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout = 300 * time.Millisecond
	// A dead Redis refuses connections at once; these bound a Redis that
	// hangs, and stay under a second so a client still gets its 503 in
	// time, while riding out the short stalls of a busy machine.
	opt.ReadTimeout = 800 * time.Millisecond
	opt.WriteTimeout = 800 * time.Millisecond
	opt.PoolTimeout = 800 * time.Millisecond
	// A retry would double the time a client waits for its 503.
	opt.MaxRetries = -1
	// go-redis dials 5 times by default; once is enough to know Redis is down.
	opt.DialerRetries = 1
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewClient(opt), nil
}
