// Package pricefeed is the price update feed: every price a fetcher obtains
// is one entry of a Redis Stream, in flat fields redis-cli shows as they are
// (XRANGE cp:price:updates - + COUNT 10). Fetchers append to it; gateways
// follow it to push prices to their stream clients and to answer hot reads.
// The field names and their encoding live here only, for writer and reader.
package pricefeed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// Key is the feed's stream.
const Key = "cp:price:updates"

// DefaultMaxLen is how many updates the feed keeps (approximately) unless
// PRICE_FEED_MAXLEN says otherwise: at the demo plan's 30 calls a minute of
// up to 100 coins each that is over half an hour of every price, about
// 25 MB of Redis memory.
const DefaultMaxLen = 100_000

// Entry fields, flat and readable in XRANGE.
const (
	FieldCoin        = "coin"
	FieldCurrency    = "currency"
	FieldPrice       = "price" // the exact decimal CoinGecko sent
	FieldFetchedAt   = "fetched_at"
	FieldBatch       = "batch"
	FieldBatchSize   = "batch_size"
	FieldFlushReason = "flush_reason"
	FieldFetcher     = "fetcher"
	FieldAttempt     = "attempt" // 1, or more after a takeover
	FieldSource      = "source"  // price.SourceUpstream, price.SourceStale or price.SourceRefresh
)

// Update is one price on the feed.
type Update struct {
	// ID is the entry's stream id, set when read; it is the SSE event id.
	ID          string
	Coin        string
	Currency    string
	Price       string
	FetchedAt   time.Time
	BatchID     string
	BatchSize   int
	FlushReason string
	Fetcher     string
	Attempt     int
	Source      string
}

// FromReply is the update a batch's reply carries: only a price obtained
// for that batch (fetched, or stale and marked so). A failure carries none,
// and neither does a snapshot, which repeats a price already on the feed.
func FromReply(r price.Reply) (Update, bool) {
	if r.Status != 200 || r.Price == "" || r.Batch.Source == price.SourceSnapshot {
		return Update{}, false
	}
	at, err := time.Parse(price.TimeFormat, r.FetchedAt)
	if err != nil {
		return Update{}, false
	}
	return Update{
		Coin: r.CoinID, Currency: r.VsCurrency, Price: r.Price.String(), FetchedAt: at,
		BatchID: r.Batch.ID, BatchSize: r.Batch.Size, FlushReason: r.Batch.FlushReason,
		Fetcher: r.Batch.Fetcher, Attempt: r.Batch.Attempt, Source: r.Batch.Source,
	}, true
}

// Values are u's stream fields, in a stable order.
func (u Update) Values() []any {
	return []any{
		FieldCoin, u.Coin,
		FieldCurrency, u.Currency,
		FieldPrice, u.Price,
		FieldFetchedAt, u.FetchedAt.UTC().Format(price.TimeFormat),
		FieldBatch, u.BatchID,
		FieldBatchSize, u.BatchSize,
		FieldFlushReason, u.FlushReason,
		FieldFetcher, u.Fetcher,
		FieldAttempt, u.Attempt,
		FieldSource, u.Source,
	}
}

// ErrMalformed is returned by Parse for an entry that is not an update.
var ErrMalformed = errors.New("malformed price update")

// Parse reads an update from a stream message.
func Parse(m redis.XMessage) (Update, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	u := Update{
		ID: m.ID, Coin: str(FieldCoin), Currency: str(FieldCurrency), Price: str(FieldPrice),
		BatchID: str(FieldBatch), FlushReason: str(FieldFlushReason), Fetcher: str(FieldFetcher), Source: str(FieldSource),
	}
	at, err := time.Parse(price.TimeFormat, str(FieldFetchedAt))
	if err != nil || u.Coin == "" || u.Currency == "" || !json.Valid([]byte(u.Price)) {
		return Update{}, fmt.Errorf("%w: entry %s", ErrMalformed, m.ID)
	}
	u.FetchedAt = at
	u.BatchSize, _ = strconv.Atoi(str(FieldBatchSize))
	u.Attempt, _ = strconv.Atoi(str(FieldAttempt))
	return u, nil
}

// Answer is u as the body of GET /v1/price/{coinId}: the JSON a stream's
// event carries as its data.
func (u Update) Answer() price.Answer {
	return price.Answer{
		CoinID: u.Coin, VsCurrency: u.Currency, Price: json.Number(u.Price),
		FetchedAt: u.FetchedAt.UTC().Format(price.TimeFormat), Stale: u.Source == price.SourceStale,
		Batch: price.Batch{ID: u.BatchID, Size: u.BatchSize, FlushReason: u.FlushReason, Fetcher: u.Fetcher, Attempt: u.Attempt, Source: u.Source},
	}
}

// Append adds updates to the feed in one round trip, trimming it to about
// maxLen entries.
func Append(ctx context.Context, rdb redis.Cmdable, maxLen int64, updates ...Update) error {
	if len(updates) == 0 {
		return nil
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range updates {
			p.XAdd(ctx, &redis.XAddArgs{Stream: Key, MaxLen: maxLen, Approx: true, Values: u.Values()})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d price updates: %w", len(updates), err)
	}
	return nil
}

// ID is a stream entry id, ordered as Redis orders them.
type ID struct{ MS, Seq uint64 }

// ParseID reads "<ms>-<seq>" (a bare "<ms>" means seq 0, as Redis reads it).
func ParseID(s string) (ID, error) {
	ms, seq, found := strings.Cut(s, "-")
	var id ID
	var err error
	if id.MS, err = strconv.ParseUint(ms, 10, 64); err != nil || ms == "" || ms[0] == '+' {
		return ID{}, fmt.Errorf("stream id %q: want <milliseconds>-<sequence>", s)
	}
	if found {
		if id.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil || seq == "" || seq[0] == '+' {
			return ID{}, fmt.Errorf("stream id %q: want <milliseconds>-<sequence>", s)
		}
	}
	return id, nil
}

// Less reports whether a comes before b in the stream.
func (a ID) Less(b ID) bool { return a.MS < b.MS || (a.MS == b.MS && a.Seq < b.Seq) }

func (a ID) String() string {
	return strconv.FormatUint(a.MS, 10) + "-" + strconv.FormatUint(a.Seq, 10)
}
