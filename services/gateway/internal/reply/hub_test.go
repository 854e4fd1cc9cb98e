package reply

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/services/gateway/internal/pricereq"
	"cryptopulse/testkit"
)

func startHub(t *testing.T) (*Hub, *testkit.Redis) {
	t.Helper()
	r := testkit.StartRedis(t)
	pub, err := pricereq.New("gw-1", 8*time.Second, 1000)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(r.Client(t), pub, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-h.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not confirmed")
	}
	return h, r
}

func TestPublishedRepliesReachTheirWaitersOnly(t *testing.T) {
	h, r := startHub(t)
	rdb := r.Client(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 50 {
		id := fmt.Sprint("req-", i)
		ch, cancel := h.Register(id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			select {
			case rep := <-ch:
				if rep.CoinID != id {
					t.Errorf("%s got the reply for %s", id, rep.CoinID)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s: no reply", id)
			}
		}()
		// Another gateway's reply must not arrive here.
		rdb.Publish(ctx, price.ReplyChannel("gw-2", id), `{"status":500,"coinId":"wrong"}`)
		rdb.Publish(ctx, price.ReplyChannel("gw-1", id), fmt.Sprintf(`{"status":200,"coinId":%q}`, id))
	}
	wg.Wait()
	if n := h.Waiting(); n != 0 {
		t.Errorf("%d waiters left registered", n)
	}
}

// A reply published while nobody listened is still delivered from its
// result key.
func TestMissedPublishIsFoundUnderTheResultKey(t *testing.T) {
	h, r := startHub(t)
	rdb := r.Client(t)
	if err := rdb.Set(context.Background(), price.ResultKey("late"), `{"status":200,"coinId":"bitcoin"}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	ch, cancel := h.Register("late")
	defer cancel()
	select {
	case rep := <-ch:
		if rep.CoinID != "bitcoin" {
			t.Errorf("reply %+v", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the result key was never read")
	}
}

// After Redis restarts, the hub subscribes again by itself.
func TestResubscribesAfterRedisRestart(t *testing.T) {
	h, r := startHub(t)
	r.Stop(t)
	time.Sleep(300 * time.Millisecond)
	r.Start(t)
	rdb := r.Client(t)
	ch, cancel := h.Register("after")
	defer cancel()
	deadline := time.After(10 * time.Second)
	for {
		rdb.Publish(context.Background(), price.ReplyChannel("gw-1", "after"), `{"status":200,"coinId":"eth"}`)
		select {
		case <-ch:
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no reply after Redis restarted")
		}
	}
}

// A request waiting when Redis restarts empty is sent again: its entry and
// its batch are gone, and without that no reply would ever come.
func TestRequestLostWithAnEmptyRedisRestartIsSentAgain(t *testing.T) {
	h, r := startHub(t)
	rdb := r.Client(t)
	ctx := context.Background()
	req := price.Request{ID: "lost", Coin: "bitcoin", Currency: "usd", ReplyTo: price.ReplyChannel("gw-1", "lost"), TimeoutMS: 8000, Gateway: "gw-1"}
	_, cancel := h.Register(req.ID)
	defer cancel()
	entry, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: req.Values()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	h.Sent(entry, req, time.Now().Add(8*time.Second))
	// A waiter that never went out (no entry recorded) is not sent.
	kept := price.Request{ID: "kept", Coin: "tron", Currency: "usd", ReplyTo: price.ReplyChannel("gw-1", "kept"), TimeoutMS: 8000, Gateway: "gw-1"}
	_, cancelKept := h.Register(kept.ID)
	defer cancelKept()

	r.Stop(t) // the test kit's Redis keeps no data: it comes back empty
	r.Start(t)
	var msgs []redis.XMessage
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		msgs, _ = rdb.XRange(ctx, price.StreamKey, "-", "+").Result()
		if len(msgs) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(msgs) != 1 {
		t.Fatalf("stream after the restart: %v, want the lost request sent again once", msgs)
	}
	v := msgs[0].Values
	if v[price.FieldRequestID] != "lost" || v[price.FieldReplyTo] != req.ReplyTo || v[price.FieldCoin] != "bitcoin" {
		t.Errorf("re-sent entry %v", v)
	}
	if left, _ := strconv.Atoi(fmt.Sprint(v[price.FieldTimeoutMS])); left <= 0 || left > 8000 {
		t.Errorf("re-sent timeout_ms %v, want the client's remaining time", v[price.FieldTimeoutMS])
	}
}
