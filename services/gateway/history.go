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

// HistoryReader is what the history route needs from the price database.
type HistoryReader interface {
	// History returns a page of records and the total count, or an error
	// wrapping pricedb.ErrUnavailable.
	History(ctx context.Context, q pricedb.HistoryQuery) ([]pricedb.Record, int, error)
	Ping(ctx context.Context) error
}

var _ HistoryReader = (*pricedb.Store)(nil)

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
