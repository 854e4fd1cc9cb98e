package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
)

// PriceStore is what the history and candles routes need from the price
// database. Each call is bounded by the store itself (DB_QUERY_TIMEOUT_MS),
// so a hung Postgres costs a client that long, then a 503.
type PriceStore interface {
	// History returns a page of records and the total count, or an error
	// wrapping pricedb.ErrUnavailable.
	History(ctx context.Context, q pricedb.HistoryQuery) ([]pricedb.Record, int, error)
	// Candles returns a page of candles and the number of non-empty buckets
	// in all, or an error wrapping pricedb.ErrUnavailable.
	Candles(ctx context.Context, q pricedb.CandleQuery) ([]pricedb.Candle, int, error)
	Ping(ctx context.Context) error
}

var _ PriceStore = (*pricedb.Store)(nil)

// window is the paging and time range history and candles share.
type window struct {
	limit, page int
	from, to    *time.Time
}

// windowParams reads limit, page, from and to, adding a problem for each
// bad one and for from after to.
func windowParams(c *fiber.Ctx, problems []string) (window, []string) {
	var w window
	w.limit, problems = intParam(c, "limit", 20, 1, 100, problems)
	w.page, problems = intParam(c, "page", 1, 1, math.MaxInt32, problems)
	w.from, problems = timeParam(c, "from", problems)
	w.to, problems = timeParam(c, "to", problems)
	if w.from != nil && w.to != nil && w.from.After(*w.to) {
		problems = append(problems, "from must not be after to")
	}
	return w, problems
}

// pages is totalPages and hasNextPage for total items shown limit a page.
func (w window) pages(total int) (totalPages int, hasNext bool) {
	totalPages = (total + w.limit - 1) / w.limit
	return totalPages, w.page < totalPages
}

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
		w, problems := windowParams(c, problems)
		if len(problems) > 0 {
			return httperr.Validation(problems...)
		}
		if err := d.throttle(c); err != nil {
			return err
		}
		q := pricedb.HistoryQuery{CoinID: coin, VsCurrency: currency, Limit: w.limit, Page: w.page, From: w.from, To: w.to}
		recs, total, err := d.store.History(c.UserContext(), q)
		if err != nil {
			return err
		}
		page := HistoryPage{
			CoinID: coin, VsCurrency: currency, Items: make([]HistoryItem, len(recs)),
			Page: q.Page, Limit: q.Limit, TotalItems: total,
		}
		page.TotalPages, page.HasNextPage = w.pages(total)
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
