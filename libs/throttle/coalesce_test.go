package throttle_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/throttle"
	"cryptopulse/testkit"
)

// roundTrips counts what a client sends: single commands and pipelines.
type roundTrips struct{ single, pipelines, piped atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.single.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.pipelines.Add(1)
		r.piped.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestConcurrentChecksShareRoundTripsAndStayExact: 400 checks at once on a
// limit of 150 go to Redis in far fewer round trips than checks, and exactly
// 150 are allowed, with every remaining count handed out once.
func TestConcurrentChecksShareRoundTripsAndStayExact(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	trips := &roundTrips{}
	rdb.AddHook(trips)
	l := throttle.New(rdb)
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: 150, Window: time.Minute}
	ctx := ctxFor(t)
	// The script is loaded first, so every check below is one EVALSHA.
	if _, err := l.Allow(ctx, throttle.Rule{Policy: "warm", Subject: t.Name(), Limit: 1, Window: time.Second}); err != nil {
		t.Fatal(err)
	}
	trips.single.Store(0)

	const checks = 400
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed, remaining := 0, map[int]int{}
	start := make(chan struct{})
	for range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d, err := l.Allow(ctx, rule)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if d.Allowed {
				allowed++
				remaining[d.Remaining]++
			}
		}()
	}
	close(start)
	wg.Wait()
	if allowed != 150 {
		t.Errorf("%d of %d checks allowed, want exactly the limit 150", allowed, checks)
	}
	for n := range 150 {
		if remaining[n] != 1 {
			t.Errorf("remaining %d handed out %d times, want once", n, remaining[n])
		}
	}
	sent := trips.single.Load() + trips.pipelines.Load()
	if trips.pipelines.Load() == 0 || sent > checks/2 {
		t.Errorf("%d round trips (%d pipelines) for %d concurrent checks, want them shared", sent, trips.pipelines.Load(), checks)
	}
	t.Logf("%d checks in %d round trips (%d pipelines)", checks, sent, trips.pipelines.Load())
}

// TestPipelinedChecksReloadAForgottenScript: a Redis that lost its scripts
// (restarted empty) still answers every pipelined check.
func TestPipelinedChecksReloadAForgottenScript(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	for round := range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rule := throttle.Rule{Policy: "test", Subject: t.Name() + string(rune('a'+i%26)), Limit: 1000, Window: time.Minute}
				if d, err := l.Allow(ctx, rule); err != nil || !d.Allowed {
					failed.Add(1)
					t.Logf("round %d: %+v %v", round, d, err)
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("round %d: %d of 50 checks failed after SCRIPT FLUSH", round, n)
		}
	}
}

// TestAWaiterThatGivesUpLeavesNoOneStranded: while a check is stalled on
// the wire, a queued caller whose context ends gets its context's error,
// and the caller queued behind it is still answered.
func TestAWaiterThatGivesUpLeavesNoOneStranded(t *testing.T) {
	r := testkit.StartRedis(t)
	// Read timeouts longer than the pause below.
	rdb := r.Client(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	rule := func(s string) throttle.Rule {
		return throttle.Rule{Policy: "test", Subject: t.Name() + s, Limit: 10, Window: time.Minute}
	}
	if _, err := l.Allow(ctx, rule("warm")); err != nil {
		t.Fatal(err)
	}
	pauser := r.Client(t)
	if err := pauser.ClientPause(ctx, 400*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { _, err := l.Allow(ctx, rule("first")); first <- err }()
	time.Sleep(50 * time.Millisecond) // the first check is on the wire, stalled

	quitting, quit := context.WithTimeout(ctx, 100*time.Millisecond)
	defer quit()
	gaveUp := make(chan error, 1)
	go func() { _, err := l.Allow(quitting, rule("quitter")); gaveUp <- err }()
	time.Sleep(20 * time.Millisecond)
	last := make(chan error, 1)
	go func() { _, err := l.Allow(ctx, rule("last")); last <- err }()

	if err := <-gaveUp; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the caller that gave up got %v, want its deadline", err)
	}
	for name, ch := range map[string]chan error{"first": first, "last": last} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s check: %v", name, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s check never answered", name)
		}
	}
}
