package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
)

// MaxCoinIDs bounds the distinct ids of one GET /v1/prices.
const MaxCoinIDs = 50

// parseCoinIDs reads the ids query parameter (repeatable, comma-separated):
// each id validated, duplicates folded in first-named order.
func parseCoinIDs(c *fiber.Ctx) (ids []string, problems []string) {
	var raw []string
	for _, v := range c.Context().QueryArgs().PeekMulti("ids") {
		raw = append(raw, strings.Split(string(v), ",")...)
	}
	if len(raw) == 0 || (len(raw) == 1 && raw[0] == "") {
		return nil, []string{"ids should not be empty (a comma-separated list of coin ids such as bitcoin,ethereum)"}
	}
	seen := make(map[string]bool, len(raw))
	for _, id := range raw {
		if err := price.ValidateCoinID(id); err != nil {
			problems = append(problems, fmt.Sprintf("ids: %s: %v", strconv.Quote(shorten(id)), err))
			continue
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) > MaxCoinIDs {
		problems = append(problems, fmt.Sprintf("ids must contain at most %d distinct coin ids, got %d", MaxCoinIDs, len(ids)))
	}
	return ids, problems
}

// shorten keeps an echoed bad id readable.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// statusRank orders the statuses of failed ids by how much the client
// should hear about them when no id succeeded: a 429 says when to come back
// and is the one a client must act on; then our own outage (503), an answer
// that came too late (504) and an upstream failure (502), each of which a
// retry may cure; a 404 last, since it is the client's own id and only the
// ids that exist can be retried with any hope.
var statusRank = map[int]int{
	http.StatusTooManyRequests:    6,
	http.StatusServiceUnavailable: 5,
	http.StatusGatewayTimeout:     4,
	http.StatusBadGateway:         3,
	http.StatusNotFound:           1,
}

// rank places a status the table does not name: other 5xx among the
// server's failures, other 4xx with the client's.
func rank(status int) int {
	if r, ok := statusRank[status]; ok {
		return r
	}
	if status >= 500 {
		return 2
	}
	return 0
}

// mostTellingStatus is the status of an answer in which every id failed:
// the status they share if they all failed alike, else the best ranked.
func mostTellingStatus(errs []price.CoinError) int {
	best := errs[0].StatusCode
	for _, e := range errs[1:] {
		if rank(e.StatusCode) > rank(best) {
			best = e.StatusCode
		}
	}
	return best
}

// pending is one id of a GET /v1/prices on its way through a batch.
type pending struct {
	req     price.Request
	replies <-chan price.Reply
	cancel  func()
	xadd    *redis.StringCmd
}

func handlePrices(d deps) fiber.Handler {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_prices_requests_total", Help: "GET /v1/prices requests by HTTP status answered.",
	}, []string{"status"})
	coins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_prices_coins_total", Help: "Coin ids asked through GET /v1/prices, by the status each got.",
	}, []string{"status"})
	d.registry.MustRegister(outcomes, coins)

	return func(c *fiber.Ctx) error {
		ids, currency, problems := pricesQuery(c)
		if len(problems) > 0 {
			return httperr.Validation(problems...)
		}
		// One request for the limit, however many ids it names.
		if err := d.throttle(c); err != nil {
			return err
		}
		ps := make([]pending, len(ids))
		for i, id := range ids {
			ps[i].req = d.pub.Request(id, currency)
			// Listening before publishing, as for a single price.
			ps[i].replies, ps[i].cancel = d.hub.Register(ps[i].req.ID)
			defer ps[i].cancel()
		}
		if queued, err := d.publish(c.UserContext(), ps); queued == 0 {
			outcomes.WithLabelValues("503").Inc()
			return fmt.Errorf("%w: xadd %d price requests: %v", errRedis, len(ps), err)
		}

		body := collect(ps, currency, d.cfg.ResultTimeout)
		for range body.Prices {
			coins.WithLabelValues("200").Inc()
		}
		for _, e := range body.Errors {
			coins.WithLabelValues(strconv.Itoa(e.StatusCode)).Inc()
		}
		status := http.StatusOK
		if len(body.Prices) == 0 {
			status = failAll(c, &body)
		}
		for _, kv := range freshnessHeaders(time.Now(), body.Prices...) {
			c.Set(kv[0], kv[1])
		}
		outcomes.WithLabelValues(strconv.Itoa(status)).Inc()
		return c.Status(status).JSON(body)
	}
}

// pricesQuery reads and checks the ids and vsCurrency of GET /v1/prices.
func pricesQuery(c *fiber.Ctx) (ids []string, currency string, problems []string) {
	problems = checkQuery(c, "ids", "vsCurrency")
	ids, idProblems := parseCoinIDs(c)
	problems = append(problems, idProblems...)
	currency = c.Query("vsCurrency", "usd")
	if err := price.ValidateCurrency(currency); err != nil {
		problems = append(problems, err.Error())
	}
	return ids, currency, problems
}

// publish puts every id's request on the stream in one round trip, tells
// the hub about each one that went out, and returns how many did.
func (d deps) publish(ctx context.Context, ps []pending) (int, error) {
	ctx, stop := context.WithTimeout(ctx, time.Second)
	defer stop()
	pipe := d.redis.Pipeline()
	for i := range ps {
		ps[i].xadd = d.pub.Add(ctx, pipe, ps[i].req)
	}
	_, err := pipe.Exec(ctx)
	queued := 0
	deadline := time.Now().Add(d.cfg.ResultTimeout)
	for _, p := range ps {
		if p.xadd.Err() == nil {
			queued++
			d.hub.Sent(p.xadd.Val(), p.req, deadline)
		}
	}
	return queued, err
}

// collect waits, until timeout has passed, for the reply of every id that
// went out, and makes the body: a price or an error per id, in order.
func collect(ps []pending, currency string, timeout time.Duration) price.Prices {
	body := price.Prices{VsCurrency: currency, Prices: []price.Answer{}, Errors: []price.CoinError{}}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut := false
	for _, p := range ps {
		if err := p.xadd.Err(); err != nil {
			body.Errors = append(body.Errors, price.CoinError{
				CoinID: p.req.Coin, StatusCode: http.StatusServiceUnavailable, Message: msgRedisDown,
			})
			continue
		}
		var r price.Reply
		var got bool
		r, got, timedOut = receive(p.replies, timer.C, timedOut)
		switch {
		case !got:
			body.Errors = append(body.Errors, price.CoinError{
				CoinID: p.req.Coin, StatusCode: http.StatusGatewayTimeout, Message: noResult(timeout),
			})
		case r.Status == http.StatusOK:
			body.Prices = append(body.Prices, answerOf(r))
		default:
			e := price.CoinError{CoinID: p.req.Coin, StatusCode: r.Status, Message: r.Message, RetryAfter: r.RetryAfter}
			if r.Batch.ID != "" {
				b := r.Batch
				e.Batch = &b
			}
			body.Errors = append(body.Errors, e)
		}
	}
	return body
}

// receive takes a reply, waiting until expired fires; once it has fired
// (timedOut), it takes only a reply that is already here. It reports
// whether it got one and whether the time is now up.
func receive(replies <-chan price.Reply, expired <-chan time.Time, timedOut bool) (r price.Reply, got, nowTimedOut bool) {
	if !timedOut {
		select {
		case r = <-replies:
			return r, true, false
		case <-expired:
			return price.Reply{}, false, true
		}
	}
	select {
	case r = <-replies:
		return r, true, true
	default:
		return price.Reply{}, false, true
	}
}

// failAll fills in the error fields of a body in which every id failed and
// returns its status; a 429 also says, in Retry-After, when every throttled
// id may be asked again.
func failAll(c *fiber.Ctx, body *price.Prices) int {
	status := mostTellingStatus(body.Errors)
	body.StatusCode = status
	body.Error = httperr.StatusText(status)
	alike := true
	var retry int64
	for _, e := range body.Errors {
		alike = alike && e.Message == body.Errors[0].Message
		if e.StatusCode == http.StatusTooManyRequests {
			retry = max(retry, e.RetryAfter)
		}
	}
	body.Message = body.Errors[0].Message
	if !alike {
		body.Message = fmt.Sprintf("No price for any of the %d coin ids; see errors", len(body.Errors))
	}
	if status == http.StatusTooManyRequests {
		c.Set(fiber.HeaderRetryAfter, httperr.RetryAfter(retry))
	}
	return status
}
