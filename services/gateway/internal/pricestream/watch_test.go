package pricestream

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/watchlist"
	"cryptopulse/testkit"
)

// A gateway's streamed coins show up in the watch set, scored by an expiry
// on the Redis clock about watchlist.TTL ahead, as soon as a stream follows them.
func TestStreamedCoinsAreRegisteredAsWatched(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	h := NewHub(rdb, Config{}, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Watch(ctx, rdb, zap.NewNop()) }()
	t.Cleanup(func() { cancel(); <-done })

	if n := rdb.ZCard(ctx, price.WatchKey).Val(); n != 0 {
		t.Fatalf("%d coins watched with no stream open", n)
	}
	s, _ := h.Subscribe([]string{Key("bitcoin", "usd"), Key("ethereum", "eur")})
	defer h.Unsubscribe(s)
	deadline := time.Now().Add(10 * time.Second)
	for rdb.ZCard(ctx, price.WatchKey).Val() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("streamed coins not registered: %v", rdb.ZRangeWithScores(ctx, price.WatchKey, 0, -1).Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"bitcoin:usd", "ethereum:eur"} {
		exp := time.UnixMilli(int64(rdb.ZScore(ctx, price.WatchKey, m).Val()))
		if left := exp.Sub(now); left <= watchlist.TTL-10*time.Second || left > watchlist.TTL {
			t.Errorf("%s registered until %s, %s after Redis now; want about %s", m, exp, left, watchlist.TTL)
		}
	}
}
