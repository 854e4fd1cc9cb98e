package batch

import (
	"context"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/libs/watchlist"
)

func members(cl RefreshClaim) []string {
	var out []string
	for _, c := range cl.Coins {
		out = append(out, c.Member())
	}
	return out
}

// One fetcher at a time holds a watched coin: a second claim finds nothing
// while the first holds it, takes it once the lease runs out (its fetcher
// died), and a recorded refresh makes the coin not due for its period.
func TestRefreshClaimIsExclusiveUntilItsLeaseRunsOut(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	if _, err := watchlist.Register(ctx, rdb, time.Hour, "solana:usd", "bitcoin:usd"); err != nil {
		t.Fatal(err)
	}
	a, err := s.RideAlong(ctx, "a", time.Second, 300*time.Millisecond, 10, []string{"bitcoin:usd"})
	if err != nil || len(a.Coins) != 1 || a.Coins[0] != (watchlist.Coin{ID: "solana", Currency: "usd"}) {
		t.Fatalf("first claim (bitcoin is in the call already): %v %v", members(a), err)
	}
	if b, err := s.RideAlong(ctx, "b", time.Second, time.Minute, 10, []string{"bitcoin:usd"}); err != nil || len(b.Coins) != 0 {
		t.Errorf("second claim while the first holds: %v %v", members(b), err)
	}
	time.Sleep(400 * time.Millisecond)
	b, err := s.RideAlong(ctx, "b", time.Second, time.Minute, 10, []string{"bitcoin:usd"})
	if err != nil || len(b.Coins) != 1 {
		t.Fatalf("claim after a's lease ran out: %v %v", members(b), err)
	}
	at := b.RedisNow()
	if err := s.Refreshed(ctx, "b", []Record{{Coin: "solana", Currency: "usd", Price: "150.5", BatchID: "solana:usd:refresh-1", FetchedAt: at}}, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, price.RefreshClaimKey("solana", "usd")).Val(); n != 0 {
		t.Error("the claim outlived the recorded refresh")
	}
	if snap, ok, err := s.LastPrice(ctx, "solana", "usd"); err != nil || !ok || snap.Price != "150.5" || !snap.FetchedAt.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("newest price %+v %v %v", snap, ok, err)
	}
	if n := rdb.XLen(ctx, price.RecordsStream).Val(); n != 1 {
		t.Errorf("%d records queued for Postgres, want 1", n)
	}
	// Fresh now: not due until it is a second old.
	if c, err := s.RideAlong(ctx, "c", time.Second, time.Minute, 10, []string{"bitcoin:usd"}); err != nil || len(c.Coins) != 0 {
		t.Errorf("claim right after the refresh: %v %v", members(c), err)
	}
}

// A refresh takes a call of its own only from spare budget: never while a
// request batch exists (it would need the slot; the refresh rides along
// on its call instead), and only when every burst slot is free.
func TestOwnRefreshCallTakesOnlySpareBudget(t *testing.T) {
	set := settings
	set.Budget = Budget{PerMinute: 2, Burst: 2}
	s, rdb := newStore(t, set)
	ctx := context.Background()
	if _, err := watchlist.Register(ctx, rdb, time.Hour, "solana:usd"); err != nil {
		t.Fatal(err)
	}
	entry, r := add(t, rdb, "bitcoin", "r1")
	if _, err := s.Enqueue(ctx, entry, r); err != nil {
		t.Fatal(err)
	}
	if cl, err := s.OwnCall(ctx, "a", time.Second, time.Second, time.Minute, 10); err != nil || len(cl.Coins) != 0 {
		t.Fatalf("own call while a batch waits to be due: %v %v", members(cl), err)
	}
	time.Sleep(settings.Window)
	claim, err := s.Claim(ctx, "a", 10)
	if err != nil || len(claim.Batches) != 1 {
		t.Fatalf("claim %+v %v", claim, err)
	}
	if cl, err := s.OwnCall(ctx, "a", time.Second, time.Second, time.Minute, 10); err != nil || len(cl.Coins) != 0 {
		t.Fatalf("own call while a batch is being fetched: %v %v", members(cl), err)
	}
	if _, err := s.Complete(ctx, "a", claim.Batches[0].ID, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	// No batch left, but one of the two slots is spent: not spare.
	if cl, err := s.OwnCall(ctx, "a", time.Second, time.Second, time.Minute, 10); err != nil || len(cl.Coins) != 0 {
		t.Fatalf("own call with the budget not full: %v %v", members(cl), err)
	}
	if n, _ := s.Remaining(ctx); n != 1 {
		t.Errorf("remaining %d, want 1 (the refresh took none)", n)
	}
	// A full budget is spare: the refresh takes a slot.
	if err := rdb.Del(ctx, price.BudgetKey).Err(); err != nil {
		t.Fatal(err)
	}
	if cl, err := s.OwnCall(ctx, "a", time.Second, time.Second, time.Minute, 10); err != nil || len(cl.Coins) != 1 {
		t.Fatalf("own call from a full budget: %v %v", members(cl), err)
	}
	if n, _ := s.Remaining(ctx); n != 1 {
		t.Errorf("remaining %d after the refresh's call, want 1", n)
	}
}

// Once one coin is due, its own call also takes the coins old enough to
// ride along: coins watched at different times then share calls.
func TestOwnRefreshCallTakesAlongCoinsDueSoon(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, price.LastPriceKey("bitcoin", "usd"), "price", "1", "fetched_ms", now.Add(-700*time.Millisecond).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := watchlist.Register(ctx, rdb, time.Hour, "bitcoin:usd"); err != nil {
		t.Fatal(err)
	}
	if cl, err := s.OwnCall(ctx, "a", time.Second, 500*time.Millisecond, time.Minute, 10); err != nil || len(cl.Coins) != 0 {
		t.Fatalf("nothing due yet, yet the call claimed %v %v", members(cl), err)
	}
	if _, err := watchlist.Register(ctx, rdb, time.Hour, "solana:usd"); err != nil {
		t.Fatal(err)
	}
	cl, err := s.OwnCall(ctx, "a", time.Second, 500*time.Millisecond, time.Minute, 10)
	if got := members(cl); err != nil || !sameSet(got, "bitcoin:usd", "solana:usd") {
		t.Errorf("solana due, bitcoin due soon: claimed %v %v, want both", got, err)
	}
}

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	for _, w := range want {
		if !seen[w] {
			return false
		}
	}
	return true
}
