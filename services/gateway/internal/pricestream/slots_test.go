package pricestream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"cryptopulse/testkit"
)

// Slots held by a gateway stay held while it renews them together, and
// lapse by themselves once it stops (a killed gateway).
func TestSlotsAreKeptTogetherAndLapseWithoutTheirGateway(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	s := NewSlots(rdb, 2, ttl)
	keep, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Keep(keep, zap.NewNop()) }()
	for _, id := range []string{"gw:a", "gw:b"} {
		if ok, _, err := s.Acquire(ctx, "user:ann", id); err != nil || !ok {
			t.Fatalf("slot %s: %v %v, want it taken", id, ok, err)
		}
	}
	time.Sleep(4 * ttl)
	ok, retry, err := s.Acquire(ctx, "user:ann", "gw:c")
	if err != nil || ok || retry <= 0 || retry > ttl {
		t.Fatalf("third slot after %v of renewals: ok %v retry %v err %v, want refused with a retry within the TTL", 4*ttl, ok, retry, err)
	}
	if err := s.Release(ctx, "user:ann", "gw:a"); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.Acquire(ctx, "user:ann", "gw:c"); err != nil || !ok {
		t.Fatalf("slot after a release: %v %v, want it taken", ok, err)
	}

	stop()
	<-done
	time.Sleep(2 * ttl)
	for _, id := range []string{"gw:d", "gw:e"} {
		if ok, _, err := s.Acquire(ctx, "user:ann", id); err != nil || !ok {
			t.Fatalf("slot %s once the renewals stopped: %v %v, want the lapsed ones gone", id, ok, err)
		}
	}
}

// One renewal covers every held slot, however many subjects and streams,
// in calls of at most renewBatch streams; a slot that lapsed is not taken
// again.
func TestSlotsRenewEveryHeldSlotInBatches(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	s := NewSlots(rdb, 10_000, time.Minute)
	counts := map[string]int{"user:a": renewBatch + 5, "user:b": 3, "user:c": renewBatch}
	for subject, n := range counts {
		for i := range n {
			if ok, _, err := s.Acquire(ctx, subject, fmt.Sprintf("gw:%d", i)); err != nil || !ok {
				t.Fatalf("%s %d: %v %v", subject, i, ok, err)
			}
		}
	}
	if err := rdb.ZRem(ctx, SlotsKey("user:b"), "gw:0").Err(); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	// Every slot's lapse time moves to a minute from the renewal.
	if err := rdb.Eval(ctx, `for _, k in ipairs(KEYS) do local m = redis.call('ZRANGE', k, 0, -1) for _, id in ipairs(m) do redis.call('ZADD', k, 0, id) end end return 1`,
		[]string{SlotsKey("user:a"), SlotsKey("user:b"), SlotsKey("user:c")}).Err(); err != nil {
		t.Fatal(err)
	}
	if calls := s.renewCalls(); len(calls) != 3 {
		t.Errorf("%d renew calls for %d streams, want 3 of at most %d", len(calls), 2*renewBatch+8, renewBatch)
	}
	if err := s.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	for subject, n := range counts {
		zs, err := rdb.ZRangeWithScores(ctx, SlotsKey(subject), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if subject == "user:b" {
			n-- // the lapsed one stays gone
		}
		if len(zs) != n {
			t.Errorf("%s holds %d slots, want %d", subject, len(zs), n)
		}
		for _, z := range zs {
			if lapse := time.UnixMilli(int64(z.Score)); lapse.Before(before.Add(time.Minute - 5*time.Second)) {
				t.Fatalf("%s slot %v lapses at %v: not renewed", subject, z.Member, lapse)
			}
		}
	}
}
