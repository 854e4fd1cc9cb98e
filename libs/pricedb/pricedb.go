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

// Open returns a pool of at most poolSize connections. It does not dial:
// a service starts even while Postgres is down.
func Open(url string, poolSize int) (*sqlx.DB, error) {
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Migrate applies the pending migrations. goose (a well-kept migration
// library) holds a Postgres advisory lock meanwhile, so instances that start
// together apply each migration exactly once.
func Migrate(ctx context.Context, db *sqlx.DB) error {
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
type Store struct{ db *sqlx.DB }

// NewStore returns a Store over db.
func NewStore(db *sqlx.DB) *Store { return &Store{db: db} }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
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
	where := "coin_id = $1 AND vs_currency = $2"
	args := []any{q.CoinID, q.VsCurrency}
	if q.From != nil {
		args = append(args, q.From.UTC())
		where += fmt.Sprintf(" AND fetched_at >= $%d", len(args))
	}
	if q.To != nil {
		args = append(args, q.To.UTC())
		where += fmt.Sprintf(" AND fetched_at <= $%d", len(args))
	}
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
