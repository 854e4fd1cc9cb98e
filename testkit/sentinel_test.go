package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The group fails over on request and again when the new master dies, and
// a failover client follows both times.
func TestSentinelGroupFailsOver(t *testing.T) {
	g := StartSentinelGroup(t, 1, 3)
	ctx := context.Background()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: g.Sentinels})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second := g.Failover(t, 15*time.Second)
	if second == g.Servers[0] {
		t.Fatal("SENTINEL FAILOVER kept the old master")
	}
	t.Logf("manual failover took %s", time.Since(start))
	eventuallyOK(t, func() error { return c.Set(ctx, "k", "v2", 0).Err() })

	time.Sleep(SentinelRetryGap)
	second.Stop(t)
	start = time.Now()
	third := g.WaitNewMaster(t, second.Addr, 20*time.Second)
	t.Logf("failover after SIGKILL took %s", time.Since(start))
	if third != g.Servers[0] {
		t.Errorf("new master %s, want the old master %s back", third.Addr, g.Servers[0].Addr)
	}
	eventuallyOK(t, func() error { return c.Set(ctx, "k", "v3", 0).Err() })
}

func eventuallyOK(t *testing.T, f func() error) {
	t.Helper()
	var err error
	for range 100 {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("still failing after 10 s: %v", err)
}
