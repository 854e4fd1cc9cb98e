package benchload

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"cryptopulse/testkit"
)

// TestFloorServerSendsEveryStreamItsCoinInOneInstant: two clients on two
// coins each read one event of their own coin per period, framed as the
// gateway frames a price, and the events of one period carry one instant.
func TestFloorServerSendsEveryStreamItsCoinInOneInstant(t *testing.T) {
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const period = 200 * time.Millisecond
	go func() { _ = FloorServer(ctx, addr, period) }()
	if err := waitListening(ctx, addr); err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	clients := []*sseClient{newSSEClient("bitcoin", "x"), newSSEClient("tron", "x")}
	done := make(chan struct{}, len(clients))
	for _, c := range clients {
		go func() {
			c.run(cctx, sseTarget{addr: addr, dials: make(chan struct{}, 1)})
			done <- struct{}{}
		}()
		<-c.connected
	}
	time.Sleep(5*period + period/2)
	stop()
	for range clients {
		<-done
	}

	a, b := clients[0].events, clients[1].events
	if len(a) < 4 || len(a) > 6 || len(b) < 4 || len(b) > 6 {
		t.Fatalf("events %d and %d in 5.5 periods, want 5 or so each", len(a), len(b))
	}
	bAt := map[uint64]bool{}
	for _, e := range b {
		bAt[e.id.MS] = true
		if e.id.Seq != uint64(slices.Index(liveCoins, "tron")) {
			t.Errorf("tron's client got event %s, another coin's", e.id)
		}
	}
	shared := 0
	for i, e := range a {
		if e.id.Seq != 0 {
			t.Errorf("bitcoin's client got event %s, another coin's", e.id)
		}
		if bAt[e.id.MS] {
			shared++
		}
		if e.latency < 0 || e.latency > period {
			t.Errorf("event %s came %v after it was written", e.id, e.latency)
		}
		if i > 0 {
			if gap := time.Duration(e.id.MS-a[i-1].id.MS) * time.Millisecond; gap < period-20*time.Millisecond || gap > period+20*time.Millisecond {
				t.Errorf("events %s and %s are %v apart, want one period", a[i-1].id, e.id, gap)
			}
		}
	}
	if shared < min(len(a), len(b))-1 {
		t.Errorf("only %d of the periods' events carry one instant for both streams", shared)
	}
}
