package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
)

// CandleReader is what the candles route needs from the price database.
type CandleReader interface {
	// Candles returns a page of candles and the number of non-empty buckets
	// in all, or an error wrapping pricedb.ErrUnavailable.
	Candles(ctx context.Context, q pricedb.CandleQuery) ([]pricedb.Candle, int, error)
}

var _ CandleReader = (*pricedb.Store)(nil)

// candleIntervals are the bucket widths a client may ask for, in the order
// the 400 lists them.
var candleIntervals = []struct {
	name  string
	width time.Duration
}{
	{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"15m", 15 * time.Minute},
	{"1h", time.Hour}, {"4h", 4 * time.Hour}, {"1d", 24 * time.Hour},
}

// CandleItem is one bucket of a candles page: the prices stored with
// fetchedAt in [start, start+interval).
type CandleItem struct {
	Start          string      `json:"start"`
	Open           json.Number `json:"open"`
	High           json.Number `json:"high"`
	Low            json.Number `json:"low"`
	Close          json.Number `json:"close"`
	Count          int         `json:"count"`
	FirstFetchedAt string      `json:"firstFetchedAt"`
	LastFetchedAt  string      `json:"lastFetchedAt"`
}

// CandlePage is the body of GET /v1/price/{coinId}/candles.
type CandlePage struct {
	CoinID      string       `json:"coinId"`
	VsCurrency  string       `json:"vsCurrency"`
	Interval    string       `json:"interval"`
	Items       []CandleItem `json:"items"`
	Page        int          `json:"page"`
	Limit       int          `json:"limit"`
	TotalItems  int          `json:"totalItems"`
	TotalPages  int          `json:"totalPages"`
	HasNextPage bool         `json:"hasNextPage"`
}

// intervalParam reads the required interval query parameter.
func intervalParam(c *fiber.Ctx, problems []string) (string, time.Duration, []string) {
	raw := c.Query("interval")
	names := make([]string, len(candleIntervals))
	for i, iv := range candleIntervals {
		if iv.name == raw {
			return raw, iv.width, problems
		}
		names[i] = iv.name
	}
	return raw, 0, append(problems, "interval must be one of the following values: "+strings.Join(names, ", "))
}

// handleCandles answers GET /v1/price/{coinId}/candles with the validation,
// throttle and errors of the history route.
func handleCandles(d deps) fiber.Handler {
	// deps types the store as the history reader; the store run() builds,
	// pricedb.Store, reads candles too. Checked once, at wiring time.
	store, ok := d.store.(CandleReader)
	if !ok {
		panic(fmt.Sprintf("gateway: store %T cannot read candles", d.store))
	}
	return func(c *fiber.Ctx) error {
		coin, currency, problems := pathCoin(c, "vsCurrency", "interval", "from", "to", "limit", "page")
		q := pricedb.CandleQuery{CoinID: coin, VsCurrency: currency}
		var interval string
		interval, q.Interval, problems = intervalParam(c, problems)
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
		ctx, cancel := context.WithTimeout(c.UserContext(), historyTimeout)
		defer cancel()
		candles, total, err := store.Candles(ctx, q)
		if err != nil {
			return err
		}
		page := CandlePage{
			CoinID: coin, VsCurrency: currency, Interval: interval, Items: make([]CandleItem, len(candles)),
			Page: q.Page, Limit: q.Limit, TotalItems: total,
			TotalPages: (total + q.Limit - 1) / q.Limit,
		}
		page.HasNextPage = q.Page < page.TotalPages
		for i, k := range candles {
			page.Items[i] = CandleItem{
				Start: k.Start.Format(price.TimeFormat),
				Open:  json.Number(k.Open), High: json.Number(k.High), Low: json.Number(k.Low), Close: json.Number(k.Close),
				Count:          k.Count,
				FirstFetchedAt: k.FirstFetchedAt.Format(price.TimeFormat),
				LastFetchedAt:  k.LastFetchedAt.Format(price.TimeFormat),
			}
		}
		return c.JSON(page)
	}
}
