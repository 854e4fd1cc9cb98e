package batch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

// BenchmarkBatchLifecycle measures the Redis side of one batch of three
// requests: three enqueues (each acknowledging its stream entry), one claim
// and one completion that answers all three. Reported per batch.
func BenchmarkBatchLifecycle(b *testing.B) {
	rdb := testkit.StartRedis(b).Client(b)
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, price.StreamKey, price.Group, "0").Err(); err != nil {
		b.Fatal(err)
	}
	set := settings
	set.Window = time.Hour
	set.KeyTTL = 2 * time.Hour
	s, err := NewStore(rdb, set)
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"status":200,"coinId":"bitcoin","vsCurrency":"usd","price":67187.33,"fetchedAt":"2026-02-28T03:55:00.000Z"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		coin := fmt.Sprint("coin-", i%1000)
		for j := range 3 {
			id := fmt.Sprint("r", i, "-", j)
			r := price.Request{ID: id, Coin: coin, Currency: "usd", ReplyTo: price.ReplyChannel("gw", id), TimeoutMS: 8000, Gateway: "gw"}
			entry, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, MaxLen: 10000, Approx: true, Values: r.Values()}).Result()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: price.Group, Consumer: "c", Streams: []string{price.StreamKey, ">"}, Count: 1}).Result(); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Enqueue(ctx, entry, r); err != nil {
				b.Fatal(err)
			}
		}
		claimed, err := claimBatches(s, ctx, "f", 10)
		if err != nil || len(claimed) != 1 {
			b.Fatalf("claim: %v %v", claimed, err)
		}
		rec := &Record{Coin: coin, Currency: "usd", Price: "1", BatchID: claimed[0].ID, FetchedAt: time.Now()}
		if n, err := s.Complete(ctx, "f", claimed[0].ID, payload, rec); err != nil || n != 3 {
			b.Fatalf("complete: %d %v", n, err)
		}
	}
}
