package worker

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricedb"
	"cryptopulse/services/fetcher/internal/batch"
)

// RecordWriter is what the persister needs from the price database.
type RecordWriter interface {
	// Insert writes records idempotently (by batch id), or returns an error
	// wrapping pricedb.ErrUnavailable.
	Insert(ctx context.Context, recs []pricedb.Record) (int64, error)
}

var _ RecordWriter = (*pricedb.Store)(nil)

// Persister moves fetched prices from the records stream to Postgres. An
// entry is acknowledged only after its row is committed, so while Postgres
// is down records wait in Redis and none is lost.
type Persister struct {
	cfg     PersisterConfig
	rdb     *redis.Client
	db      RecordWriter
	migrate func(context.Context) error
	log     *zap.Logger
	written prometheus.Counter
}

// NewPersister returns a Persister writing to db, once migrate has
// succeeded, and registers its metric.
func NewPersister(cfg PersisterConfig, rdb *redis.Client, db RecordWriter, migrate func(context.Context) error, log *zap.Logger, reg prometheus.Registerer) (*Persister, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	written := prometheus.NewCounter(prometheus.CounterOpts{Name: "fetcher_price_records_written_total", Help: "Rows written to price_records."})
	if err := register(reg, written); err != nil {
		return nil, err
	}
	return &Persister{cfg: cfg, rdb: rdb, db: db, migrate: migrate, log: log, written: written}, nil
}

// Run persists until ctx is done.
func (p *Persister) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := p.migrate(ctx)
		if err == nil {
			break
		}
		p.log.Warn("migrating the price database failed; retrying", zap.Error(err))
		sleep(ctx, 2*time.Second)
	}
	backoff := 250 * time.Millisecond
	lastReclaim := time.Time{}
	// An idle persister costs one blocking read a second: the group is made
	// again only when Redis says it is missing, and our own pending entries
	// are read again only after a failed write (or at start).
	ensure, ownPending := true, true
	for ctx.Err() == nil {
		if ensure {
			if err := EnsureGroup(ctx, p.rdb, price.RecordsStream, price.RecordsGroup); err != nil {
				sleep(ctx, backoff)
				continue
			}
			ensure = false
		}
		if time.Since(lastReclaim) > 10*time.Second {
			lastReclaim = time.Now()
			_, _, _ = p.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: price.RecordsStream, Group: price.RecordsGroup, Consumer: p.cfg.Name,
				MinIdle: 30 * time.Second, Start: "0-0", Count: 100,
			}).Result()
		}
		// Our own unacknowledged entries first (a failed insert), then new ones.
		var msgs []redis.XMessage
		var err error
		if ownPending {
			msgs, err = p.read(ctx, "0", 0)
			ownPending = err != nil || len(msgs) > 0
		}
		if err == nil && len(msgs) == 0 {
			msgs, err = p.read(ctx, ">", time.Second)
		}
		if err != nil {
			if isNoGroup(err) {
				ensure = true
			}
			if ctx.Err() == nil && !errors.Is(err, redis.Nil) {
				p.log.Warn("reading price records failed", zap.Error(err))
				sleep(ctx, backoff)
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if err := p.write(ctx, msgs); err != nil {
			ownPending = true
			p.log.Warn("writing price records failed; they stay queued in Redis", zap.Int("records", len(msgs)), zap.Error(err))
			sleep(ctx, time.Second)
		}
	}
}

func (p *Persister) read(ctx context.Context, from string, block time.Duration) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{Group: price.RecordsGroup, Consumer: p.cfg.Name, Streams: []string{price.RecordsStream, from}, Count: 200}
	if block > 0 {
		args.Block = block
	}
	res, err := p.rdb.XReadGroup(ctx, args).Result()
	if err != nil {
		return nil, err
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out, nil
}

func (p *Persister) write(ctx context.Context, msgs []redis.XMessage) error {
	recs := make([]pricedb.Record, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, m.ID)
		s := func(k string) string { v, _ := m.Values[k].(string); return v }
		at, err := time.Parse(time.RFC3339Nano, s(batch.RecFetchedAt))
		if err != nil || s(batch.RecCoin) == "" || s(batch.RecPrice) == "" {
			// Acknowledged below without a row: it can never be written.
			p.log.Error("dropping malformed price record", zap.String("entry", m.ID))
			continue
		}
		recs = append(recs, pricedb.Record{
			CoinID: s(batch.RecCoin), VsCurrency: s(batch.RecCurrency), Price: s(batch.RecPrice), FetchedAt: at,
			BatchID: sql.NullString{String: s(batch.RecBatchID), Valid: s(batch.RecBatchID) != ""},
		})
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := p.db.Insert(wctx, recs)
	cancel()
	if err != nil {
		return err
	}
	p.written.Add(float64(n))
	// A written record is no longer needed in Redis: acknowledge and delete
	// it, so the stream only ever holds what Postgres has not got yet.
	pipe := p.rdb.TxPipeline()
	pipe.XAck(ctx, price.RecordsStream, price.RecordsGroup, ids...)
	pipe.XDel(ctx, price.RecordsStream, ids...)
	_, err = pipe.Exec(ctx)
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
