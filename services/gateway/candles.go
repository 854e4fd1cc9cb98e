package main

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
)

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
	return func(c *fiber.Ctx) error {
		coin, currency, problems := pathCoin(c, "vsCurrency", "interval", "from", "to", "limit", "page")
		interval, width, problems := intervalParam(c, problems)
		w, problems := windowParams(c, problems)
		if len(problems) > 0 {
			return httperr.Validation(problems...)
		}
		if err := d.throttle(c); err != nil {
			return err
		}
		q := pricedb.CandleQuery{CoinID: coin, VsCurrency: currency, Interval: width, Limit: w.limit, Page: w.page, From: w.from, To: w.to}
		candles, total, err := d.store.Candles(c.UserContext(), q)
		if err != nil {
			return err
		}
		page := CandlePage{
			CoinID: coin, VsCurrency: currency, Interval: interval, Items: make([]CandleItem, len(candles)),
			Page: q.Page, Limit: q.Limit, TotalItems: total,
		}
		page.TotalPages, page.HasNextPage = w.pages(total)
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
