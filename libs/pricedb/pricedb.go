// Package pricedb keeps the price history in Postgres: the price_records
// table, its versioned migrations, the idempotent write the fetchers make and
// the paged read the gateways serve.
package pricedb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver sqlx opens
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrUnavailable wraps every failure to reach the database, so callers can
// answer 503 without inspecting driver errors.
var ErrUnavailable = errors.New("price database unavailable")

// Options size a pool and bound every wait on it.
type Options struct {
	PoolSize int
	// QueryTimeout bounds each statement (Postgres's statement_timeout) and
	// each wait for the server to answer at all (that plus a quarter
	// second), and with it each Store call, waiting for a free connection
	// included: a hung Postgres costs a caller this long, then
	// ErrUnavailable. It must be positive.
	QueryTimeout time.Duration
}

// migrationTimeout is the QueryTimeout of the pool migrations run on: long
// enough to build an index over a large carried-over history. Connecting
// for them is bounded as for queries, by migrationConnect.
const (
	migrationTimeout = 10 * time.Minute
	migrationConnect = 5 * time.Second
)

// Open returns a Store over a pool with the bounds of o. It does not dial: a
// service starts even while Postgres is down.
func Open(url string, o Options) (*Store, error) {
	if o.QueryTimeout <= 0 {
		// Zero would not mean "no bound": every read would get only the grace.
		return nil, fmt.Errorf("open database: query timeout %s must be positive", o.QueryTimeout)
	}
	db, err := open(url, o, o.QueryTimeout)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, timeout: o.QueryTimeout + answerGrace}, nil
}

func open(url string, o Options, connectTimeout time.Duration) (*sqlx.DB, error) {
	c, err := connector(url, o.QueryTimeout, connectTimeout)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(c), "postgres")
	db.SetMaxOpenConns(o.PoolSize)
	db.SetMaxIdleConns(o.PoolSize)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Migrate applies the pending migrations. goose (a well-kept migration
// library) holds a Postgres advisory lock meanwhile, so instances that start
// together apply each migration exactly once. It runs on a pool of its own,
// closed when done, since a migration's statements may take far longer than
// a query's bound.
func Migrate(ctx context.Context, url string) error {
	// Two connections: goose holds its lock on one and migrates on another.
	db, err := open(url, Options{PoolSize: 2, QueryTimeout: migrationTimeout}, migrationConnect)
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 60))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db.DB, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("%w: migrate: %v", ErrUnavailable, err)
	}
	return nil
}

// Record is one row of price_records: one upstream fetch of one coin.
type Record struct {
	ID         int64          `db:"id"`
	CoinID     string         `db:"coin_id"`
	VsCurrency string         `db:"vs_currency"`
	Price      string         `db:"price"` // numeric as text: no float rounding
	FetchedAt  time.Time      `db:"fetched_at"`
	BatchID    sql.NullString `db:"batch_id"`
}

// Store reads and writes price_records.
type Store struct {
	db *sqlx.DB
	// timeout bounds each call: Options.QueryTimeout plus the grace the
	// connections allow.
	timeout time.Duration
}

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// bound gives one call its deadline. The connections bound the waits on a
// server that does not answer; this one also bounds the wait for a free
// connection while every one of them is stuck.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Insert writes records in one statement. A record whose batch id is already
// stored is skipped, so a redelivered record is not counted twice.
func (s *Store) Insert(ctx context.Context, recs []Record) (int64, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO price_records (coin_id, vs_currency, price, fetched_at, batch_id) VALUES ")
	args := make([]any, 0, len(recs)*5)
	for i, r := range recs {
		if i > 0 {
			b.WriteString(",")
		}
		n := i * 5
		fmt.Fprintf(&b, "($%d,$%d,$%d::numeric,$%d,$%d)", n+1, n+2, n+3, n+4, n+5)
		args = append(args, r.CoinID, r.VsCurrency, r.Price, r.FetchedAt.UTC(), r.BatchID)
	}
	b.WriteString(" ON CONFLICT (batch_id) WHERE batch_id IS NOT NULL DO NOTHING")
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := s.db.ExecContext(ctx, b.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("%w: insert price records: %v", ErrUnavailable, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// HistoryQuery selects a page of one coin's history.
type HistoryQuery struct {
	CoinID     string
	VsCurrency string
	From, To   *time.Time
	Limit      int
	Page       int
}

// History returns the page of records asked for, newest first, and how many
// records match in all.
func (s *Store) History(ctx context.Context, q HistoryQuery) ([]Record, int, error) {
	where, args := coinRange([]any{q.CoinID, q.VsCurrency}, q.From, q.To)
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var total int
	if err := s.db.GetContext(ctx, &total, "SELECT count(*) FROM price_records WHERE "+where, args...); err != nil {
		return nil, 0, fmt.Errorf("%w: count history: %v", ErrUnavailable, err)
	}
	recs := []Record{}
	if total == 0 {
		return recs, 0, nil
	}
	args = append(args, q.Limit, (q.Page-1)*q.Limit)
	query := fmt.Sprintf("SELECT id, coin_id, vs_currency, price::text AS price, fetched_at, batch_id FROM price_records WHERE %s ORDER BY fetched_at DESC, id DESC LIMIT $%d OFFSET $%d",
		where, len(args)-1, len(args))
	if err := s.db.SelectContext(ctx, &recs, query, args...); err != nil {
		return nil, 0, fmt.Errorf("%w: read history: %v", ErrUnavailable, err)
	}
	return recs, total, nil
}

// ErrNoRecord is returned by Latest when the coin has no row yet.
var ErrNoRecord = errors.New("no price record")

// Latest returns the newest record of a coin in a currency, ErrNoRecord, or
// an error wrapping ErrUnavailable. It serves the stale fallback when Redis
// lost the newest price.
func (s *Store) Latest(ctx context.Context, coinID, vsCurrency string) (Record, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var r Record
	err := s.db.GetContext(ctx, &r, "SELECT id, coin_id, vs_currency, price::text AS price, fetched_at, batch_id FROM price_records WHERE coin_id = $1 AND vs_currency = $2 ORDER BY fetched_at DESC, id DESC LIMIT 1",
		coinID, vsCurrency)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Record{}, ErrNoRecord
	case err != nil:
		return Record{}, fmt.Errorf("%w: latest price: %v", ErrUnavailable, err)
	}
	return r, nil
}

// coinRange is the WHERE clause that picks a coin's prices in one currency,
// fetched in [from, to] where those are set. args holds the coin ($1), the
// currency ($2) and any arguments of the caller's after them; the bounds'
// arguments are appended.
func coinRange(args []any, from, to *time.Time) (string, []any) {
	where := "coin_id = $1 AND vs_currency = $2"
	if from != nil {
		args = append(args, from.UTC())
		where += fmt.Sprintf(" AND fetched_at >= $%d", len(args))
	}
	if to != nil {
		args = append(args, to.UTC())
		where += fmt.Sprintf(" AND fetched_at <= $%d", len(args))
	}
	return where, args
}
