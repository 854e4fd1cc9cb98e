package main

import (
	"context"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/config"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/logger"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/redisconn"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
	"cryptopulse/services/gateway/internal/pricereq"
	"cryptopulse/services/gateway/internal/pricestream"
	"cryptopulse/services/gateway/internal/reply"
)

// run starts the gateway and blocks until ctx is done. When ready is not
// nil it receives the address the gateway listens on.
func run(ctx context.Context, getenv config.Getenv, stdout io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := logger.New(stdout, cfg.LogLevel, "gateway", cfg.InstanceID)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting", zap.String("addr", cfg.Addr()), zap.String("jwtSecret", config.Mask(cfg.JWTSecret)),
		zap.String("redis", cfg.RedisTarget()), zap.String("database", config.MaskURL(cfg.DatabaseURL)),
		zap.Int("dbPoolSize", cfg.DBPoolSize), zap.Duration("dbQueryTimeout", cfg.DBQueryTimeout), zap.Duration("resultTimeout", cfg.ResultTimeout),
		zap.Int("globalLimit", cfg.GlobalLimit), zap.Duration("throttleTTL", cfg.ThrottleTTL),
		zap.Duration("throttleLease", cfg.ThrottleLease),
		zap.Int("streamsPerUser", cfg.StreamsPerUser), zap.Duration("streamHeartbeat", cfg.StreamHeartbeat),
		zap.Duration("priceMaxAge", cfg.HotMaxAge))

	verifier, err := jwtauth.NewVerifier(cfg.JWTSecret, time.Now)
	if err != nil {
		return err
	}
	rdb, err := redisconn.OpenConfig(cfg.Base, cfg.RedisPoolSize)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store, err := pricedb.Open(cfg.DatabaseURL, pricedb.Options{PoolSize: cfg.DBPoolSize, QueryTimeout: cfg.DBQueryTimeout})
	if err != nil {
		return err
	}
	defer store.Close()

	pub, err := pricereq.New(cfg.InstanceID, cfg.ResultTimeout, cfg.StreamMaxLen)
	if err != nil {
		return err
	}

	// The hub outlives the HTTP server: requests still in flight during a
	// graceful shutdown need it to receive their replies.
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	hub := reply.NewHub(rdb, pub, log)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hub.Run(hubCtx) }()
	defer func() { stopHub(); wg.Wait() }()

	// One feed reader for every stream of this gateway and its hot reads.
	streams := pricestream.NewHub(rdb, pricestream.Config{Buffer: cfg.StreamBuffer}, log)
	wg.Add(1)
	go func() { defer wg.Done(); streams.Run(hubCtx) }()
	// The streamed coins are watched: the fetchers keep them fresh.
	wg.Add(1)
	go func() { defer wg.Done(); streams.Watch(hubCtx, rdb, log) }()
	// On shutdown the streams end first, with a reconnect hint, so the
	// graceful stop is not held up by them and their clients move on to
	// another gateway.
	stopDrain := context.AfterFunc(ctx, streams.Drain)
	defer stopDrain()
	// Each gateway renews its streams' per-user slots together.
	slots := pricestream.NewSlots(rdb, cfg.StreamsPerUser, 3*cfg.StreamHeartbeat)
	wg.Add(1)
	go func() { defer wg.Done(); slots.Keep(hubCtx, log) }()

	if cfg.PprofAddr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := web.ServePprof(hubCtx, cfg.PprofAddr, log); err != nil {
				log.Error("pprof", zap.Error(err))
			}
		}()
	}

	reg := web.NewRegistry()
	app := web.New(web.Options{
		Service: "gateway", Instance: cfg.InstanceID, Log: log, Registry: reg, Translate: translate,
		BodyLimit: 4 << 10, WriteTimeout: cfg.ResultTimeout + 10*time.Second,
		// Price streams take their connections over (stream.go).
		KeepHijacked: true,
	})
	routes(app, deps{
		log: log, cfg: cfg, verifier: verifier, limiter: throttle.New(rdb, throttle.LeaseTerm(cfg.ThrottleLease)),
		redis: rdb, pub: pub, hub: hub, streams: streams, slots: slots,
		store: store, registry: reg,
	})

	err = web.ListenAndServe(ctx, app, cfg.Addr(), cfg.ShutdownGrace, log, ready)
	// The streams own their connections, so the server's graceful stop does
	// not wait for them: wait here until each has sent its reconnect hint.
	wctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if werr := streams.Closed(wctx); werr != nil {
		log.Warn("streams still open at the end of the grace period", zap.Error(werr))
	}
	return err
}
