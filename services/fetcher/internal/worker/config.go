package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cryptopulse/libs/watchlist"
)

// The three workers are built one way: a config of tunables, completed with
// its defaults and validated by the constructor (NewConsumer, NewFlusher,
// NewPersister), and the dependencies as the constructor's arguments.

// ConsumerConfig tunes the consumer.
type ConsumerConfig struct {
	Name string // consumer name in the group: the instance id
	// ReclaimIdle is how long an entry may sit unacknowledged with a dead
	// consumer before another takes it.
	ReclaimIdle time.Duration
	Count       int64         // entries per read; default 100
	Block       time.Duration // how long one read waits; default 1s
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Count == 0 {
		c.Count = 100
	}
	if c.Block == 0 {
		c.Block = time.Second
	}
	return c
}

// Validate reports a config the consumer cannot run with.
func (c ConsumerConfig) Validate() error {
	switch {
	case c.Name == "":
		return errNoName
	case c.ReclaimIdle <= 0 || c.Count < 1 || c.Block <= 0:
		return fmt.Errorf("consumer %s: reclaim idle, count and block must be positive", c.Name)
	}
	return nil
}

// FlusherConfig tunes the flusher.
type FlusherConfig struct {
	Name string
	// SafetyPoll is how often the flusher looks for due batches even when
	// nothing woke it: the net under a wake-up lost with a Redis reconnect.
	SafetyPoll  time.Duration
	MaxBatches  int           // batches (coins) per upstream call, at most 515
	Concurrency int           // flushes in flight at once
	CallTimeout time.Duration // one upstream call
	MaxAttempts int           // calls per flush
	Margin      time.Duration // answer this long before a client's deadline
	Lease       time.Duration
	// StaleMaxAge lets a failed fetch be answered with the newest stored
	// price if it is younger (STALE_MAX_AGE_MS); 0 turns it off.
	StaleMaxAge time.Duration
	// FeedMaxLen caps the price update feed (PRICE_FEED_MAXLEN); 0 is
	// pricefeed.DefaultMaxLen.
	FeedMaxLen int64
	// Refresh is how old a watched coin's price may get (WATCH_REFRESH_MS);
	// 0 turns refreshing off.
	Refresh time.Duration
	// Watch are the coins of WATCH_COINS, which the flusher keeps
	// registered as watched.
	Watch []watchlist.Coin
}

// maxCoinsPerCall is how many ids one CoinGecko call carries at most.
const maxCoinsPerCall = 515

func (c FlusherConfig) withDefaults() FlusherConfig {
	if c.SafetyPoll == 0 {
		c.SafetyPoll = time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	return c
}

// Validate reports a config the flusher cannot run with.
func (c FlusherConfig) Validate() error {
	switch {
	case c.Name == "":
		return errNoName
	case c.MaxBatches < 1 || c.MaxBatches > maxCoinsPerCall:
		return fmt.Errorf("flusher %s: max batches %d outside 1..%d", c.Name, c.MaxBatches, maxCoinsPerCall)
	case c.SafetyPoll <= 0 || c.Concurrency < 1 || c.CallTimeout <= 0 || c.MaxAttempts < 1 || c.Lease <= 0:
		return fmt.Errorf("flusher %s: safety poll, concurrency, call timeout, attempts and lease must be positive", c.Name)
	case c.Margin < 0 || c.StaleMaxAge < 0 || c.Refresh < 0:
		return fmt.Errorf("flusher %s: margin, stale max age and refresh must not be negative", c.Name)
	case len(c.Watch) > 0 && c.Refresh == 0:
		return fmt.Errorf("flusher %s: watched coins need a refresh period", c.Name)
	}
	return nil
}

// PersisterConfig tunes the persister.
type PersisterConfig struct {
	Name string // consumer name in the records group: the instance id
}

func (c PersisterConfig) withDefaults() PersisterConfig { return c }

// Validate reports a config the persister cannot run with.
func (c PersisterConfig) Validate() error {
	if c.Name == "" {
		return errNoName
	}
	return nil
}

var errNoName = errors.New("worker: a name (the instance id) is required")

// register adds a worker's metrics to reg: an error, not a panic, when one
// is there already (two workers of a kind on one registry).
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("worker metrics: %w", err)
		}
	}
	return nil
}
