package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// openPattern matches every open batch (see docs/redis.md).
const openPattern = price.OpenBatchPrefix + "*"

// drainLimit bounds the wait for the system to settle after the load.
const drainLimit = 30 * time.Second

// DrainState is what is still in flight after the load stopped.
type DrainState struct {
	// Pending stream entries (read, not acknowledged), open batches, due or
	// leased batches, price records not yet in Postgres, and clients the
	// gateways still hold.
	Pending, Open, Due, Records int64
	Waiting                     float64
	// After is how long after the load it reached all zeros; Drained is
	// false if it never did within drainLimit (the state is then the last
	// one read). Err is the last read that failed.
	After   time.Duration
	Drained bool
	Err     error
}

func (d DrainState) zero() bool {
	return d.Err == nil && d.Pending == 0 && d.Open == 0 && d.Due == 0 && d.Records == 0 && d.Waiting == 0
}

// drain polls Redis and the gateways until nothing is in flight.
func drain(ctx context.Context, r *redisServer, m *sampler) DrainState {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	start := time.Now()
	var st DrainState
	for {
		st = readDrain(ctx, c, m)
		st.After = time.Since(start)
		if st.zero() {
			st.Drained = true
			return st
		}
		if st.After > drainLimit || ctx.Err() != nil {
			return st
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func readDrain(ctx context.Context, c *redis.Client, m *sampler) DrainState {
	var st DrainState
	p, err := c.XPending(ctx, price.StreamKey, price.Group).Result()
	if err != nil {
		st.Err = fmt.Errorf("XPENDING %s %s: %w", price.StreamKey, price.Group, err)
		return st
	}
	st.Pending = p.Count
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, openPattern, 1000).Result()
		if err != nil {
			st.Err = fmt.Errorf("SCAN %s: %w", openPattern, err)
			return st
		}
		st.Open += int64(len(keys))
		if cursor = next; cursor == 0 {
			break
		}
	}
	if st.Due, err = c.ZCard(ctx, price.DueKey).Result(); err != nil {
		st.Err = fmt.Errorf("ZCARD %s: %w", price.DueKey, err)
		return st
	}
	if st.Records, err = c.XLen(ctx, price.RecordsStream).Result(); err != nil {
		st.Err = fmt.Errorf("XLEN %s: %w", price.RecordsStream, err)
		return st
	}
	gateways := 0
	for _, s := range m.scrapeAll(ctx) {
		if len(s.Name) > 7 && s.Name[:7] == "gateway" {
			st.Waiting += s.Waiting
			gateways++
		}
	}
	if gateways == 0 {
		st.Err = fmt.Errorf("no gateway answered /metrics")
	}
	return st
}

// Row is a price_records row found for an answered batch.
type Row struct {
	BatchID, Coin, Price string
}

// readRows fetches the price_records rows of the given batches.
func readRows(ctx context.Context, dbURL string, batches []string) ([]Row, error) {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx,
		`SELECT batch_id, coin_id, price::text FROM price_records WHERE batch_id = ANY($1)`, pq.Array(batches))
	if err != nil {
		return nil, fmt.Errorf("chaos: read price_records: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.BatchID, &r.Coin, &r.Price); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
