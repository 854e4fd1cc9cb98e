package main

import (
	"time"

	"cryptopulse/libs/config"
	"cryptopulse/libs/jwtauth"
)

// Config is everything the gateway reads from its environment.
type Config struct {
	config.Base
	JWTSecret     string
	DatabaseURL   string
	DBPoolSize    int
	RedisPoolSize int
	// ResultTimeout is how long a price request waits for its batch (504 after).
	ResultTimeout time.Duration
	GlobalLimit   int
	// ThrottleLease is the term of the throttle's leases (THROTTLE_LEASE_MS):
	// a busy user of a limit of 200 or more has slots taken from Redis
	// several at a time and spent here within it; 0 checks every request in
	// Redis.
	ThrottleLease time.Duration
	// StreamMaxLen caps the request stream (approximate trimming).
	StreamMaxLen int64
	// StreamsPerUser caps the price streams one user holds open at once.
	StreamsPerUser int
	// StreamHeartbeat is how often an idle stream gets a comment, which
	// also keeps the user's stream slot (it lapses after three).
	StreamHeartbeat time.Duration
	// StreamBuffer is how many updates a stream may fall behind before it
	// is dropped.
	StreamBuffer int
	// StreamRetry is the reconnect delay streams tell their clients.
	StreamRetry time.Duration
	// HotMaxAge lets GET /v1/price/{coinId} be answered from the newest
	// price on the feed when younger than this (PRICE_MAX_AGE_MS); 0 never.
	HotMaxAge time.Duration
	// PprofAddr, when set, is a loopback address serving net/http/pprof on
	// a listener of its own, away from the API port nginx proxies to.
	PprofAddr string

	// DBQueryTimeout bounds each Postgres query: past it (a slow or hung
	// server) history answers 503.
	DBQueryTimeout time.Duration
}

func loadConfig(getenv config.Getenv) (Config, error) {
	r, err := config.FromEnv(getenv)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Base:          config.LoadBase(r, 3000),
		JWTSecret:     r.Secret("JWT_SECRET", jwtauth.MinSecretLen),
		DatabaseURL:   r.URL("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/cryptopulse?sslmode=disable", "postgres", "postgresql"),
		DBPoolSize:    r.Int("DB_POOL_SIZE", 10, 1, 1000),
		RedisPoolSize: r.Int("REDIS_POOL_SIZE", 0, 0, 100_000),
		ResultTimeout: r.Millis("BATCH_RESULT_TIMEOUT_MS", 8*time.Second, 100*time.Millisecond, 10*time.Minute),
		GlobalLimit:   r.Int("THROTTLE_GLOBAL_LIMIT", 20, 1, 10_000_000),
		ThrottleLease: r.Millis("THROTTLE_LEASE_MS", 100*time.Millisecond, 0, 10*time.Second),
		StreamMaxLen:  int64(r.Int("STREAM_MAXLEN", 100_000, 100, 100_000_000)),
		PprofAddr:     r.LoopbackAddr("PPROF_ADDR"),

		StreamsPerUser:  r.Int("STREAMS_PER_USER", 5, 1, 10_000),
		StreamHeartbeat: r.Millis("STREAM_HEARTBEAT_MS", 15*time.Second, 100*time.Millisecond, 10*time.Minute),
		StreamBuffer:    r.Int("STREAM_BUFFER", 256, 1, 1_000_000),
		StreamRetry:     r.Millis("STREAM_RETRY_MS", time.Second, 0, 10*time.Minute),
		HotMaxAge:       r.Millis("PRICE_MAX_AGE_MS", 0, 0, 24*time.Hour),
		DBQueryTimeout:  r.Millis("DB_QUERY_TIMEOUT_MS", 2*time.Second, 100*time.Millisecond, time.Minute),
	}
	return c, r.Err()
}
