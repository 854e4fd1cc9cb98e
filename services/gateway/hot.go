package main

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/price"
	"cryptopulse/services/gateway/internal/pricestream"
)

// hotRead answers GET /v1/price/{coinId} from the gateway's own copy of the
// coin's newest price, kept by the feed its streams already read, when
// PRICE_MAX_AGE_MS is set and that price is younger: no stream entry, no
// batch. The limit still counts the request. It reports whether it
// answered (err is then the answer's error, if any).
func (d deps) hotRead(c *fiber.Ctx, coin, currency string) (served bool, err error) {
	if d.cfg.HotMaxAge <= 0 {
		return false, nil
	}
	ev := d.streams.Latest(pricestream.Key(coin, currency))
	// A stale price is an upstream failure's stand-in: only a batch may
	// decide to give it again.
	if ev == nil || ev.Stale || time.Since(ev.FetchedAt) >= d.cfg.HotMaxAge {
		return false, nil
	}
	if err := d.throttle(c); err != nil {
		return true, err
	}
	c.Set("X-Batch-Id", ev.HotBatchID)
	c.Set("X-Batch-Size", ev.HotSize)
	c.Set("X-Batch-Flush-Reason", ev.HotReason)
	c.Set("X-Batch-Source", price.SourceFeed)
	c.Set("X-Price-Age-Ms", strconv.FormatInt(time.Since(ev.FetchedAt).Milliseconds(), 10))
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return true, c.Send(ev.Hot)
}
