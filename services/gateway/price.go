package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/web"
)

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
		req := d.pub.Request(coin, currency)
		// Wait before publishing, so even an instant reply finds us listening.
		replies, cancel := d.hub.Register(req.ID)
		defer cancel()

		// The throttle and the XADD are one script, one round trip: the
		// profile of the hot path had the two round trips as its largest
		// cost, and a throttled request still never reaches the stream.
		entryID, err := web.ThrottleAdd(c, d.limiter, d.pub.Entry(req), d.priceRule(c))
		if err != nil {
			var herr *httperr.Error
			if errors.As(err, &herr) {
				outcomes.WithLabelValues(strconv.Itoa(herr.Status)).Inc()
			}
			return err
		}
		c.Set("X-Price-Request-Id", req.ID)
		c.Set("X-Stream-Entry-Id", entryID)
		d.hub.Sent(entryID, req, time.Now().Add(d.cfg.ResultTimeout))

		timer := time.NewTimer(d.cfg.ResultTimeout)
		defer timer.Stop()
		select {
		case r := <-replies:
			outcomes.WithLabelValues(strconv.Itoa(r.Status)).Inc()
			return answerPrice(c, r)
		case <-timer.C:
			outcomes.WithLabelValues("504").Inc()
			return httperr.New(http.StatusGatewayTimeout, noResult(d.cfg.ResultTimeout))
		}
	}
}

// noResult is the message of a request whose batch did not answer in time.
func noResult(timeout time.Duration) string {
	return fmt.Sprintf("No batch result within %d ms", timeout.Milliseconds())
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
