package reply

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/tools/testkit"
)

func startHub(t *testing.T) (*Hub, *testkit.Redis) {
	t.Helper()
	r := testkit.StartRedis(t)
	h := NewHub(r.Client(t), "gw-1", zap.NewNop())
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
