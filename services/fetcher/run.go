package main

import (
	"context"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/config"
	"cryptopulse/libs/logger"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/redisconn"
	"cryptopulse/libs/web"
	"cryptopulse/services/fetcher/internal/backlog"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
	"cryptopulse/services/fetcher/internal/worker"
)

// run starts the fetcher and blocks until ctx is done; then it stops reading
// the stream, answers the batches it holds, and returns.
func run(ctx context.Context, getenv config.Getenv, stdout io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := logger.New(stdout, cfg.LogLevel, "fetcher", cfg.InstanceID)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting", zap.String("addr", cfg.Addr()), zap.String("redis", cfg.RedisTarget()),
		zap.String("database", config.MaskURL(cfg.DatabaseURL)), zap.Duration("dbQueryTimeout", cfg.DBQueryTimeout), zap.String("coingecko", cfg.CoinGeckoURL),
		zap.String("coingeckoKey", config.Mask(cfg.CoinGeckoKey)), zap.Int("coingeckoRateLimit", cfg.CoinGeckoRateLimit),
		zap.Int("coingeckoBurst", cfg.CoinGeckoBurst), zap.Duration("priceMaxAge", cfg.PriceMaxAge), zap.Duration("staleMaxAge", cfg.StaleMaxAge),
		zap.Duration("window", cfg.BatchWindow), zap.Int("threshold", cfg.BatchThreshold), zap.Duration("lease", cfg.BatchLease),
		zap.Duration("watchRefresh", cfg.WatchRefresh), zap.Int("watchCoins", len(cfg.WatchCoins)))

	rdb, err := redisconn.OpenConfig(cfg.Base, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()
	pg, err := pricedb.Open(cfg.DatabaseURL, pricedb.Options{PoolSize: cfg.DBPoolSize, QueryTimeout: cfg.DBQueryTimeout})
	if err != nil {
		return err
	}
	defer pg.Close()
	store, err := batch.NewStore(rdb, batch.Settings{
		Window: cfg.BatchWindow, Threshold: cfg.BatchThreshold, Lease: cfg.BatchLease,
		KeyTTL: cfg.BatchWindow + 10*time.Minute, Keep: 10 * time.Minute, ResultTTL: cfg.ResultTTL, RecordsMaxLen: 1_000_000,
		Budget:         batch.Budget{PerMinute: cfg.CoinGeckoRateLimit, Burst: cfg.CoinGeckoBurst},
		SnapshotMaxAge: cfg.PriceMaxAge, Coalesce: cfg.Coalesce,
	})
	if err != nil {
		return err
	}
	upstream, err := coingecko.New(cfg.CoinGeckoURL, cfg.CoinGeckoKey, cfg.CoinGeckoPlan, cfg.CoinGeckoRetryAfter)
	if err != nil {
		return err
	}
	if err := worker.EnsureGroup(ctx, rdb, price.StreamKey, price.Group); err != nil {
		// Not fatal: the consumer creates the group once Redis answers.
		log.Warn("creating the consumer group failed; will retry", zap.Error(err))
	}

	reg := web.NewRegistry()
	// The backlog in Redis (stream lag, pending, unwritten records, open batches), read at scrape time.
	reg.MustRegister(backlog.New(rdb, 0))
	flusher, err := worker.NewFlusher(worker.FlusherConfig{
		Name: cfg.InstanceID, SafetyPoll: cfg.BatchPoll, MaxBatches: cfg.BatchMaxCoins, Concurrency: cfg.FlushConcurrent,
		CallTimeout: cfg.CoinGeckoTimeout, MaxAttempts: cfg.CoinGeckoAttempts, Margin: cfg.ReplyMargin,
		Lease: cfg.BatchLease, StaleMaxAge: cfg.StaleMaxAge, FeedMaxLen: cfg.FeedMaxLen,
		Refresh: cfg.WatchRefresh, Watch: cfg.WatchCoins,
	}, rdb, store, upstream, pg, log, reg)
	if err != nil {
		return err
	}
	consumer, err := worker.NewConsumer(worker.ConsumerConfig{Name: cfg.InstanceID, ReclaimIdle: cfg.ReclaimIdle},
		rdb, store, flusher.Due, log)
	if err != nil {
		return err
	}
	persister, err := worker.NewPersister(worker.PersisterConfig{Name: cfg.InstanceID}, rdb, pg,
		func(ctx context.Context) error { return pricedb.Migrate(ctx, cfg.DatabaseURL) }, log, reg)
	if err != nil {
		return err
	}

	// Work stops in order on shutdown: no new requests are read, held
	// batches are answered, and the records they produced are written.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	persistCtx, stopPersist := context.WithCancel(context.WithoutCancel(ctx))
	var work, persist sync.WaitGroup
	work.Add(2)
	go func() { defer work.Done(); consumer.Run(workCtx) }()
	go func() { defer work.Done(); flusher.Run(workCtx) }()
	persist.Add(1)
	go func() { defer persist.Done(); persister.Run(persistCtx) }()
	defer func() {
		stopWork()
		work.Wait()
		stopPersist()
		persist.Wait()
		log.Info("work drained")
	}()

	if cfg.PprofAddr != "" {
		work.Add(1)
		go func() {
			defer work.Done()
			if err := web.ServePprof(workCtx, cfg.PprofAddr, log); err != nil {
				log.Error("pprof listener failed", zap.Error(err))
			}
		}()
	}

	app := web.New(web.Options{Service: "fetcher", Instance: cfg.InstanceID, Log: log, Registry: reg})
	web.Probes(app, "fetcher", cfg.InstanceID,
		web.Check{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		web.Check{Name: "postgres", Check: pg.Ping},
	)
	web.Metrics(app, reg)
	// The HTTP port only serves probes and metrics: stop it straight away.
	return web.ListenAndServe(ctx, app, cfg.Addr(), time.Second, log, ready)
}
