package pricedb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cryptopulse/libs/pricedb"
	"cryptopulse/testkit"
)

// BenchmarkCandles times the first page (20 buckets) of 1m and 1d candles
// over 1,000,000 prices of one coin, with and without the candles index
// (migration 00003), next to 200,000 prices of another coin. Two spacings:
// one price a second (16,667 minutes, 12 days) and one a minute (a million
// minutes, the 1m worst case: every row is its own bucket). Numbers are in
// bench/candles.txt:
//
//	go test -run '^$' -bench Candles -benchtime 5x -timeout 30m ./libs/pricedb/
func BenchmarkCandles(b *testing.B) {
	pg := testkit.StartPostgres(b)
	for _, spacing := range []string{"1 second", "1 minute"} {
		s, db := migratedStore(b, pg)
		ctx := context.Background()
		for _, stmt := range []string{
			`INSERT INTO price_records (coin_id, vs_currency, price, fetched_at)
			 SELECT 'bitcoin', 'usd', round((60000 + 5000 * sin(g / 5000.0) + random() * 100)::numeric, 12),
			        TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * interval '` + spacing + `'
			 FROM generate_series(1, 1000000) g`,
			`INSERT INTO price_records (coin_id, vs_currency, price, fetched_at)
			 SELECT 'ethereum', 'usd', round((3000 + random() * 10)::numeric, 12),
			        TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * interval '5 seconds'
			 FROM generate_series(1, 200000) g`,
			"VACUUM ANALYZE price_records",
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				b.Fatal(err)
			}
		}
		for _, index := range []string{"with index", "without index"} {
			if index == "without index" {
				if _, err := db.ExecContext(ctx, "DROP INDEX idx_price_records_coin_currency_fetched"); err != nil {
					b.Fatal(err)
				}
			}
			for _, iv := range []time.Duration{time.Minute, 24 * time.Hour} {
				q := pricedb.CandleQuery{CoinID: "bitcoin", VsCurrency: "usd", Interval: iv, Limit: 20, Page: 1}
				b.Run(fmt.Sprintf("rows every %s/%s/interval %s", spacing, index, iv), func(b *testing.B) {
					for b.Loop() {
						got, total, err := s.Candles(ctx, q)
						if err != nil || len(got) == 0 || total == 0 {
							b.Fatalf("%d candles of %d, %v", len(got), total, err)
						}
					}
				})
			}
		}
	}
}
