package pricedb

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// CandleQuery selects a page of one coin's candles.
type CandleQuery struct {
	CoinID     string
	VsCurrency string
	// Interval is the bucket width, in whole seconds. Buckets are aligned
	// on 2000-01-01T00:00:00Z, so hours and days start on UTC boundaries.
	Interval time.Duration
	From, To *time.Time
	Limit    int
	Page     int
}

// Candle summarises the prices stored in one bucket [Start, Start+Interval).
// Prices are numeric as text, so no digit is lost to float rounding.
type Candle struct {
	Start          time.Time
	Open           string // the earliest price of the bucket
	High           string
	Low            string
	Close          string // the latest price of the bucket
	Count          int
	FirstFetchedAt time.Time
	LastFetchedAt  time.Time
}

// candleRow is one row of the candles query: the total is always there,
// the bucket's columns are NULL when the page is past the last bucket.
type candleRow struct {
	Total int            `db:"total"`
	Start sql.NullTime   `db:"start"`
	Open  sql.NullString `db:"open"`
	High  sql.NullString `db:"high"`
	Low   sql.NullString `db:"low"`
	Close sql.NullString `db:"close"`
	Count sql.NullInt64  `db:"n"`
	First sql.NullTime   `db:"first_at"`
	Last  sql.NullTime   `db:"last_at"`
}

// candlesSQL answers a page in one statement, so the page and its total
// come from the same snapshot, and reads the rows as little as it can
// (bench/candles.txt has the numbers):
//   - walk finds the page's buckets newest first by skipping from bucket to
//     bucket down the candles index (one max(fetched_at) probe per bucket),
//     so finding page 1 costs 20 probes however long the history is;
//   - agg computes high, low, count and the first and last fetched_at only
//     over the page's own time range, an index range scan;
//   - open and close are two index lookups per bucket of the page: the rows
//     at its first and last fetched_at, ties broken by id as history orders
//     them, instead of sorting each bucket's prices;
//   - total counts bucket changes along the index in fetched_at order, a
//     streaming pass with no hash table, which a million one-row buckets
//     (1m candles of a coin refreshed each minute) would spill to disk.
//
// The LEFT JOIN keeps the total when the page is past the last bucket.
const candlesSQL = `
WITH RECURSIVE walk(start, k) AS (
	SELECT date_bin($3::interval, max(fetched_at), TIMESTAMPTZ '2000-01-01 00:00:00+00'), 1
	FROM price_records WHERE %[1]s
	UNION ALL
	SELECT (SELECT date_bin($3::interval, max(fetched_at), TIMESTAMPTZ '2000-01-01 00:00:00+00')
	        FROM price_records WHERE %[1]s AND fetched_at < w.start), w.k + 1
	FROM walk w WHERE w.start IS NOT NULL AND w.k < $4::bigint + $5::bigint
), page AS (
	SELECT start FROM walk WHERE start IS NOT NULL AND k > $5::bigint
), agg AS (
	SELECT date_bin($3::interval, fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start,
	       max(price) AS high, min(price) AS low, count(*) AS n,
	       min(fetched_at) AS first_at, max(fetched_at) AS last_at
	FROM price_records
	WHERE %[1]s
	  AND fetched_at >= (SELECT min(start) FROM page)
	  AND fetched_at < (SELECT max(start) FROM page) + $3::interval
	GROUP BY 1
), total AS (
	SELECT count(*) FILTER (WHERE new_bucket) AS total FROM (
		SELECT date_bin($3::interval, fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') IS DISTINCT FROM
		       lag(date_bin($3::interval, fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')) OVER (ORDER BY fetched_at) AS new_bucket
		FROM price_records WHERE %[1]s) e
)
SELECT t.total, p.start, p.high::text AS high, p.low::text AS low, p.n, p.first_at, p.last_at,
	(SELECT o.price::text FROM price_records o
	 WHERE o.coin_id = $1 AND o.vs_currency = $2 AND o.fetched_at = p.first_at
	 ORDER BY o.id LIMIT 1) AS open,
	(SELECT c.price::text FROM price_records c
	 WHERE c.coin_id = $1 AND c.vs_currency = $2 AND c.fetched_at = p.last_at
	 ORDER BY c.id DESC LIMIT 1) AS close
FROM total t
LEFT JOIN agg p ON true
ORDER BY p.start DESC`

// Candles returns the page of candles asked for, newest bucket first, and
// how many buckets hold at least one price in all. Empty buckets are left
// out. Errors wrap ErrUnavailable.
func (s *Store) Candles(ctx context.Context, q CandleQuery) ([]Candle, int, error) {
	if q.Interval < time.Second || q.Interval%time.Second != 0 {
		return nil, 0, fmt.Errorf("candles: interval %s is not a whole number of seconds", q.Interval)
	}
	where, args := coinRange([]any{q.CoinID, q.VsCurrency, fmt.Sprintf("%d seconds", q.Interval/time.Second),
		q.Limit, (q.Page - 1) * q.Limit}, q.From, q.To)
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read candles: %v", ErrUnavailable, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to keep
	// The planner expects a whole history's rows, so by default Postgres
	// JIT-compiles the statement on every call; EXPLAIN ANALYZE showed that
	// compiling took from 40 to 370 ms, more than the rest of a 1m page.
	if _, err := tx.ExecContext(ctx, "SET LOCAL jit = off"); err != nil {
		return nil, 0, fmt.Errorf("%w: read candles: %v", ErrUnavailable, err)
	}
	var rows []candleRow
	if err := tx.SelectContext(ctx, &rows, fmt.Sprintf(candlesSQL, where), args...); err != nil {
		return nil, 0, fmt.Errorf("%w: read candles: %v", ErrUnavailable, err)
	}
	candles := []Candle{}
	total := 0
	for _, r := range rows {
		total = r.Total
		if !r.Start.Valid {
			continue
		}
		candles = append(candles, Candle{
			Start: r.Start.Time.UTC(), Open: r.Open.String, High: r.High.String, Low: r.Low.String,
			Close: r.Close.String, Count: int(r.Count.Int64),
			FirstFetchedAt: r.First.Time.UTC(), LastFetchedAt: r.Last.Time.UTC(),
		})
	}
	return candles, total, nil
}
