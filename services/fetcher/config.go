package main

import (
	"time"

	"cryptopulse/libs/config"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/watchlist"
	"cryptopulse/services/fetcher/internal/coingecko"
)

// Config is everything the fetcher reads from its environment.
type Config struct {
	config.Base
	DatabaseURL string
	DBPoolSize  int
	// DBQueryTimeout bounds each Postgres query: past it (a slow or hung
	// server) records stay queued in Redis and are written later.
	DBQueryTimeout time.Duration

	CoinGeckoURL        string
	CoinGeckoKey        string
	CoinGeckoPlan       string
	CoinGeckoRateLimit  int
	CoinGeckoBurst      int
	CoinGeckoTimeout    time.Duration
	CoinGeckoAttempts   int
	CoinGeckoRetryAfter time.Duration

	BatchWindow     time.Duration
	BatchThreshold  int
	BatchLease      time.Duration
	BatchPoll       time.Duration
	BatchMaxCoins   int
	FlushConcurrent int
	ReplyMargin     time.Duration
	ReclaimIdle     time.Duration
	ResultTTL       time.Duration
	PriceMaxAge     time.Duration
	Coalesce        time.Duration
	StaleMaxAge     time.Duration
	// FeedMaxLen caps the price update feed (approximate trimming).
	FeedMaxLen int64
	// WatchCoins are kept fresh without requests (WATCH_COINS), and so are
	// the coins the gateways' stream clients follow.
	WatchCoins []watchlist.Coin
	// WatchRefresh is how old a watched coin's price may get; 0 turns
	// refreshing off, streamed coins included.
	WatchRefresh time.Duration
	// PprofAddr, when set, is a loopback address serving net/http/pprof.
	PprofAddr string
}

func loadConfig(getenv config.Getenv) (Config, error) {
	r, err := config.FromEnv(getenv)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Base:        config.LoadBase(r, 3000),
		DatabaseURL: r.URL("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/cryptopulse?sslmode=disable", "postgres", "postgresql"),
		DBPoolSize:  r.Int("DB_POOL_SIZE", 10, 1, 1000),

		DBQueryTimeout: r.Millis("DB_QUERY_TIMEOUT_MS", 2*time.Second, 100*time.Millisecond, time.Minute),

		CoinGeckoURL:        r.String("COINGECKO_BASE_URL", "https://api.coingecko.com"),
		CoinGeckoKey:        r.String("COINGECKO_API_KEY", ""),
		CoinGeckoPlan:       r.OneOf("COINGECKO_PLAN", "", "", coingecko.PlanDemo, coingecko.PlanPro),
		CoinGeckoRateLimit:  r.Int("COINGECKO_RATE_LIMIT", 30, 0, 100_000),
		CoinGeckoBurst:      r.Int("COINGECKO_BURST", 3, 1, 100_000),
		CoinGeckoTimeout:    r.Millis("COINGECKO_TIMEOUT_MS", 3*time.Second, 100*time.Millisecond, time.Minute),
		CoinGeckoAttempts:   r.Int("COINGECKO_MAX_ATTEMPTS", 3, 1, 10),
		CoinGeckoRetryAfter: r.Millis("COINGECKO_DEFAULT_RETRY_AFTER_MS", time.Minute, time.Second, time.Hour),

		BatchWindow:    r.Millis("BATCH_WINDOW_MS", 5*time.Second, 10*time.Millisecond, time.Hour),
		BatchThreshold: r.Int("BATCH_THRESHOLD", 3, 1, 10_000),
		BatchLease:     r.Millis("BATCH_LEASE_MS", time.Second, 100*time.Millisecond, time.Minute),
		// Flushes are event-driven; this poll is only the safety net.
		BatchPoll:       r.Millis("BATCH_POLL_MS", time.Second, 5*time.Millisecond, time.Minute),
		BatchMaxCoins:   r.Int("BATCH_MAX_COINS", 100, 1, 515),
		FlushConcurrent: r.Int("FLUSH_CONCURRENCY", 4, 1, 1000),
		ReplyMargin:     r.Millis("BATCH_REPLY_MARGIN_MS", 500*time.Millisecond, 0, time.Minute),
		ReclaimIdle:     r.Millis("STREAM_RECLAIM_IDLE_MS", 3*time.Second, 100*time.Millisecond, time.Hour),
		ResultTTL:       r.Millis("RESULT_TTL_MS", time.Minute, time.Second, time.Hour),
		PriceMaxAge:     r.Millis("PRICE_MAX_AGE_MS", 0, 0, 24*time.Hour),
		Coalesce:        r.Millis("BATCH_COALESCE_MS", 100*time.Millisecond, 0, 10*time.Second),
		StaleMaxAge:     r.Millis("STALE_MAX_AGE_MS", 0, 0, 7*24*time.Hour),
		FeedMaxLen:      int64(r.Int("PRICE_FEED_MAXLEN", pricefeed.DefaultMaxLen, 100, 100_000_000)),
		PprofAddr:       r.LoopbackAddr("PPROF_ADDR"),
	}
	if c.CoinGeckoRateLimit > 0 && c.CoinGeckoBurst > c.CoinGeckoRateLimit {
		r.Fail("COINGECKO_BURST", "%d is more than COINGECKO_RATE_LIMIT (%d)", c.CoinGeckoBurst, c.CoinGeckoRateLimit)
	}
	window := time.Minute
	if cg, err := coingecko.New(c.CoinGeckoURL, "", c.CoinGeckoPlan, time.Second); err != nil {
		r.Fail("COINGECKO_BASE_URL", "%v", err)
	} else {
		window = cg.CacheWindow()
	}
	// By default as often as CoinGecko's cache changes the price, and no more.
	c.WatchRefresh = r.Millis("WATCH_REFRESH_MS", window, 0, 24*time.Hour)
	if c.WatchRefresh > 0 && c.WatchRefresh < time.Second {
		r.Fail("WATCH_REFRESH_MS", "%d is under 1000 (one second); 0 turns refreshing off", c.WatchRefresh.Milliseconds())
	}
	watch, err := watchlist.Parse(r.String("WATCH_COINS", ""))
	switch {
	case err != nil:
		r.Fail("WATCH_COINS", "%v", err)
	case len(watch) > 0 && c.WatchRefresh == 0:
		r.Fail("WATCH_COINS", "coins are listed but WATCH_REFRESH_MS is 0 (refreshing off)")
	}
	c.WatchCoins = watch
	return c, r.Err()
}
