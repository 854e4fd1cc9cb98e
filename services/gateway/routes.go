package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
	"cryptopulse/services/gateway/internal/pricestream"
	"cryptopulse/services/gateway/internal/reply"
)

// HistoryReader is what the history route needs from the price database.
type HistoryReader interface {
	// History returns a page of records and the total count, or an error
	// wrapping pricedb.ErrUnavailable.
	History(ctx context.Context, q pricedb.HistoryQuery) ([]pricedb.Record, int, error)
	Ping(ctx context.Context) error
}

var _ HistoryReader = (*pricedb.Store)(nil)

type deps struct {
	log      *zap.Logger
	cfg      Config
	verifier *jwtauth.Verifier
	limiter  *throttle.Limiter
	redis    *redis.Client
	hub      *reply.Hub
	streams  *pricestream.Hub
	store    HistoryReader
	registry *prometheus.Registry
}

// errRedis marks a failure to reach Redis on the price path.
var errRedis = errors.New("redis unavailable")

// translate is the gateway's part of the one error translator.
func translate(err error) *httperr.Error {
	switch {
	case errors.Is(err, errRedis):
		return httperr.Wrap(http.StatusServiceUnavailable, "Service unavailable: Redis is unreachable", err)
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
	// Each route names its authentication rather than sharing a group: a
	// group's middleware matches by prefix, so "/v1/price" would also claim
	// "/v1/prices" and verify its token twice.
	auth := authenticate(d.verifier)
	app.Get("/v1/price/:coinId", auth, handlePrice(d))
	app.Get("/v1/price/:coinId/history", auth, handleHistory(d))
	app.Get("/v1/prices", auth, handlePrices(d))
	app.Get("/v1/prices/stream", queryToken, auth, handleStream(d))
}

// authenticate verifies the Bearer token and stores its claims.
func authenticate(v *jwtauth.Verifier) fiber.Handler {
	return func(c *fiber.Ctx) error {
		claims, err := v.VerifyHeader(c.Get(fiber.HeaderAuthorization))
		if err != nil {
			msg := jwtauth.ErrInvalidToken.Error()
			for _, known := range []error{jwtauth.ErrMissingHeader, jwtauth.ErrNotBearer, jwtauth.ErrBadBearer} {
				if errors.Is(err, known) {
					msg = known.Error()
				}
			}
			return httperr.Wrap(http.StatusUnauthorized, msg, err).WithHeader("WWW-Authenticate", `Bearer realm="cryptopulse"`)
		}
		c.Locals("claims", claims)
		return c.Next()
	}
}

func claimsOf(c *fiber.Ctx) *jwtauth.Claims {
	cl, _ := c.Locals("claims").(*jwtauth.Claims)
	return cl
}

// checkQuery rejects query parameters the route does not know, as the
// original's whitelisting validation did.
func checkQuery(c *fiber.Ctx, allowed ...string) []string {
	var problems []string
	c.Context().QueryArgs().VisitAll(func(k, _ []byte) {
		for _, a := range allowed {
			if string(k) == a {
				return
			}
		}
		problems = append(problems, "property "+string(k)+" should not exist")
	})
	sort.Strings(problems)
	return problems
}

// pathCoin validates the coinId path parameter and the vsCurrency query.
func pathCoin(c *fiber.Ctx, allowedQuery ...string) (coin, currency string, problems []string) {
	coin = c.Params("coinId")
	problems = checkQuery(c, allowedQuery...)
	if err := price.ValidateCoinID(coin); err != nil {
		problems = append(problems, err.Error())
	}
	currency = c.Query("vsCurrency", "usd")
	if err := price.ValidateCurrency(currency); err != nil {
		problems = append(problems, err.Error())
	}
	return coin, currency, problems
}

// priceRule is the limit every price route shares, per token subject.
func (d deps) priceRule(c *fiber.Ctx) throttle.Rule {
	return throttle.Rule{
		Policy: "price", Subject: "user:" + claimsOf(c).Subject,
		Limit: d.cfg.GlobalLimit, Window: d.cfg.ThrottleTTL,
	}
}

func (d deps) throttle(c *fiber.Ctx) error {
	return d.limiter.Enforce(c, d.priceRule(c))
}

func handlePrice(d deps) fiber.Handler {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_price_requests_total", Help: "Price requests by HTTP status answered.",
	}, []string{"status"})
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_price_waiting", Help: "Price requests waiting for their batch now.",
	}, func() float64 { return float64(d.hub.Waiting()) })
	d.registry.MustRegister(outcomes, waiting)

	return func(c *fiber.Ctx) error {
		coin, currency, problems := pathCoin(c, "vsCurrency")
		if len(problems) > 0 {
			return httperr.Validation(problems...)
		}
		if served, err := d.hotRead(c, coin, currency); served {
			return err
		}
		req := price.Request{
			ID: web.NewID(), Coin: coin, Currency: currency,
			TimeoutMS: d.cfg.ResultTimeout.Milliseconds(), Gateway: d.cfg.InstanceID,
		}
		req.ReplyTo = price.ReplyChannel(d.cfg.InstanceID, req.ID)
		// Wait before publishing, so even an instant reply finds us listening.
		replies, cancel := d.hub.Register(req.ID)
		defer cancel()

		// The throttle and the XADD are one script, one round trip: the
		// profile of the hot path had the two round trips as its largest
		// cost, and a throttled request still never reaches the stream.
		values := req.Values()
		entryID, err := d.limiter.EnforceAdd(c, throttle.Entry{
			Stream: price.StreamKey, MaxLen: d.cfg.StreamMaxLen, Values: values,
		}, d.priceRule(c))
		if err != nil {
			var herr *httperr.Error
			if errors.As(err, &herr) {
				outcomes.WithLabelValues(strconv.Itoa(herr.Status)).Inc()
			}
			return err
		}
		c.Set("X-Price-Request-Id", req.ID)
		c.Set("X-Stream-Entry-Id", entryID)
		d.hub.Sent(req.ID, entryID, values, time.Now().Add(d.cfg.ResultTimeout))

		timer := time.NewTimer(d.cfg.ResultTimeout)
		defer timer.Stop()
		select {
		case r := <-replies:
			outcomes.WithLabelValues(strconv.Itoa(r.Status)).Inc()
			return answerPrice(c, r)
		case <-timer.C:
			outcomes.WithLabelValues("504").Inc()
			return httperr.New(http.StatusGatewayTimeout,
				fmt.Sprintf("No batch result within %d ms", d.cfg.ResultTimeout.Milliseconds()))
		}
	}
}

func answerPrice(c *fiber.Ctx, r price.Reply) error {
	c.Set("X-Batch-Id", r.Batch.ID)
	c.Set("X-Batch-Size", strconv.Itoa(r.Batch.Size))
	c.Set("X-Batch-Flush-Reason", r.Batch.FlushReason)
	if r.Batch.Source != "" {
		c.Set("X-Batch-Source", r.Batch.Source)
	}
	if r.Status != http.StatusOK {
		e := httperr.New(r.Status, r.Message)
		if r.RetryAfter > 0 {
			e = e.WithHeader(fiber.HeaderRetryAfter, httperr.RetryAfter(r.RetryAfter))
		}
		return e
	}
	a := answerOf(r)
	for _, kv := range freshnessHeaders(time.Now(), a) {
		c.Set(kv[0], kv[1])
	}
	return c.JSON(a)
}

// historyTimeout bounds one history query.
const historyTimeout = 3 * time.Second

// HistoryItem is one entry of a history page.
type HistoryItem struct {
	Price     json.Number `json:"price"`
	FetchedAt string      `json:"fetchedAt"`
}

// HistoryPage is the body of GET /v1/price/{coinId}/history.
type HistoryPage struct {
	CoinID      string        `json:"coinId"`
	VsCurrency  string        `json:"vsCurrency"`
	Items       []HistoryItem `json:"items"`
	Page        int           `json:"page"`
	Limit       int           `json:"limit"`
	TotalItems  int           `json:"totalItems"`
	TotalPages  int           `json:"totalPages"`
	HasNextPage bool          `json:"hasNextPage"`
}

func handleHistory(d deps) fiber.Handler {
	return func(c *fiber.Ctx) error {
		coin, currency, problems := pathCoin(c, "vsCurrency", "from", "to", "limit", "page")
		q := pricedb.HistoryQuery{CoinID: coin, VsCurrency: currency}
		q.Limit, problems = intParam(c, "limit", 20, 1, 100, problems)
		q.Page, problems = intParam(c, "page", 1, 1, math.MaxInt32, problems)
		q.From, problems = timeParam(c, "from", problems)
		q.To, problems = timeParam(c, "to", problems)
		if q.From != nil && q.To != nil && q.From.After(*q.To) {
			problems = append(problems, "from must not be after to")
		}
		if len(problems) > 0 {
			return httperr.Validation(problems...)
		}
		if err := d.throttle(c); err != nil {
			return err
		}
		// A Postgres that hangs instead of refusing must still give a 503,
		// not hold the client until nginx gives up.
		ctx, cancel := context.WithTimeout(c.UserContext(), historyTimeout)
		defer cancel()
		recs, total, err := d.store.History(ctx, q)
		if err != nil {
			return err
		}
		page := HistoryPage{
			CoinID: coin, VsCurrency: currency, Items: make([]HistoryItem, len(recs)),
			Page: q.Page, Limit: q.Limit, TotalItems: total,
			TotalPages: (total + q.Limit - 1) / q.Limit,
		}
		page.HasNextPage = q.Page < page.TotalPages
		for i, r := range recs {
			page.Items[i] = HistoryItem{Price: json.Number(r.Price), FetchedAt: r.FetchedAt.UTC().Format(price.TimeFormat)}
		}
		return c.JSON(page)
	}
}

func intParam(c *fiber.Ctx, name string, def, lo, hi int, problems []string) (int, []string) {
	raw := c.Query(name)
	if raw == "" {
		return def, problems
	}
	n, err := strconv.Atoi(raw)
	if err != nil || strings.TrimSpace(raw) != raw {
		return def, append(problems, fmt.Sprintf("%s must be an integer number", name))
	}
	if n < lo {
		return def, append(problems, fmt.Sprintf("%s must not be less than %d", name, lo))
	}
	if n > hi {
		return def, append(problems, fmt.Sprintf("%s must not be greater than %d", name, hi))
	}
	return n, problems
}

// isoLayouts are the ISO 8601 forms accepted for from and to.
var isoLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

func timeParam(c *fiber.Ctx, name string, problems []string) (*time.Time, []string) {
	raw := c.Query(name)
	if raw == "" {
		return nil, problems
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, raw); err == nil {
			return &t, problems
		}
	}
	return nil, append(problems, name+" must be a valid ISO 8601 date string")
}
