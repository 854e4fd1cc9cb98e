package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
	"cryptopulse/services/gateway/internal/pricereq"
	"cryptopulse/services/gateway/internal/pricestream"
	"cryptopulse/services/gateway/internal/reply"
)

// The gateway's routes, one file each: price.go (one coin), prices.go (many
// coins), history.go, candles.go, stream.go, docs.go, live.go (the /live
// page); access.go holds the authentication and the throttle they share,
// query.go the query checks.

type deps struct {
	log      *zap.Logger
	cfg      Config
	verifier *jwtauth.Verifier
	limiter  *throttle.Limiter
	redis    *redis.Client
	pub      pricereq.Publisher
	hub      *reply.Hub
	streams  *pricestream.Hub
	slots    *pricestream.Slots
	store    PriceStore
	registry *prometheus.Registry
}

// errRedis marks a failure to reach Redis on the price path.
var errRedis = errors.New("redis unavailable")

// msgRedisDown is what a client reads when the price path cannot reach Redis.
const msgRedisDown = "Service unavailable: Redis is unreachable"

// translate is the gateway's part of the one error translator.
func translate(err error) *httperr.Error {
	switch {
	case errors.Is(err, errRedis):
		return httperr.Wrap(http.StatusServiceUnavailable, msgRedisDown, err)
	case errors.Is(err, pricedb.ErrUnavailable):
		return httperr.Wrap(http.StatusServiceUnavailable, "Price history is unavailable: the database is unreachable", err)
	}
	return nil
}

func routes(app *fiber.App, d deps) {
	web.Probes(app, "gateway", d.cfg.InstanceID,
		web.Check{Name: "redis", Check: func(ctx context.Context) error { return d.redis.Ping(ctx).Err() }},
		web.Check{Name: "postgres", Check: d.store.Ping},
	)
	web.Metrics(app, d.registry)
	docs(app)
	live(app)
	// Each route names its authentication rather than sharing a group: a
	// group's middleware matches by prefix, so "/v1/price" would also claim
	// "/v1/prices" and verify its token twice.
	auth := authenticate(d.verifier)
	app.Get("/v1/price/:coinId", auth, handlePrice(d))
	app.Get("/v1/price/:coinId/history", auth, handleHistory(d))
	app.Get("/v1/price/:coinId/candles", auth, handleCandles(d))
	app.Get("/v1/prices", auth, handlePrices(d))
	app.Get("/v1/prices/stream", queryToken, auth, handleStream(d))
}
