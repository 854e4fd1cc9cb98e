package pricestream

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
)

func update(coin string, ms int, fetched time.Time) pricefeed.Update {
	return pricefeed.Update{ID: fmt.Sprintf("%d-0", ms), Coin: coin, Currency: "usd", Price: "1.5", FetchedAt: fetched,
		BatchID: "b", BatchSize: 1, FlushReason: price.FlushWindow, Fetcher: "f", Attempt: 1, Source: price.SourceUpstream}
}

// The hub is the seam between the feed reader and the streams: tested here
// without Redis, by handing it updates as the reader would.
func TestHubDropsOnlyTheSubscriberThatFellBehind(t *testing.T) {
	h := NewHub(nil, Config{Buffer: 4}, zap.NewNop())
	slow, _ := h.Subscribe([]string{Key("bitcoin", "usd")})
	fast, _ := h.Subscribe([]string{Key("bitcoin", "usd"), Key("ethereum", "usd")})
	now := time.Now()
	for i := range 10 {
		h.ingest([]pricefeed.Update{update("bitcoin", 100+i, now)})
		if got := <-fast.Events(); got.ID != (pricefeed.ID{MS: uint64(100 + i)}) {
			t.Fatalf("fast subscriber got %v, want update %d", got.ID, 100+i)
		}
	}
	select {
	case <-slow.Dropped():
	default:
		t.Fatal("a subscriber 10 updates behind with a buffer of 4 was not dropped")
	}
	select {
	case <-fast.Dropped():
		t.Fatal("the subscriber that kept up was dropped")
	default:
	}
	if open, dropped := h.Stats(); open != 1 || dropped != 1 {
		t.Errorf("open %d dropped %d, want 1 and 1", open, dropped)
	}
	h.Unsubscribe(slow) // after a drop: no double count
	h.Unsubscribe(fast)
	if open, _ := h.Stats(); open != 0 {
		t.Errorf("open %d after both left", open)
	}
}

// A new subscriber gets the newest event of each of its coins, oldest
// first; a stale price given later does not displace a fresher one.
func TestHubKeepsTheNewestPricePerCoin(t *testing.T) {
	h := NewHub(nil, Config{}, zap.NewNop())
	now := time.Now()
	stale := update("bitcoin", 400, now.Add(-time.Hour))
	stale.Source = price.SourceStale
	h.ingest([]pricefeed.Update{update("ethereum", 100, now), update("bitcoin", 200, now), update("bitcoin", 300, now), stale})
	_, newest := h.Subscribe([]string{Key("bitcoin", "usd"), Key("ethereum", "usd"), Key("solana", "usd")})
	if len(newest) != 2 || newest[0].ID.MS != 100 || newest[1].ID.MS != 300 {
		t.Fatalf("newest %+v, want ethereum 100 then bitcoin 300", newest)
	}
	if ev := h.Latest(Key("bitcoin", "usd")); ev == nil || ev.Stale || ev.ID.MS != 300 {
		t.Errorf("latest bitcoin %+v, want the fresh 300", ev)
	}
}
