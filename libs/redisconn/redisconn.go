// Package redisconn opens the Redis client every service uses, tuned to fail
// fast: when Redis is down a request must get its 503 within a second rather
// than hang on a dead connection, and the client reconnects by itself when
// Redis is back.
package redisconn

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/config"
)

// The fail-fast settings, shared by the plain and the failover client.
const (
	dialTimeout = 300 * time.Millisecond
	// A dead Redis refuses connections at once; these bound a Redis that
	// hangs, and stay under a second so a client still gets its 503 in
	// time, while riding out the short stalls of a busy machine.
	ioTimeout = 800 * time.Millisecond
	// A retry would double the time a client waits for its 503.
	maxRetries = -1
	// go-redis dials 5 times by default; once is enough to know Redis is down.
	dialerRetries = 1
)

// Open parses a redis:// URL and returns a client with short timeouts.
func Open(url string, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout = dialTimeout
	opt.ReadTimeout = ioTimeout
	opt.WriteTimeout = ioTimeout
	opt.PoolTimeout = ioTimeout
	opt.MaxRetries = maxRetries
	opt.DialerRetries = dialerRetries
	if poolSize > 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewClient(opt), nil
}

// OpenConfig opens the Redis a service's settings name: through Sentinel
// when REDIS_SENTINELS is set, else the single Redis of REDIS_URL.
func OpenConfig(b config.Base, poolSize int) (*redis.Client, error) {
	if len(b.RedisSentinels) == 0 {
		return Open(b.RedisURL, poolSize)
	}
	return OpenFailover(b.RedisURL, Sentinel{Addrs: b.RedisSentinels, MasterName: b.RedisMasterName, Password: b.RedisSentinelPassword}, poolSize)
}

// Sentinel names the Sentinels to ask and the master they watch.
type Sentinel struct {
	Addrs      []string
	MasterName string
	// Password is the Sentinels' own requirepass, not the master's.
	Password string
}

// OpenFailover returns go-redis's failover client: it asks the Sentinels for
// the master's address on every dial and, when Sentinel announces a new
// master (+switch-master), closes its connections to the old one. A
// connection answered READONLY (a demoted master) is closed too, so the next
// command dials the new master. The database, password, user name and TLS
// come from url; its host is ignored. The timeouts are Open's, and bound the
// questions to the Sentinels as well.
func OpenFailover(url string, s Sentinel, poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	fo := &redis.FailoverOptions{
		MasterName:       s.MasterName,
		SentinelAddrs:    s.Addrs,
		SentinelPassword: s.Password,
		Username:         opt.Username,
		Password:         opt.Password,
		DB:               opt.DB,
		Protocol:         opt.Protocol,
		ClientName:       opt.ClientName,
		TLSConfig:        opt.TLSConfig,
		DialTimeout:      dialTimeout,
		ReadTimeout:      ioTimeout,
		WriteTimeout:     ioTimeout,
		PoolTimeout:      ioTimeout,
		MaxRetries:       maxRetries,
		DialerRetries:    dialerRetries,
	}
	if poolSize > 0 {
		fo.PoolSize = poolSize
	}
	return redis.NewFailoverClient(fo), nil
}
