// Package batch keeps the per-coin batches in Redis, shared by every
// fetcher: requests join a coin's open batch, a batch is due at the threshold
// or when its window ends, exactly one fetcher holds it at a time under a
// lease it keeps renewing, and a batch whose fetcher died is taken over when
// the lease runs out. The atomic steps are Lua scripts (scripts.go).
package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// Redis keys the store writes besides the per-batch ones.
const (
	DueKey = "cp:batch:due"
	SeqKey = "cp:batch:seq"
)

// ErrLeaseLost is returned by Complete when another fetcher took the batch.
var ErrLeaseLost = errors.New("batch lease lost to another fetcher")

// Settings shape every batch.
type Settings struct {
	Window    time.Duration // flush this long after the first request
	Threshold int           // flush when this many requests wait
	Lease     time.Duration // how long a claim holds without renewal
	// KeyTTL bounds how long batch keys live if every fetcher disappears.
	KeyTTL time.Duration
	// Keep is how long a finished batch stays readable with redis-cli.
	Keep time.Duration
	// ResultTTL is how long an answer waits under its result key.
	ResultTTL time.Duration
	// RecordsMaxLen caps the stream of prices waiting for Postgres.
	RecordsMaxLen int64
	// Lead is how long before a client's deadline its batch is due at the
	// latest, leaving time for the upstream call (default 1.5 s).
	Lead time.Duration
}

// Validate reports settings that cannot work.
func (s Settings) Validate() error {
	switch {
	case s.Window <= 0:
		return errors.New("batch window must be positive")
	case s.Threshold < 1:
		return errors.New("batch threshold must be at least 1")
	case s.Lease < 100*time.Millisecond:
		return errors.New("batch lease must be at least 100ms")
	case s.KeyTTL <= s.Window || s.Keep <= 0 || s.ResultTTL <= 0 || s.RecordsMaxLen <= 0:
		return errors.New("batch key lifetimes must be positive and outlive the window")
	}
	return nil
}

// Store runs the batching scripts.
type Store struct {
	rdb *redis.Client
	set Settings
}

// NewStore returns a Store; settings must be valid.
func NewStore(rdb *redis.Client, set Settings) (*Store, error) {
	if err := set.Validate(); err != nil {
		return nil, err
	}
	if set.Lead == 0 {
		set.Lead = 1500 * time.Millisecond
	}
	return &Store{rdb: rdb, set: set}, nil
}

// Joined says what became of a stream entry.
type Joined struct {
	BatchID string
	Size    int
	// Outcome is "queued", "duplicate" (another fetcher already took the
	// entry) or "expired" (its client has given up).
	Outcome string
}

// Enqueue adds the request read from stream entry entryID to its batch and
// acknowledges the entry, atomically.
func (s *Store) Enqueue(ctx context.Context, entryID string, r price.Request) (Joined, error) {
	res, err := enqueue.Run(ctx, s.rdb, []string{price.StreamKey, DueKey, SeqKey},
		price.Group, entryID, r.Coin, r.Currency, r.ID, r.ReplyTo, r.TimeoutMS,
		s.set.Window.Milliseconds(), s.set.Threshold, s.set.KeyTTL.Milliseconds(), s.set.Lead.Milliseconds()).Slice()
	if err != nil {
		return Joined{}, fmt.Errorf("enqueue %s: %w", entryID, err)
	}
	if len(res) != 3 {
		return Joined{}, fmt.Errorf("enqueue %s: unexpected reply %v", entryID, res)
	}
	id, _ := res[0].(string)
	size, _ := res[1].(int64)
	outcome, _ := res[2].(string)
	return Joined{BatchID: id, Size: int(size), Outcome: outcome}, nil
}

// Claimed is a batch leased to the caller.
type Claimed struct {
	ID          string
	Coin        string
	Currency    string
	Size        int
	FlushReason string
	// Attempt is 1 for the first claim, more after a takeover.
	Attempt int
	// Deadline is when its earliest client stops waiting, on the local
	// monotonic clock (computed from Redis time, so fetchers agree).
	Deadline time.Time
	// Age is how long ago its first request arrived.
	Age time.Duration
}

// Claim leases up to max due batches to owner.
func (s *Store) Claim(ctx context.Context, owner string, max int) ([]Claimed, error) {
	res, err := claim.Run(ctx, s.rdb, []string{DueKey}, owner, s.set.Lease.Milliseconds(), max).Slice()
	if err != nil {
		return nil, fmt.Errorf("claim batches: %w", err)
	}
	local := time.Now()
	if len(res) != 2 {
		return nil, fmt.Errorf("claim batches: unexpected reply %v", res)
	}
	now, _ := res[0].(int64)
	rows, _ := res[1].([]any)
	out := make([]Claimed, 0, len(rows))
	for _, row := range rows {
		f, ok := row.([]any)
		if !ok || len(f) != 8 {
			return nil, fmt.Errorf("claim batches: unexpected row %v", row)
		}
		c := Claimed{}
		c.ID, _ = f[0].(string)
		c.Coin, _ = f[1].(string)
		c.Currency, _ = f[2].(string)
		size, _ := f[3].(int64)
		c.FlushReason, _ = f[4].(string)
		attempt, _ := f[5].(int64)
		deadline, _ := f[6].(int64)
		created, _ := f[7].(int64)
		c.Size, c.Attempt = int(size), int(attempt)
		c.Deadline = local.Add(time.Duration(deadline-now) * time.Millisecond)
		c.Age = time.Duration(now-created) * time.Millisecond
		out = append(out, c)
	}
	return out, nil
}

// Renew extends owner's leases on ids and returns those it still holds.
func (s *Store) Renew(ctx context.Context, owner string, ids []string) ([]string, error) {
	args := append([]any{owner, s.set.Lease.Milliseconds()}, toAny(ids)...)
	kept, err := renew.Run(ctx, s.rdb, []string{DueKey}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return kept, nil
}

// Record is a fetched price on its way to Postgres.
type Record struct {
	Coin, Currency, Price, BatchID string
	FetchedAt                      time.Time
}

// Record stream fields.
const (
	RecCoin      = "coin_id"
	RecCurrency  = "vs_currency"
	RecPrice     = "price"
	RecFetchedAt = "fetched_at"
	RecBatchID   = "batch_id"
)

// Complete answers every request of batch id with payload and, when rec is
// not nil, queues the price for Postgres in the same atomic step. It returns
// how many requests were answered, or ErrLeaseLost.
func (s *Store) Complete(ctx context.Context, owner, id string, payload []byte, rec *Record) (int, error) {
	args := []any{owner, id, payload, s.set.ResultTTL.Milliseconds(), s.set.Keep.Milliseconds(), s.set.RecordsMaxLen}
	if rec != nil {
		args = append(args, RecCoin, rec.Coin, RecCurrency, rec.Currency, RecPrice, rec.Price,
			RecFetchedAt, rec.FetchedAt.UTC().Format(time.RFC3339Nano), RecBatchID, rec.BatchID)
	}
	n, err := complete.Run(ctx, s.rdb, []string{DueKey, price.RecordsStream}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("complete batch %s: %w", id, err)
	}
	if n < 0 {
		return 0, ErrLeaseLost
	}
	return n, nil
}

// Now reads Redis TIME, the one clock all fetchers share.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis time: %w", err)
	}
	return t, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
