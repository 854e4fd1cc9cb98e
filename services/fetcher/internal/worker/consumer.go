// Package worker holds the fetcher's three loops: the consumer that moves
// stream entries into shared batches, the flusher that claims due batches
// and answers them with one upstream call, and the persister that writes
// fetched prices to Postgres.
package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/services/fetcher/internal/batch"
)

// Consumer reads the request stream through the consumer group
// (price.Group) and moves each entry into its coin's batch.
type Consumer struct {
	cfg   ConsumerConfig
	rdb   *redis.Client
	store *batch.Store
	// due, if set, hears when a request made its batch due sooner (a new
	// batch, a full one): the flusher's wake-up.
	due func(at time.Time)
	log *zap.Logger
}

// NewConsumer returns a Consumer over rdb and store; due may be nil.
func NewConsumer(cfg ConsumerConfig, rdb *redis.Client, store *batch.Store, due func(at time.Time), log *zap.Logger) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, rdb: rdb, store: store, due: due, log: log}, nil
}

// EnsureGroup creates the stream and group if missing. It starts the group at
// 0, not $, so that after Redis comes back empty the requests gateways added
// before any fetcher noticed are still read.
func EnsureGroup(ctx context.Context, rdb *redis.Client, stream, group string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// Run consumes until ctx is done. Redis failures are logged and retried; it
// never returns early.
func (c *Consumer) Run(ctx context.Context) {
	lastReclaim := time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastReclaim) > c.cfg.ReclaimIdle/2 {
			lastReclaim = time.Now()
			c.reclaim(ctx)
		}
		// Not cancelled mid-read: an entry Redis hands over while the read
		// is abandoned would sit unbatched until another fetcher reclaims
		// it. Stopping waits at most one Block instead.
		res, err := c.rdb.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
			Group: price.Group, Consumer: c.cfg.Name, Streams: []string{price.StreamKey, ">"},
			Count: c.cfg.Count, Block: c.cfg.Block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case isNoGroup(err):
			// Redis lost the stream or group (a restart without data):
			// make them again and go on.
			c.log.Warn("consumer group missing; recreating it")
			if err := EnsureGroup(ctx, c.rdb, price.StreamKey, price.Group); err != nil {
				c.pause(ctx, err)
			}
			continue
		case err != nil:
			c.pause(ctx, err)
			continue
		}
		for _, s := range res {
			c.handle(context.WithoutCancel(ctx), s.Messages)
		}
	}
}

func (c *Consumer) pause(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	c.log.Warn("reading the request stream failed; retrying", zap.Error(err))
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
}

// reclaim takes over entries another consumer read but never batched (it
// died between XREADGROUP and the enqueue).
func (c *Consumer) reclaim(ctx context.Context) {
	start := "0-0"
	for ctx.Err() == nil {
		msgs, next, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: price.StreamKey, Group: price.Group, Consumer: c.cfg.Name,
			MinIdle: c.cfg.ReclaimIdle, Start: start, Count: 100,
		}).Result()
		if err != nil {
			if !isNoGroup(err) && !errors.Is(err, redis.Nil) {
				c.log.Warn("reclaiming stale entries failed", zap.Error(err))
			}
			return
		}
		for _, m := range msgs {
			c.log.Info("reclaimed a stale stream entry", zap.String("entry", m.ID))
		}
		c.handle(ctx, msgs)
		if next == "0-0" || len(msgs) == 0 {
			break
		}
		start = next
	}
	c.forgetDeadConsumers(ctx)
}

// deadConsumerIdle is how long a consumer with nothing pending may stay
// silent before it is taken for a fetcher that is gone for good.
const deadConsumerIdle = 10 * time.Minute

// forgetDeadConsumers removes consumers of stopped fetchers (every restart
// brings a new name) so XINFO CONSUMERS shows the live ones. Only consumers
// with no pending entries are removed: deleting one would drop its entries.
func (c *Consumer) forgetDeadConsumers(ctx context.Context) {
	consumers, err := c.rdb.XInfoConsumers(ctx, price.StreamKey, price.Group).Result()
	if err != nil {
		return
	}
	for _, info := range consumers {
		if info.Name != c.cfg.Name && info.Pending == 0 && info.Idle > deadConsumerIdle {
			if err := c.rdb.XGroupDelConsumer(ctx, price.StreamKey, price.Group, info.Name).Err(); err == nil {
				c.log.Info("removed the consumer of a stopped fetcher", zap.String("consumer", info.Name))
			}
		}
	}
}

// handle batches the entries of one read, all in one round trip.
func (c *Consumer) handle(ctx context.Context, msgs []redis.XMessage) {
	entries := make([]batch.Entry, 0, len(msgs))
	for _, m := range msgs {
		req, err := parseRequest(m.Values)
		if err == nil {
			err = req.Validate()
		}
		if err != nil {
			// A malformed entry can never be answered; acknowledge it so it
			// does not come back forever.
			c.log.Warn("dropping malformed stream entry", zap.String("entry", m.ID), zap.Error(err))
			_ = c.rdb.XAck(ctx, price.StreamKey, price.Group, m.ID).Err()
			continue
		}
		entries = append(entries, batch.Entry{ID: m.ID, Request: req})
	}
	joined, errs := c.store.EnqueueAll(ctx, entries)
	for i, e := range entries {
		j, err := joined[i], errs[i]
		if err != nil {
			// Left pending: reclaim picks it up again after ReclaimIdle.
			c.log.Warn("batching a request failed", zap.String("entry", e.ID), zap.Error(err))
			continue
		}
		if c.due != nil && !j.Due.IsZero() {
			c.due(j.Due)
		}
		c.log.Debug("request batched", zap.String("entry", e.ID), zap.String("requestId", e.Request.ID),
			zap.String("batch", j.BatchID), zap.Int("size", j.Size), zap.String("outcome", j.Outcome))
	}
}

func parseRequest(v map[string]any) (price.Request, error) {
	s := func(k string) string { x, _ := v[k].(string); return x }
	timeout, err := strconv.ParseInt(s(price.FieldTimeoutMS), 10, 64)
	if err != nil {
		return price.Request{}, errors.New("timeout_ms is not a number")
	}
	return price.Request{
		ID: s(price.FieldRequestID), Coin: s(price.FieldCoin), Currency: s(price.FieldCurrency),
		ReplyTo: s(price.FieldReplyTo), TimeoutMS: timeout, Gateway: s(price.FieldGateway),
	}, nil
}
