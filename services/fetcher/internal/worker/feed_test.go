package worker

import (
	"context"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/tools/cgsim"
)

// feed reads every update on the feed, oldest first.
func (r *rig) feed(t *testing.T) []pricefeed.Update {
	t.Helper()
	ups, err := pricefeed.Since(context.Background(), r.rdb, pricefeed.Start, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ups
}

// Every price a batch obtains is one feed entry carrying what its clients
// were told; a snapshot answer adds none (its price is on the feed
// already), a stale one is appended marked as such, a failure adds none.
func TestEveryObtainedPriceIsOneFeedEntry(t *testing.T) {
	r := startRigWith(t, rigOptions{fetchers: 2, window: time.Hour, budget: batch.Budget{PerMinute: 1000, Burst: 100},
		priceMaxAge: 300 * time.Millisecond, staleMaxAge: time.Hour, attempts: 1})
	fetched := r.ask(t, "bitcoin", "bitcoin", "bitcoin")[0]
	snap := r.ask(t, "bitcoin", "bitcoin", "bitcoin")[0]
	if fetched.Status != 200 || snap.Batch.Source != price.SourceSnapshot {
		t.Fatalf("fetched %+v, then %+v; want a fetch then a snapshot", fetched, snap)
	}
	time.Sleep(400 * time.Millisecond) // the snapshot ages out
	r.sim.SetFault(cgsim.Fault{Kind: cgsim.Status, Code: 500})
	stale := r.ask(t, "bitcoin", "bitcoin", "bitcoin")[0]
	failed := r.ask(t, "unknown-coin", "unknown-coin", "unknown-coin")[0]
	if stale.Batch.Source != price.SourceStale || failed.Status == 200 {
		t.Fatalf("stale %+v, failed %+v", stale, failed)
	}

	ups := r.feed(t)
	if len(ups) != 2 {
		t.Fatalf("feed holds %d updates, want 2 (the fetch and the stale answer): %+v", len(ups), ups)
	}
	for i, want := range []price.Reply{fetched, stale} {
		got := ups[i].Answer()
		if got.CoinID != "bitcoin" || got.VsCurrency != "usd" || got.Price != want.Price || got.FetchedAt != want.FetchedAt ||
			got.Batch != want.Batch || got.Stale != want.Stale {
			t.Errorf("update %d answers %+v, want what the batch's clients got: %+v", i, got, want)
		}
	}
}
