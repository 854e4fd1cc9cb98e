// Package pricestream fans the price update feed out to a gateway's stream
// clients. The hub reads the feed once (one blocking XREAD at a time,
// pricefeed.Follower), keeps the newest price of every coin for new
// streams and hot reads, and hands each update to the streams that asked
// for its coin through a bounded buffer: a stream that cannot keep up is
// dropped, so no client ever slows another or the reader.
package pricestream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
)

// Event is one update, encoded once for every stream and hot read.
type Event struct {
	ID        pricefeed.ID
	FetchedAt time.Time
	// Stale marks a stored price given because the upstream failed.
	Stale bool
	// Frame is the SSE event: "id:", "event: price" and the price answer as data.
	Frame []byte
	// Hot is the body of GET /v1/price/{coinId} answered from this update,
	// with batch.source price.SourceFeed; HotHeaders are its batch headers.
	Hot        []byte
	HotBatchID string
	HotSize    string
	HotReason  string
}

// NewEvent encodes u.
func NewEvent(u pricefeed.Update) (*Event, error) {
	id, err := pricefeed.ParseID(u.ID)
	if err != nil {
		return nil, err
	}
	a := u.Answer()
	data, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 0, len(data)+len(u.ID)+32)
	frame = append(frame, "id: "...)
	frame = append(frame, u.ID...)
	frame = append(frame, "\nevent: price\ndata: "...)
	frame = append(frame, data...)
	frame = append(frame, "\n\n"...)
	a.Batch.Source = price.SourceFeed
	hot, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return &Event{ID: id, FetchedAt: u.FetchedAt, Stale: a.Stale, Frame: frame, Hot: hot,
		HotBatchID: u.BatchID, HotSize: strconv.Itoa(u.BatchSize), HotReason: u.FlushReason}, nil
}

// Key names a coin in a currency.
func Key(coin, currency string) string { return coin + ":" + currency }

// Sub is one stream's subscription.
type Sub struct {
	keys []string
	ch   chan *Event
	gone chan struct{}
	// removed is set, under the hub's lock, once s left the hub.
	removed bool
}

// Events delivers the subscription's updates in feed order.
func (s *Sub) Events() <-chan *Event { return s.ch }

// Dropped is closed when the hub gave up on the subscription because its
// buffer was full: the client is too slow and must reconnect.
func (s *Sub) Dropped() <-chan struct{} { return s.gone }

// Config tunes a hub.
type Config struct {
	// Buffer is how many updates a stream may fall behind before it is dropped.
	Buffer int
	// Prime is how many of the feed's newest entries are read at start to
	// know each coin's newest price.
	Prime int64
	// Block is how long one XREAD waits.
	Block time.Duration
}

// Hub follows the feed for one gateway.
type Hub struct {
	cfg    Config
	follow pricefeed.Follower
	log    *zap.Logger

	mu      sync.RWMutex
	latest  map[string]*Event
	subs    map[string]map[*Sub]struct{}
	open    int
	dropped int64
	ready   chan struct{}

	drainOnce sync.Once
	draining  chan struct{}
}

// NewHub returns a hub; call Run to start following the feed.
func NewHub(rdb *redis.Client, cfg Config, log *zap.Logger) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 64
	}
	if cfg.Prime <= 0 {
		cfg.Prime = 10_000
	}
	return &Hub{
		cfg: cfg, log: log,
		follow:   pricefeed.Follower{RDB: rdb, Log: log, Block: cfg.Block},
		latest:   map[string]*Event{},
		subs:     map[string]map[*Sub]struct{}{},
		ready:    make(chan struct{}),
		draining: make(chan struct{}),
	}
}

// Ready is closed once the hub knows the newest prices and reads the feed.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run reads the feed until ctx is done.
func (h *Hub) Run(ctx context.Context) {
	after := pricefeed.Start
	for ctx.Err() == nil {
		ups, last, err := pricefeed.Tail(ctx, h.follow.RDB, h.cfg.Prime)
		if err == nil {
			after = last
			// Tail is newest first; the hub takes them in feed order.
			slices.Reverse(ups)
			h.ingest(ups)
			break
		}
		h.log.Warn("reading the newest prices failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	close(h.ready)
	h.follow.Run(ctx, after, h.ingest)
}

// ingest keeps the newest price of each coin and hands every update to the
// streams that asked for its coin, dropping those whose buffer is full.
func (h *Hub) ingest(ups []pricefeed.Update) {
	evs := make([]*Event, 0, len(ups))
	keys := make([]string, 0, len(ups))
	for _, u := range ups {
		ev, err := NewEvent(u)
		if err != nil {
			h.log.Warn("skipping a feed entry", zap.String("id", u.ID), zap.Error(err))
			continue
		}
		evs, keys = append(evs, ev), append(keys, Key(u.Coin, u.Currency))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, ev := range evs {
		if cur := h.latest[keys[i]]; cur == nil || !ev.FetchedAt.Before(cur.FetchedAt) {
			h.latest[keys[i]] = ev
		}
		for s := range h.subs[keys[i]] {
			select {
			case s.ch <- ev:
			default:
				h.dropLocked(s)
			}
		}
	}
}

func (h *Hub) dropLocked(s *Sub) {
	if s.removed {
		return
	}
	h.removeLocked(s)
	close(s.gone)
	h.dropped++
}

func (h *Hub) removeLocked(s *Sub) {
	if s.removed {
		return
	}
	s.removed = true
	h.open--
	for _, k := range s.keys {
		delete(h.subs[k], s)
		if len(h.subs[k]) == 0 {
			delete(h.subs, k)
		}
	}
}

// Subscribe starts delivering the updates of keys and returns, atomically
// with it, the newest known event of each key, oldest first: nothing falls
// between the two.
func (h *Hub) Subscribe(keys []string) (*Sub, []*Event) {
	s := &Sub{keys: keys, ch: make(chan *Event, h.cfg.Buffer), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open++
	var now []*Event
	for _, k := range keys {
		if h.subs[k] == nil {
			h.subs[k] = map[*Sub]struct{}{}
		}
		h.subs[k][s] = struct{}{}
		if ev := h.latest[k]; ev != nil {
			now = append(now, ev)
		}
	}
	sort.Slice(now, func(i, j int) bool { return now[i].ID.Less(now[j].ID) })
	return s, now
}

// Unsubscribe stops deliveries to s.
func (h *Hub) Unsubscribe(s *Sub) {
	h.mu.Lock()
	h.removeLocked(s)
	h.mu.Unlock()
}

// Latest is the newest known event of key, or nil.
func (h *Hub) Latest(key string) *Event {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.latest[key]
}

// Stats are the number of open subscriptions and of those dropped so far.
func (h *Hub) Stats() (open int, dropped int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.open, h.dropped
}

// Closed waits until no subscription is left, or ctx is done.
func (h *Hub) Closed(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if open, _ := h.Stats(); open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			open, _ := h.Stats()
			return fmt.Errorf("%d streams open: %w", open, ctx.Err())
		case <-tick.C:
		}
	}
}

// Drain tells every stream to end with a reconnect hint: the gateway is
// stopping.
func (h *Hub) Drain() { h.drainOnce.Do(func() { close(h.draining) }) }

// Draining is closed once Drain was called.
func (h *Hub) Draining() <-chan struct{} { return h.draining }
