package pricefeed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Start is the id before every entry.
const Start = "0-0"

// Tail returns the newest n updates, newest first, and the id of the newest
// entry (Start for an empty feed): where a follower starts reading.
func Tail(ctx context.Context, rdb redis.Cmdable, n int64) ([]Update, string, error) {
	msgs, err := rdb.XRevRangeN(ctx, Key, "+", "-", n).Result()
	if err != nil {
		return nil, "", fmt.Errorf("read the feed's tail: %w", err)
	}
	if len(msgs) == 0 {
		return nil, Start, nil
	}
	return parseAll(msgs), msgs[0].ID, nil
}

// Since returns up to n updates after id, oldest first.
func Since(ctx context.Context, rdb redis.Cmdable, id string, n int64) ([]Update, error) {
	msgs, err := rdb.XRangeN(ctx, Key, "("+id, "+", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read the feed after %s: %w", id, err)
	}
	return parseAll(msgs), nil
}

// Lost reports whether updates after id may have left the feed, so that a
// replay from id would have a gap: the oldest entry kept is newer than id
// (trimming removes the oldest), or an entry newer than id was deleted
// (Redis 7 keeps the largest deleted id). A client whose last update was
// trimmed a moment ago is told so even if nothing of its coins went.
func Lost(ctx context.Context, rdb redis.Cmdable, id ID) (bool, error) {
	info, err := rdb.XInfoStream(ctx, Key).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "ERR no such key") {
			return false, nil
		}
		return false, fmt.Errorf("xinfo %s: %w", Key, err)
	}
	for _, s := range []string{info.FirstEntry.ID, info.MaxDeletedEntryID} {
		if other, err := ParseID(s); err == nil && id.Less(other) {
			return true, nil
		}
	}
	return false, nil
}

func parseAll(msgs []redis.XMessage) []Update {
	out := make([]Update, 0, len(msgs))
	for _, m := range msgs {
		if u, err := Parse(m); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// Follower reads the feed with one blocking XREAD at a time, however many
// parties it hands the updates to: the Redis work per update does not grow
// with them.
type Follower struct {
	RDB *redis.Client
	Log *zap.Logger
	// Block is how long one XREAD waits (default 1 s): the longest a stop
	// waits for the read in flight.
	Block time.Duration
	// Count is the most updates one read returns (default 1000).
	Count int64
}

// Run reads the feed after id until ctx is done and hands each read's
// updates, oldest first, to handle. It rides out Redis outages, and when
// Redis comes back empty (a restart) it starts again from the beginning.
func (f *Follower) Run(ctx context.Context, after string, handle func([]Update)) {
	block, count := f.Block, f.Count
	if block <= 0 {
		block = time.Second
	}
	if count <= 0 {
		count = 1000
	}
	for ctx.Err() == nil {
		res, err := f.RDB.XRead(ctx, &redis.XReadArgs{Streams: []string{Key, after}, Count: count, Block: block}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			after = f.restartIfReset(ctx, after)
			continue
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			f.Log.Warn("reading the price feed failed; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		for _, s := range res {
			if len(s.Messages) == 0 {
				continue
			}
			after = s.Messages[len(s.Messages)-1].ID
			if ups := parseAll(s.Messages); len(ups) > 0 {
				handle(ups)
			}
		}
	}
}

// restartIfReset returns Start when the feed's newest entry is older than
// after (Redis lost the feed and it grows again from new ids), else after.
// It runs only when a read found nothing: no cost per update.
func (f *Follower) restartIfReset(ctx context.Context, after string) string {
	msgs, err := f.RDB.XRevRangeN(ctx, Key, "+", "-", 1).Result()
	if err != nil || after == Start {
		return after
	}
	pos, err := ParseID(after)
	if err != nil {
		return after
	}
	if len(msgs) == 0 {
		return Start
	}
	if last, err := ParseID(msgs[0].ID); err == nil && last.Less(pos) {
		f.Log.Warn("the price feed is behind where it was read up to (Redis restarted); reading it from the start")
		return Start
	}
	return after
}
