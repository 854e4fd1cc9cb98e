package pricefeed

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

func sample(n int) Update {
	return Update{Coin: "bitcoin", Currency: "usd", Price: "67210.450000000000000001", FetchedAt: time.UnixMilli(1_772_250_900_000 + int64(n)).UTC(),
		BatchID: "bitcoin:usd:1-1", BatchSize: 3, FlushReason: price.FlushThreshold, Fetcher: "fetcher-1", Attempt: 2, Source: price.SourceStale}
}

// What a fetcher appends is what a reader gets back, digits and all, and
// its answer is the price answer's JSON.
func TestAppendedUpdatesReadBackWithEveryField(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	if err := Append(ctx, rdb, 1000, sample(0), sample(1)); err != nil {
		t.Fatal(err)
	}
	got, err := Since(ctx, rdb, Start, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("Since: %v %v", got, err)
	}
	for i, u := range got {
		want := sample(i)
		want.ID = u.ID
		if u != want {
			t.Errorf("read %+v, appended %+v", u, want)
		}
	}
	a := got[0].Answer()
	if a.Price.String() != "67210.450000000000000001" || !a.Stale || a.FetchedAt != "2026-02-28T03:55:00.000Z" || a.Batch.Attempt != 2 {
		t.Errorf("answer %+v", a)
	}
	tail, last, err := Tail(ctx, rdb, 1)
	if err != nil || len(tail) != 1 || last != got[1].ID || tail[0].ID != last {
		t.Errorf("Tail: %+v %s %v, want the second update", tail, last, err)
	}
}

func TestFromReplyTakesObtainedPricesOnly(t *testing.T) {
	ok := price.Reply{Status: 200, CoinID: "bitcoin", VsCurrency: "usd", Price: "1.5", FetchedAt: "2026-02-28T03:55:00.000Z",
		Batch: price.Batch{ID: "b", Size: 1, FlushReason: price.FlushWindow, Source: price.SourceUpstream}}
	if _, yes := FromReply(ok); !yes {
		t.Error("a fetched price is not an update")
	}
	for name, r := range map[string]price.Reply{
		"failure":  {Status: 502, CoinID: "bitcoin", VsCurrency: "usd", Batch: ok.Batch},
		"snapshot": func() price.Reply { r := ok; r.Batch.Source = price.SourceSnapshot; return r }(),
	} {
		if u, yes := FromReply(r); yes {
			t.Errorf("%s became an update: %+v", name, u)
		}
	}
}

func TestParseIDOrdersAsRedisDoes(t *testing.T) {
	a, _ := ParseID("1700000000000-5")
	b, _ := ParseID("1700000000000-12")
	c, _ := ParseID("1700000000001")
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.Less(a) {
		t.Errorf("order of %v %v %v", a, b, c)
	}
	for _, bad := range []string{"", "x", "1-", "-1", "1-2-3", "+1-0", "1-+2"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

// A follower gets every update, once and in order, and starts over when
// Redis comes back empty.
func TestFollowerReadsEveryUpdateAndSurvivesAnEmptyRestart(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []Update
	f := Follower{RDB: rdb, Log: zap.NewNop(), Block: 100 * time.Millisecond}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.Run(ctx, Start, func(us []Update) { mu.Lock(); got = append(got, us...); mu.Unlock() })
	}()
	defer func() { cancel(); wg.Wait() }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("follower has %d updates, want %d", count(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 5 {
		if err := Append(ctx, rdb, 1000, sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(5)
	r.Stop(t)
	r.Start(t)
	// Ids after a restart start again from the clock; make them smaller
	// than those read, as after a restart with a clock behind.
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: Key, ID: "1-1", Values: sample(9).Values()}).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(6)
	mu.Lock()
	defer mu.Unlock()
	if got[5].ID != "1-1" || got[5].FetchedAt != sample(9).FetchedAt {
		t.Errorf("after the restart the follower read %+v", got[5])
	}
	for i := 1; i < 5; i++ {
		a, _ := ParseID(got[i-1].ID)
		b, _ := ParseID(got[i].ID)
		if !a.Less(b) {
			t.Errorf("updates out of order: %s then %s", got[i-1].ID, got[i].ID)
		}
	}
}

func TestLostSaysWhenUpdatesWereTrimmed(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: Key, Values: sample(i).Values()}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	first, _ := ParseID(ids[0])
	if lost, err := Lost(ctx, rdb, first); err != nil || lost {
		t.Errorf("nothing trimmed: Lost = %v, %v", lost, err)
	}
	if err := rdb.XTrimMaxLen(ctx, Key, 2).Err(); err != nil {
		t.Fatal(err)
	}
	// After the newest trimmed entry Redis cannot tell whether anything
	// was lost: Lost errs on the side of saying so.
	for i, want := range []bool{true, true, true, false, false} {
		id, _ := ParseID(ids[i])
		if lost, err := Lost(ctx, rdb, id); err != nil || lost != want {
			t.Errorf("after %s with the 3 oldest trimmed: Lost = %v, %v; want %v", ids[i], lost, err, want)
		}
	}
}
