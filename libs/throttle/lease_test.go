package throttle_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/throttle"
	"cryptopulse/testkit"
)

// scriptCalls counts the scripts a client sends, each one round trip.
type scriptCalls struct{ n atomic.Int64 }

func (s *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// leasingLimiter is a Limiter with its own client, as each gateway has,
// counting its round trips.
func leasingLimiter(t *testing.T, r *testkit.Redis, term time.Duration) (*throttle.Limiter, *scriptCalls) {
	t.Helper()
	rdb := r.FastClient(t)
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	return throttle.New(rdb, throttle.LeaseTerm(term)), calls
}

// TestLeasedChecksShareRoundTripsAndKeepTheLimitAcrossInstances: three
// instances, 1,000 requests each at once, on a limit of 1,000 a minute.
// At most the limit gets through, and no fewer than the limit less what
// the other instances' leases could hold (1 % each); far fewer round trips
// than requests go to Redis; and once the terms end, the log holds exactly
// the requests that got through: unspent slots were given back.
func TestLeasedChecksShareRoundTripsAndKeepTheLimitAcrossInstances(t *testing.T) {
	r := testkit.StartRedis(t)
	ctx := ctxFor(t)
	const limit, instances, each = 1000, 3, 1000
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: limit, Window: time.Minute}
	var allowed, denied atomic.Int64
	var trips int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	limiters := make([]*scriptCalls, instances)
	for i := range instances {
		l, calls := leasingLimiter(t, r, 100*time.Millisecond)
		limiters[i] = calls
		for range each {
			wg.Go(func() {
				<-start
				d, err := l.Allow(ctx, rule)
				switch {
				case err != nil:
					t.Error(err)
				case d.Allowed:
					allowed.Add(1)
					if d.Remaining < 0 || d.Remaining >= limit {
						t.Errorf("allowed with %d remaining of %d", d.Remaining, limit)
					}
				default:
					denied.Add(1)
					if d.RetryAfter <= 0 || d.Remaining != 0 {
						t.Errorf("denied with %+v, want a RetryAfter and 0 remaining", d)
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for _, c := range limiters {
		trips += c.n.Load()
	}
	got := allowed.Load()
	t.Logf("%d allowed, %d denied, in %d round trips", got, denied.Load(), trips)
	if got > limit || got < limit-(instances-1)*limit/100 {
		t.Errorf("%d of %d requests allowed, want %d at most and at least %d", got, instances*each, limit, limit-(instances-1)*limit/100)
	}
	if trips > instances*each/4 {
		t.Errorf("%d round trips for %d requests, want leases to share them", trips, instances*each)
	}
	testkit.Eventually(t, 5*time.Second, "unspent slots to be given back", func() bool {
		n, err := r.FastClient(t).ZCard(ctx, rule.Key()).Result()
		return err == nil && n == got
	})
}

// TestOneInstanceCountsDownExactlyThroughLeases: on one instance the
// remaining budget each request hears is exact, leases or not: 600
// concurrent requests on a limit of 1,000 hear 999 down to 400, each once.
func TestOneInstanceCountsDownExactlyThroughLeases(t *testing.T) {
	r := testkit.StartRedis(t)
	l, calls := leasingLimiter(t, r, 200*time.Millisecond)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: 1000, Window: time.Minute}
	var mu sync.Mutex
	var heard []int
	var wg sync.WaitGroup
	for range 600 {
		wg.Go(func() {
			d, err := l.Allow(ctx, rule)
			if err != nil || !d.Allowed {
				t.Errorf("got %+v, %v; want allowed", d, err)
				return
			}
			mu.Lock()
			heard = append(heard, d.Remaining)
			if len(heard) == 600 {
				n, _ := r.FastClient(t).ZCard(ctx, rule.Key()).Result()
				t.Logf("600 requests made, %d slots logged before the term ends", n)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(heard)
	for i, n := range heard {
		if n != 400+i {
			t.Fatalf("remaining counts heard %v..., want 400..999 each once", heard[:min(len(heard), i+3)])
		}
	}
	if calls.n.Load() >= 600 {
		t.Errorf("%d round trips for 600 concurrent requests, want leases", calls.n.Load())
	}
	// The last lease outgrew the last requests; its term over, the log
	// holds just the 600 that were made.
	testkit.Eventually(t, 5*time.Second, "unspent slots to be given back", func() bool {
		n, err := r.FastClient(t).ZCard(ctx, rule.Key()).Result()
		return err == nil && n == 600
	})
}

// TestLeasesKeepEverySpanOfAWindowWithinTheLimit drives two instances far
// past a limit of 1,000 per 500 ms for 2 s, leases on, and looks at when
// each allowed request was answered: no span of a window (less 20 ms for
// the time between a slot being taken and its caller noting it) holds more
// than the limit, and the limit, not the clients, is what held them.
func TestLeasesKeepEverySpanOfAWindowWithinTheLimit(t *testing.T) {
	r := testkit.StartRedis(t)
	ctx := ctxFor(t)
	const limit, window = 1000, 500 * time.Millisecond
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: limit, Window: window}
	var mu sync.Mutex
	var at []time.Time
	var trips []*scriptCalls
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for range 2 {
		l, calls := leasingLimiter(t, r, 100*time.Millisecond)
		trips = append(trips, calls)
		for range 16 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					d, err := l.Allow(ctx, rule)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						now := time.Now()
						mu.Lock()
						at = append(at, now)
						mu.Unlock()
					} else {
						// As a client told to retry later does.
						time.Sleep(d.RetryAfter)
					}
				}
			})
		}
	}
	wg.Wait()
	span := window - 20*time.Millisecond
	worst := maxInSpan(at, span)
	leased := trips[0].n.Load() + trips[1].n.Load()
	t.Logf("%d allowed in 2s, at most %d in any %v, %d round trips", len(at), worst, span, leased)
	if worst > limit {
		t.Errorf("%d requests allowed within %v, want at most the limit %d", worst, span, limit)
	}
	if len(at) < 2*limit {
		t.Errorf("only %d allowed in 2s at %d per %v: the limit was not what held them", len(at), limit, window)
	}
	if leased*4 > int64(len(at)) {
		t.Errorf("%d round trips for %d allowed requests: leases were not used", leased, len(at))
	}
}

// TestSmallLimitsAreNeverLeased: a limit under 200 per window, the default
// price limit of 20 among them, is checked in Redis for every request, lease
// term or not, and its log holds single hits only.
func TestSmallLimitsAreNeverLeased(t *testing.T) {
	r := testkit.StartRedis(t)
	l, calls := leasingLimiter(t, r, 100*time.Millisecond)
	ctx := ctxFor(t)
	// Loaded first, so that each check below is one EVALSHA.
	if _, err := l.Allow(ctx, throttle.Rule{Policy: "warm", Subject: t.Name(), Limit: 1, Window: time.Second}); err != nil {
		t.Fatal(err)
	}
	calls.n.Store(0)
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: 20, Window: time.Minute}
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for range 40 {
		wg.Go(func() {
			if d, err := l.Allow(ctx, rule); err != nil {
				t.Error(err)
			} else if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 20 || calls.n.Load() != 40 {
		t.Errorf("%d allowed in %d round trips, want 20 of 40, one round trip each", allowed.Load(), calls.n.Load())
	}
	members, err := r.FastClient(t).ZRange(ctx, rule.Key(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if strings.HasPrefix(m, "lease-") {
			t.Fatalf("a limit of 20 was leased: %v", members)
		}
	}
}

// TestAHungRedisFailsLeaseWaitersWithinOneTimeout: 50 requests wait on one
// renewal while Redis hangs; they all fail within about one client timeout
// (300 ms), not one each, in turn.
func TestAHungRedisFailsLeaseWaitersWithinOneTimeout(t *testing.T) {
	r := testkit.StartRedis(t)
	l, _ := leasingLimiter(t, r, 100*time.Millisecond)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: 100000, Window: time.Minute}
	if d, err := l.Allow(ctx, rule); err != nil || !d.Allowed {
		t.Fatalf("before the hang: %+v, %v", d, err)
	}
	r.Freeze(t)
	defer r.Thaw(t)
	time.Sleep(150 * time.Millisecond) // no lease left to spend
	began := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, err := l.Allow(ctx, rule); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	if failed.Load() != 50 {
		t.Errorf("%d of 50 requests failed while Redis hung, want all", failed.Load())
	}
	if took > 2*time.Second {
		t.Errorf("50 waiting requests took %v to fail, want about one timeout", took)
	}
}

// TestASlotSpentLateInItsTermCountsAWholeWindow: instance A spends the last
// slot of a lease near the end of its term, then B uses the rest of the
// limit, and, a window after A's lease was granted, asks again. A lease's
// slots are logged at the end of its term, so B is refused until the late
// slot has been a whole window old: the requests in any span of a window
// stay within the limit. Logged when granted, A's slots would leave the log
// a window after the grant and let B past the limit.
func TestASlotSpentLateInItsTermCountsAWholeWindow(t *testing.T) {
	r := testkit.StartRedis(t)
	ctx := ctxFor(t)
	const limit, window, term = 1000, time.Second, 300 * time.Millisecond
	rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: limit, Window: window}
	a, _ := leasingLimiter(t, r, term)
	b, _ := leasingLimiter(t, r, term)
	var mu sync.Mutex
	var at []time.Time
	allow := func(l *throttle.Limiter) bool {
		d, err := l.Allow(ctx, rule)
		if err != nil {
			t.Error(err)
			return false
		}
		if d.Allowed {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}
		return d.Allowed
	}

	// A burst on A: its leases outgrow it, and a slot is left unspent.
	began := time.Now()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			allow(a)
		})
	}
	wg.Wait()
	logged, err := r.FastClient(t).ZCard(ctx, rule.Key()).Result()
	if err != nil || logged <= 20 {
		t.Fatalf("setup: after 20 requests on A the log holds %d (%v), want a slot leased and unspent", logged, err)
	}
	time.Sleep(time.Until(began.Add(term - 60*time.Millisecond)))
	if !allow(a) {
		t.Fatal("A's late request was refused")
	}
	// B takes the rest of the limit, then asks again a window after the grant.
	for int64(len(at)) < limit-(logged-21) && allow(b) {
	}
	time.Sleep(time.Until(began.Add(window + 20*time.Millisecond)))
	for range 30 {
		allow(b)
	}

	span := window - 20*time.Millisecond
	if worst := maxInSpan(at, span); worst > limit {
		t.Errorf("%d requests allowed within %v, want at most the limit %d", worst, span, limit)
	}
}
