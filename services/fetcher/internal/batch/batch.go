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
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
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
	// Budget paces upstream calls for every fetcher together.
	Budget Budget
	// SnapshotMaxAge lets a due batch be answered from its coin's newest
	// price if that is younger (PRICE_MAX_AGE_MS); 0 turns it off.
	SnapshotMaxAge time.Duration
	// LastTTL is how long a coin's newest price is kept (default 24 h).
	LastTTL time.Duration
	// Coalesce is how far ahead an upstream call looks for batches whose
	// window is about to end, to carry them too (BATCH_COALESCE_MS).
	Coalesce time.Duration
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
	if set.LastTTL == 0 {
		set.LastTTL = 24 * time.Hour
	}
	if err := set.Budget.validate(); err != nil {
		return nil, err
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
	// Due is when the batch comes due, if this request moved it (a new
	// batch, a late client, the threshold reached); zero otherwise.
	Due time.Time
	// DueNow says the batch is due at once: the caller should claim now.
	DueNow bool
}

// Enqueue adds the request read from stream entry entryID to its batch and
// acknowledges the entry, atomically.
func (s *Store) Enqueue(ctx context.Context, entryID string, r price.Request) (Joined, error) {
	res, err := enqueue.Run(ctx, s.rdb, s.enqueueKeys(), s.enqueueArgs(entryID, r)...).Result()
	if err != nil {
		return Joined{}, fmt.Errorf("enqueue %s: %w", entryID, err)
	}
	return joined(entryID, res, time.Now())
}

// Entry is a request as read from the stream.
type Entry struct {
	ID      string
	Request price.Request
}

// EnqueueAll enqueues every entry of one stream read in one round trip
// (each still its own atomic script run), and returns one outcome or error
// per entry, in order.
func (s *Store) EnqueueAll(ctx context.Context, entries []Entry) ([]Joined, []error) {
	out, errs := make([]Joined, len(entries)), make([]error, len(entries))
	if len(entries) == 0 {
		return out, errs
	}
	cmds := make([]*redis.Cmd, len(entries))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = enqueue.EvalSha(ctx, p, s.enqueueKeys(), s.enqueueArgs(e.ID, e.Request)...)
		}
		return nil
	})
	local := time.Now()
	for i, e := range entries {
		res, err := cmds[i].Result()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its script cache (a restart): Run loads it again.
			out[i], errs[i] = s.Enqueue(ctx, e.ID, e.Request)
			continue
		}
		if err != nil {
			errs[i] = fmt.Errorf("enqueue %s: %w", e.ID, err)
			continue
		}
		out[i], errs[i] = joined(e.ID, res, local)
	}
	return out, errs
}

func (s *Store) enqueueKeys() []string {
	return []string{price.StreamKey, price.DueKey, price.SeqKey, price.CooldownKey, price.BudgetKey}
}

func (s *Store) enqueueArgs(entryID string, r price.Request) []any {
	interval, tolerance := s.set.Budget.gcra()
	return []any{price.Group, entryID, r.Coin, r.Currency, r.ID, r.ReplyTo, r.TimeoutMS,
		s.set.Window.Milliseconds(), s.set.Threshold, s.set.KeyTTL.Milliseconds(), s.set.Lead.Milliseconds(),
		interval, tolerance, s.set.SnapshotMaxAge.Milliseconds(), price.WakeChannel}
}

// joined decodes enqueue's reply {batch id, size, outcome, due ms, now}.
func joined(entryID string, res any, local time.Time) (Joined, error) {
	f := decode("enqueue "+entryID, res, 5)
	j := Joined{BatchID: f.str(0), Size: int(f.int(1)), Outcome: f.str(2)}
	due, now := f.int(3), f.int(4)
	if f.err != nil {
		return Joined{}, f.err
	}
	if due > 0 {
		// Redis time to the local clock: the script ran a moment ago, so
		// "now" there is about local now here; only the difference counts.
		j.Due, j.DueNow = local, true
		if dueIn := time.Duration(due-now) * time.Millisecond; dueIn > 0 {
			j.Due, j.DueNow = local.Add(dueIn), false
		}
	}
	return j, nil
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
	// Source is price.SourceSnapshot when the batch is to be answered from
	// Snapshot, else price.SourceUpstream.
	Source   string
	Snapshot Snapshot

	// The claim's Redis time and the local time it was read at.
	claimedRedis, claimedLocal time.Time
}

// RedisNow is the Redis clock now, read off the claim's time: the one clock
// every fetcher shares, without another round trip.
func (c Claimed) RedisNow() time.Time { return c.claimedRedis.Add(time.Since(c.claimedLocal)) }

// Snapshot is a coin's newest fetched price.
type Snapshot struct {
	Price     string
	FetchedAt time.Time // Redis time of the fetch
	BatchID   string
}

// Waiting is a due batch left waiting for an upstream slot.
type Waiting struct {
	ID       string
	Deadline time.Time // its earliest client's, on the local clock
}

// Claim is the outcome of one claim round.
type Claim struct {
	Batches []Claimed
	// Waiting are due batches that need an upstream slot not free yet;
	// they keep taking requests until SlotAt.
	Waiting []Waiting
	// SlotAt is when the next upstream call may start (now if free).
	SlotAt time.Time
	// NextDue is when the earliest batch or lease in the due set comes
	// due; zero when the set is empty.
	NextDue time.Time
}

// Claim leases to owner the due batches one upstream call can carry (at
// most max), spending one upstream slot if any of them needs a call.
func (s *Store) Claim(ctx context.Context, owner string, max int) (Claim, error) {
	interval, tolerance := s.set.Budget.gcra()
	res, err := claim.Run(ctx, s.rdb, []string{price.DueKey, price.CooldownKey, price.BudgetKey}, owner, s.set.Lease.Milliseconds(), max,
		interval, tolerance, s.set.SnapshotMaxAge.Milliseconds(), s.set.KeyTTL.Milliseconds(), s.set.Coalesce.Milliseconds()).Result()
	if err != nil {
		return Claim{}, fmt.Errorf("claim batches: %w", err)
	}
	return claimed(res, time.Now())
}

// claimed decodes claim's reply {now, claimed rows, next due ms or -1,
// slot ms, waiting rows}; local is when it arrived.
func claimed(res any, local time.Time) (Claim, error) {
	f := decode("claim batches", res, 5)
	now, rows, next, slot, waiting := f.int(0), f.list(1), f.int(2), f.int(3), f.list(4)
	if f.err != nil {
		return Claim{}, f.err
	}
	at := func(ms int64) time.Time { return local.Add(time.Duration(ms-now) * time.Millisecond) }
	out := Claim{Batches: make([]Claimed, 0, len(rows)), SlotAt: at(slot)}
	if next >= 0 {
		out.NextDue = at(next)
	}
	for _, row := range rows {
		// {id, coin, currency, size, reason, attempt, deadline_ms,
		// created_ms, source, snapshot price, snapshot fetched ms}
		f := decode("claimed batch", row, 11)
		c := Claimed{
			ID: f.str(0), Coin: f.str(1), Currency: f.str(2), Size: int(f.int(3)), FlushReason: f.str(4),
			Attempt: int(f.int(5)), Deadline: at(f.int(6)), Age: time.Duration(now-f.int(7)) * time.Millisecond,
			Source: f.str(8), Snapshot: Snapshot{Price: f.str(9)},
			claimedRedis: time.UnixMilli(now), claimedLocal: local,
		}
		if ms := f.int(10); ms > 0 {
			c.Snapshot.FetchedAt = time.UnixMilli(ms)
		}
		if f.err != nil {
			return Claim{}, f.err
		}
		out.Batches = append(out.Batches, c)
	}
	for _, row := range waiting {
		f := decode("waiting batch", row, 2) // {id, deadline_ms}
		w := Waiting{ID: f.str(0), Deadline: at(f.int(1))}
		if f.err != nil {
			return Claim{}, f.err
		}
		out.Waiting = append(out.Waiting, w)
	}
	return out, nil
}

// Shed answers with payload the requests of waiting batch id whose clients
// give up before cutoff, and returns how many it answered.
func (s *Store) Shed(ctx context.Context, id string, cutoff time.Time, payload []byte) (int, error) {
	// The script adds this to its own Redis TIME: no clock read of ours.
	in := time.Until(cutoff).Milliseconds()
	n, err := shed.Run(ctx, s.rdb, []string{price.DueKey}, id, in, payload,
		s.set.ResultTTL.Milliseconds(), s.set.Keep.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("shed batch %s: %w", id, err)
	}
	return n, nil
}

// TakeSlot spends an upstream slot for a retry if one is free, and
// otherwise returns how long until the next one.
func (s *Store) TakeSlot(ctx context.Context) (wait time.Duration, err error) {
	interval, tolerance := s.set.Budget.gcra()
	ms, err := takeSlot.Run(ctx, s.rdb, []string{price.CooldownKey, price.BudgetKey}, interval, tolerance).Int64()
	if err != nil {
		return 0, fmt.Errorf("take upstream slot: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Cooldown makes every fetcher hold off the upstream for d (CoinGecko's
// Retry-After).
func (s *Store) Cooldown(ctx context.Context, d time.Duration) error {
	if err := s.rdb.Set(ctx, price.CooldownKey, d.Milliseconds(), max(d, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("set upstream cooldown: %w", err)
	}
	return nil
}

// LastPrice returns coin's newest fetched price in currency, or ok false.
func (s *Store) LastPrice(ctx context.Context, coin, currency string) (snap Snapshot, ok bool, err error) {
	v, err := s.rdb.HMGet(ctx, price.LastPriceKey(coin, currency), "price", "fetched_ms", "batch").Result()
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("read last price: %w", err)
	}
	p, _ := v[0].(string)
	msText, _ := v[1].(string)
	ms, perr := strconv.ParseInt(msText, 10, 64)
	if p == "" || perr != nil {
		return Snapshot{}, false, nil
	}
	snap = Snapshot{Price: p, FetchedAt: time.UnixMilli(ms)}
	snap.BatchID, _ = v[2].(string)
	return snap, true, nil
}

// Renew extends owner's leases on ids and returns those it still holds.
func (s *Store) Renew(ctx context.Context, owner string, ids []string) ([]string, error) {
	args := append([]any{owner, s.set.Lease.Milliseconds()}, toAny(ids)...)
	kept, err := renew.Run(ctx, s.rdb, []string{price.DueKey}, args...).StringSlice()
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
// not nil, queues the price for Postgres and keeps it as the coin's newest
// price, in the same atomic step. It returns
// how many requests were answered, or ErrLeaseLost.
func (s *Store) Complete(ctx context.Context, owner, id string, payload []byte, rec *Record) (int, error) {
	return completed(id, complete.Run(ctx, s.rdb, completeKeys, s.completeArgs(owner, Completion{id, payload, rec})...))
}

// Completion is one batch's answer: the reply payload and, for a fetched
// price, its record.
type Completion struct {
	ID      string
	Payload []byte
	Record  *Record
}

// CompleteAll answers the batches of one flush in one round trip (each
// still its own atomic script run), and returns, in order, the requests
// each answered or its error (ErrLeaseLost among them).
func (s *Store) CompleteAll(ctx context.Context, owner string, batches []Completion) ([]int, []error) {
	ns, errs := make([]int, len(batches)), make([]error, len(batches))
	if len(batches) == 1 {
		ns[0], errs[0] = s.Complete(ctx, owner, batches[0].ID, batches[0].Payload, batches[0].Record)
		return ns, errs
	}
	cmds := make([]*redis.Cmd, len(batches))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, b := range batches {
			cmds[i] = complete.EvalSha(ctx, p, completeKeys, s.completeArgs(owner, b)...)
		}
		return nil
	})
	for i, b := range batches {
		if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its script cache (a restart): Run loads it again.
			ns[i], errs[i] = s.Complete(ctx, owner, b.ID, b.Payload, b.Record)
			continue
		}
		ns[i], errs[i] = completed(b.ID, cmds[i])
	}
	return ns, errs
}

var completeKeys = []string{price.DueKey, price.RecordsStream}

func (s *Store) completeArgs(owner string, b Completion) []any {
	args := []any{owner, b.ID, b.Payload, s.set.ResultTTL.Milliseconds(), s.set.Keep.Milliseconds(), s.set.RecordsMaxLen}
	if rec := b.Record; rec == nil {
		args = append(args, "", 0, 0)
	} else {
		args = append(args, rec.Price, rec.FetchedAt.UnixMilli(), s.set.LastTTL.Milliseconds())
		args = append(args, RecCoin, rec.Coin, RecCurrency, rec.Currency, RecPrice, rec.Price,
			RecFetchedAt, rec.FetchedAt.UTC().Format(time.RFC3339Nano), RecBatchID, rec.BatchID)
	}
	return args
}

func completed(id string, cmd *redis.Cmd) (int, error) {
	n, err := cmd.Int()
	if err != nil {
		return 0, fmt.Errorf("complete batch %s: %w", id, err)
	}
	if n < 0 {
		return 0, ErrLeaseLost
	}
	return n, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
