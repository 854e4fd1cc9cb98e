package pricedb_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"cryptopulse/libs/pricedb"
	"cryptopulse/testkit"
)

// at is a UTC instant on 2026-03-01.
func at(hour, min, sec, micro int) time.Time {
	return time.Date(2026, 3, 1, hour, min, sec, micro*1000, time.UTC)
}

// migratedStore returns a Store on a fresh, migrated database of pg.
func migratedStore(t testing.TB, pg *testkit.Postgres) (*pricedb.Store, *sqlx.DB) {
	t.Helper()
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pricedb.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	// A bound far above any query here: the benchmark's million-row
	// candles must be measured, not cut off.
	s, err := pricedb.Open(url, pricedb.Options{PoolSize: 4, QueryTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// A plain pool for the set-up statements (generate_series over a
	// million rows) that no Store method covers.
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return s, db
}

// insertEach writes the records one statement each, in the order given, so
// their ids follow that order.
func insertEach(t *testing.T, s *pricedb.Store, recs ...pricedb.Record) {
	t.Helper()
	for _, r := range recs {
		if _, err := s.Insert(context.Background(), []pricedb.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
}

func btc(p string, ts time.Time) pricedb.Record {
	return pricedb.Record{CoinID: "bitcoin", VsCurrency: "usd", Price: p, FetchedAt: ts}
}

// candleRows are known prices around minute, hour and day edges. They are
// stored out of time order: open and close follow fetched_at, not id.
func candleRows() []pricedb.Record {
	return []pricedb.Record{
		btc("105", at(12, 0, 30, 0)),
		btc("100", at(12, 0, 0, 0)),      // exactly on the 12:00 edge: opens 12:00
		btc("95", at(12, 0, 59, 999999)), // the last microsecond of 12:00
		btc("101", at(12, 1, 0, 0)),      // exactly on the 12:01 edge
		btc("102", at(12, 1, 0, 0)),      // same instant, later id: closes 12:01
		btc("99.123456789012345678901", at(12, 3, 10, 0)),
		btc("7", at(3, 59, 59, 999999)), // the last instant of the 00:00 4h bucket
		btc("8", at(4, 0, 0, 0)),        // the first of the 04:00 one
		btc("6", time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC)),
		// Other coins and currencies never mix in.
		{CoinID: "ethereum", VsCurrency: "usd", Price: "3000", FetchedAt: at(12, 0, 10, 0)},
		{CoinID: "bitcoin", VsCurrency: "eur", Price: "1", FetchedAt: at(12, 0, 10, 0)},
	}
}

func candle(start time.Time, open, high, low, close string, n int, first, last time.Time) pricedb.Candle {
	return pricedb.Candle{Start: start, Open: open, High: high, Low: low, Close: close, Count: n, FirstFetchedAt: first, LastFetchedAt: last}
}

func TestCandles(t *testing.T) {
	pg := testkit.StartPostgres(t)
	s, _ := migratedStore(t, pg)
	insertEach(t, s, candleRows()...)
	ptr := func(t time.Time) *time.Time { return &t }

	m1200 := candle(at(12, 0, 0, 0), "100", "105", "95", "95", 3, at(12, 0, 0, 0), at(12, 0, 59, 999999))
	m1201 := candle(at(12, 1, 0, 0), "101", "102", "101", "102", 2, at(12, 1, 0, 0), at(12, 1, 0, 0))
	m1203 := candle(at(12, 3, 0, 0), "99.123456789012345678901", "99.123456789012345678901", "99.123456789012345678901",
		"99.123456789012345678901", 1, at(12, 3, 10, 0), at(12, 3, 10, 0))
	m0359 := candle(at(3, 59, 0, 0), "7", "7", "7", "7", 1, at(3, 59, 59, 999999), at(3, 59, 59, 999999))
	m0400 := candle(at(4, 0, 0, 0), "8", "8", "8", "8", 1, at(4, 0, 0, 0), at(4, 0, 0, 0))
	m2359 := candle(time.Date(2026, 2, 28, 23, 59, 0, 0, time.UTC), "6", "6", "6", "6", 1,
		time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC), time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC))

	tests := []struct {
		name      string
		q         pricedb.CandleQuery
		want      []pricedb.Candle
		wantTotal int
	}{
		{name: "1m, every bucket", q: pricedb.CandleQuery{Interval: time.Minute, Limit: 20, Page: 1},
			want: []pricedb.Candle{m1203, m1201, m1200, m0400, m0359, m2359}, wantTotal: 6},
		{name: "1m, first page of two", q: pricedb.CandleQuery{Interval: time.Minute, Limit: 2, Page: 1},
			want: []pricedb.Candle{m1203, m1201}, wantTotal: 6},
		{name: "1m, second page of two", q: pricedb.CandleQuery{Interval: time.Minute, Limit: 2, Page: 2},
			want: []pricedb.Candle{m1200, m0400}, wantTotal: 6},
		{name: "1m, page past the end", q: pricedb.CandleQuery{Interval: time.Minute, Limit: 2, Page: 4},
			want: []pricedb.Candle{}, wantTotal: 6},
		{name: "5m spans the minutes", q: pricedb.CandleQuery{Interval: 5 * time.Minute, Limit: 1, Page: 1},
			want: []pricedb.Candle{candle(at(12, 0, 0, 0), "100", "105", "95", "99.123456789012345678901", 6,
				at(12, 0, 0, 0), at(12, 3, 10, 0))}, wantTotal: 4},
		{name: "4h edges at 04:00 UTC", q: pricedb.CandleQuery{Interval: 4 * time.Hour, Limit: 20, Page: 1},
			want: []pricedb.Candle{
				candle(at(12, 0, 0, 0), "100", "105", "95", "99.123456789012345678901", 6, at(12, 0, 0, 0), at(12, 3, 10, 0)),
				m0400,
				candle(at(0, 0, 0, 0), "7", "7", "7", "7", 1, at(3, 59, 59, 999999), at(3, 59, 59, 999999)),
				candle(time.Date(2026, 2, 28, 20, 0, 0, 0, time.UTC), "6", "6", "6", "6", 1, m2359.FirstFetchedAt, m2359.LastFetchedAt),
			}, wantTotal: 4},
		{name: "1d edges at midnight UTC", q: pricedb.CandleQuery{Interval: 24 * time.Hour, Limit: 20, Page: 1},
			want: []pricedb.Candle{
				candle(at(0, 0, 0, 0), "7", "105", "7", "99.123456789012345678901", 8, at(3, 59, 59, 999999), at(12, 3, 10, 0)),
				candle(time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), "6", "6", "6", "6", 1, m2359.FirstFetchedAt, m2359.LastFetchedAt),
			}, wantTotal: 2},
		{name: "from and to are inclusive and cut inside buckets",
			q:    pricedb.CandleQuery{Interval: time.Minute, Limit: 20, Page: 1, From: ptr(at(12, 0, 30, 0)), To: ptr(at(12, 1, 0, 0))},
			want: []pricedb.Candle{m1201, candle(at(12, 0, 0, 0), "105", "105", "95", "95", 2, at(12, 0, 30, 0), at(12, 0, 59, 999999))}, wantTotal: 2},
		{name: "from alone", q: pricedb.CandleQuery{Interval: time.Hour, Limit: 20, Page: 1, From: ptr(at(4, 0, 0, 0))},
			want: []pricedb.Candle{
				candle(at(12, 0, 0, 0), "100", "105", "95", "99.123456789012345678901", 6, at(12, 0, 0, 0), at(12, 3, 10, 0)),
				m0400,
			}, wantTotal: 2},
		{name: "to alone", q: pricedb.CandleQuery{Interval: time.Hour, Limit: 20, Page: 1, To: ptr(at(3, 59, 59, 999999))},
			want: []pricedb.Candle{
				candle(at(3, 0, 0, 0), "7", "7", "7", "7", 1, at(3, 59, 59, 999999), at(3, 59, 59, 999999)),
				candle(time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC), "6", "6", "6", "6", 1, m2359.FirstFetchedAt, m2359.LastFetchedAt),
			}, wantTotal: 2},
		{name: "a coin with no rows", q: pricedb.CandleQuery{CoinID: "dogecoin", Interval: time.Minute, Limit: 20, Page: 1},
			want: []pricedb.Candle{}, wantTotal: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			if q.CoinID == "" {
				q.CoinID = "bitcoin"
			}
			q.VsCurrency = "usd"
			got, total, err := s.Candles(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if total != tt.wantTotal {
				t.Errorf("total = %d, want %d", total, tt.wantTotal)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("candles\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}

	t.Run("database down", func(t *testing.T) {
		pg.Stop(t)
		defer pg.Start(t)
		_, _, err := s.Candles(context.Background(), pricedb.CandleQuery{CoinID: "bitcoin", VsCurrency: "usd", Interval: time.Minute, Limit: 20, Page: 1})
		if !errors.Is(err, pricedb.ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
}
