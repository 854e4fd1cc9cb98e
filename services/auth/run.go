package main

import (
	"context"
	"io"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/clientip"
	"cryptopulse/libs/config"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/logger"
	"cryptopulse/libs/redisconn"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
)

// run starts the service and blocks until ctx is done. When ready is not
// nil it receives the address the service listens on (tests start the
// service on port 0).
func run(ctx context.Context, getenv config.Getenv, stdout io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := logger.New(stdout, cfg.LogLevel, "auth", cfg.InstanceID)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log.Info("starting", zap.String("addr", cfg.Addr()), zap.String("adminUser", cfg.AdminUser),
		zap.String("adminPass", config.Mask(cfg.AdminPass)), zap.String("jwtSecret", config.Mask(cfg.JWTSecret)),
		zap.String("jwtExpiresIn", cfg.JWTExpiresIn), zap.String("redis", cfg.RedisTarget()),
		zap.Int("loginLimit", cfg.LoginLimit), zap.Duration("throttleTTL", cfg.ThrottleTTL))

	issuer, err := jwtauth.NewIssuer(cfg.JWTSecret, cfg.JWTExpiresIn, time.Now)
	if err != nil {
		return err
	}
	rdb, err := redisconn.OpenConfig(cfg.Base, 0)
	if err != nil {
		return err
	}
	defer rdb.Close()

	reg := web.NewRegistry()
	app := web.New(web.Options{Service: "auth", Instance: cfg.InstanceID, Log: log, Registry: reg, BodyLimit: 8 << 10})
	routes(app, deps{
		log:      log,
		cfg:      cfg,
		issuer:   issuer,
		limiter:  throttle.New(rdb),
		clientIP: clientip.New(cfg.TrustedProxies),
		redis:    rdb,
		registry: reg,
	})

	return web.ListenAndServe(ctx, app, cfg.Addr(), cfg.ShutdownGrace, log, ready)
}
