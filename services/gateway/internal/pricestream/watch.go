package pricestream

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/watchlist"
)

// The coins a gateway's clients stream are watched coins: the fetchers keep
// their prices fresh (WATCH_REFRESH_MS). The hub registers them for
// watchlist.TTL and renews the registration while a stream follows them,
// so the coins of a stopped or killed gateway drop out by themselves.

// watchLook is how soon a newly streamed coin is registered.
const watchLook = time.Second

// streamed returns the keys ("<coin>:<currency>", the watch set's members)
// some stream follows, sorted.
func (h *Hub) streamed() []string {
	h.mu.RLock()
	keys := make([]string, 0, len(h.subs))
	for k := range h.subs {
		keys = append(keys, k)
	}
	h.mu.RUnlock()
	slices.Sort(keys)
	return keys
}

// Watch registers the streamed coins as watched until ctx is done: at once
// when the set changes, else every third of watchlist.TTL. Redis work does not
// grow with the number of streams, only with the number of coins.
func (h *Hub) Watch(ctx context.Context, rdb redis.Scripter, log *zap.Logger) {
	t := time.NewTicker(watchLook)
	defer t.Stop()
	var last []string
	var at time.Time
	for {
		keys := h.streamed()
		if len(keys) > 0 && (!slices.Equal(keys, last) || time.Since(at) >= watchlist.TTL/3) {
			if _, err := watchlist.Register(ctx, rdb, watchlist.TTL, keys...); err != nil {
				if ctx.Err() == nil {
					log.Warn("registering the streamed coins as watched failed", zap.Error(err))
				}
			} else {
				last, at = keys, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
