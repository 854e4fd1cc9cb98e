package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cryptopulse/libs/throttle"
	"cryptopulse/testkit"
)

func TestAllowUpToLimitThenDeny(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)

	tests := []struct {
		name   string
		limit  int
		window time.Duration
	}{
		{"one per second", 1, time.Second},
		{"login 5 per minute", 5, time.Minute},
		{"price 20 per minute", 20, time.Minute},
		{"sub-second window", 3, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t)
			rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: tt.limit, Window: tt.window}
			for i := range tt.limit {
				d, err := l.Allow(ctx, rule)
				if err != nil {
					t.Fatal(err)
				}
				if !d.Allowed || d.Limit != tt.limit || d.Remaining != tt.limit-i-1 ||
					d.RetryAfter != 0 || d.Reset != tt.window || d.Rule != rule {
					t.Fatalf("hit %d: got %+v, want allowed with %d remaining, reset %v", i+1, d, tt.limit-i-1, tt.window)
				}
			}
			for i := range 3 {
				d, err := l.Allow(ctx, rule)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed || d.Remaining != 0 || d.Limit != tt.limit {
					t.Fatalf("extra hit %d: got %+v, want denied with 0 remaining", i+1, d)
				}
				if d.RetryAfter <= 0 || d.RetryAfter > tt.window {
					t.Fatalf("extra hit %d: RetryAfter %v, want in (0, %v]", i+1, d.RetryAfter, tt.window)
				}
				if d.Reset < d.RetryAfter || d.Reset > tt.window {
					t.Fatalf("extra hit %d: Reset %v, want in [RetryAfter %v, %v]", i+1, d.Reset, d.RetryAfter, tt.window)
				}
			}
			// Denied hits are not logged, or a client hammering a closed
			// door would keep it closed forever.
			if n := rdb.ZCard(ctx, rule.Key()).Val(); n != int64(tt.limit) {
				t.Fatalf("log holds %d hits, want %d", n, tt.limit)
			}
		})
	}
}

// RetryAfter is exact: before it the door is still closed, after it a slot
// has freed.
func TestRetryAfterIsWhenASlotFrees(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "retry", Limit: 2, Window: 600 * time.Millisecond}

	// Two hits 200ms apart: the first to leave frees the one slot needed.
	for i := range 2 {
		if d, err := l.Allow(ctx, rule); err != nil || !d.Allowed {
			t.Fatalf("Allow = %+v, %v; want allowed", d, err)
		}
		if i == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	d, err := l.Allow(ctx, rule)
	if err != nil || d.Allowed {
		t.Fatalf("Allow = %+v, %v; want denied", d, err)
	}
	wait := d.RetryAfter
	if wait < 350*time.Millisecond || wait > 400*time.Millisecond {
		t.Fatalf("RetryAfter %v, want about 400ms (the first hit's age subtracted from the window)", wait)
	}
	if d.Reset < 550*time.Millisecond || d.Reset > 600*time.Millisecond {
		t.Fatalf("Reset %v, want about 600ms (when the second hit leaves)", d.Reset)
	}
	time.Sleep(wait / 2)
	if d, err := l.Allow(ctx, rule); err != nil || d.Allowed {
		t.Fatalf("halfway to RetryAfter: Allow = %+v, %v; want denied", d, err)
	}
	time.Sleep(wait/2 + 20*time.Millisecond)
	if d, err := l.Allow(ctx, rule); err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after RetryAfter: Allow = %+v, %v; want allowed with 0 remaining (one hit freed)", d, err)
	}
}

// Two instances, each with its own client and Limiter, draw on one budget.
func TestInstancesShareOneBudget(t *testing.T) {
	r := testkit.StartRedis(t)
	instances := []*throttle.Limiter{throttle.New(r.FastClient(t)), throttle.New(r.FastClient(t))}
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "price", Subject: "user:alice", Limit: 7, Window: time.Minute}

	allowed := 0
	for i := range 20 {
		d, err := instances[i%2].Allow(ctx, rule)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		if want := max(rule.Limit-i-1, 0); d.Remaining != want {
			t.Fatalf("hit %d on instance %d: Remaining %d, want %d", i+1, i%2, d.Remaining, want)
		}
	}
	if allowed != rule.Limit {
		t.Fatalf("allowed %d across two instances, want %d", allowed, rule.Limit)
	}
}

func TestSeveralRulesAtOnce(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)

	ip := throttle.Rule{Policy: "login-ip", Limit: 3, Window: time.Minute}
	user := throttle.Rule{Policy: "login-user", Limit: 5, Window: time.Minute}
	tests := []struct {
		name string
		// before are checks made first, each with its own rules.
		before [][]throttle.Rule
		// then the check under test, of ip and user together.
		wantAllowed   bool
		wantPolicy    string
		wantRemaining int
		// wantLogged is how many hits each key holds afterwards.
		wantIPLogged, wantUserLogged int64
	}{
		{
			name:        "both have room: recorded in both, tightest reported",
			wantAllowed: true, wantPolicy: "login-ip", wantRemaining: 2,
			wantIPLogged: 1, wantUserLogged: 1,
		},
		{
			name:        "address exhausted: denied, username untouched",
			before:      [][]throttle.Rule{{ip}, {ip}, {ip}},
			wantAllowed: false, wantPolicy: "login-ip", wantRemaining: 0,
			wantIPLogged: 3, wantUserLogged: 0,
		},
		{
			name:        "username exhausted: denied, address untouched",
			before:      [][]throttle.Rule{{user}, {user}, {user}, {user}, {user}},
			wantAllowed: false, wantPolicy: "login-user", wantRemaining: 0,
			wantIPLogged: 0, wantUserLogged: 5,
		},
		{
			name:        "username tighter than address",
			before:      [][]throttle.Rule{{user}, {user}, {user}},
			wantAllowed: true, wantPolicy: "login-user", wantRemaining: 1,
			wantIPLogged: 1, wantUserLogged: 4,
		},
		{
			name:        "both exhausted: the one freeing last is reported",
			before:      [][]throttle.Rule{{user}, {user}, {user}, {user}, {user}, {ip}, {ip}, {ip}},
			wantAllowed: false, wantPolicy: "login-ip", wantRemaining: 0,
			wantIPLogged: 3, wantUserLogged: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t)
			ip, user := ip, user
			ip.Subject, user.Subject = t.Name()+"/203.0.113.7", t.Name()+"/alice"
			for _, rules := range tt.before {
				for i := range rules {
					rules[i].Subject = map[string]string{"login-ip": ip.Subject, "login-user": user.Subject}[rules[i].Policy]
				}
				if _, err := l.Allow(ctx, rules...); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond) // so "freeing last" is well defined
			}
			d, err := l.Allow(ctx, ip, user)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.wantAllowed || d.Rule.Policy != tt.wantPolicy || d.Remaining != tt.wantRemaining {
				t.Fatalf("got allowed=%v policy=%s remaining=%d, want %v %s %d",
					d.Allowed, d.Rule.Policy, d.Remaining, tt.wantAllowed, tt.wantPolicy, tt.wantRemaining)
			}
			if !d.Allowed && d.RetryAfter <= 0 {
				t.Fatalf("denied with RetryAfter %v", d.RetryAfter)
			}
			if n := rdb.ZCard(ctx, ip.Key()).Val(); n != tt.wantIPLogged {
				t.Errorf("address log holds %d, want %d", n, tt.wantIPLogged)
			}
			if n := rdb.ZCard(ctx, user.Key()).Val(); n != tt.wantUserLogged {
				t.Errorf("username log holds %d, want %d", n, tt.wantUserLogged)
			}
		})
	}
}

func TestInvalidRules(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	ok := throttle.Rule{Policy: "p", Subject: "s", Limit: 1, Window: time.Second}
	tests := []struct {
		name  string
		rules []throttle.Rule
	}{
		{"no rules", nil},
		{"empty policy", []throttle.Rule{{Subject: "s", Limit: 1, Window: time.Second}}},
		{"colon in policy", []throttle.Rule{{Policy: "a:b", Subject: "s", Limit: 1, Window: time.Second}}},
		{"zero limit", []throttle.Rule{{Policy: "p", Subject: "s", Window: time.Second}}},
		{"sub-millisecond window", []throttle.Rule{{Policy: "p", Subject: "s", Limit: 1, Window: time.Microsecond}}},
		{"two rules on one key", []throttle.Rule{ok, {Policy: "p", Subject: "s", Limit: 5, Window: time.Hour}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.Allow(ctxFor(t), tt.rules...); !errors.Is(err, throttle.ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
		})
	}
}

// Idle keys vanish when their newest hit leaves the window.
func TestKeysExpire(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "expiry", Limit: 5, Window: 300 * time.Millisecond}

	for range 2 {
		if _, err := l.Allow(ctx, rule); err != nil {
			t.Fatal(err)
		}
	}
	ttl := rdb.PTTL(ctx, rule.Key()).Val()
	if ttl <= 0 || ttl > rule.Window {
		t.Fatalf("PTTL %v, want in (0, %v]", ttl, rule.Window)
	}
	time.Sleep(rule.Window + 100*time.Millisecond)
	if n := rdb.Exists(ctx, rule.Key()).Val(); n != 0 {
		t.Fatalf("key still exists after its window")
	}
}

// 100 checks racing on one key through two clients: the script's atomicity,
// not luck, keeps the count exact.
func TestConcurrentChecksAreExact(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	instances := []*throttle.Limiter{throttle.New(rdb), throttle.New(r.FastClient(t))}

	tests := []struct {
		limit, calls int
	}{
		{20, 100},
		{1, 50},
		{99, 100},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("limit %d calls %d", tt.limit, tt.calls), func(t *testing.T) {
			ctx := ctxFor(t)
			rule := throttle.Rule{Policy: "test", Subject: t.Name(), Limit: tt.limit, Window: time.Minute}
			var allowed, failed atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range tt.calls {
				wg.Go(func() {
					<-start
					d, err := instances[i%2].Allow(ctx, rule)
					switch {
					case err != nil:
						failed.Add(1)
						t.Error(err)
					case d.Allowed:
						allowed.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if failed.Load() > 0 {
				t.FailNow()
			}
			if got := allowed.Load(); got != int64(tt.limit) {
				t.Fatalf("allowed %d, want exactly %d", got, tt.limit)
			}
			if n := rdb.ZCard(ctx, rule.Key()).Val(); n != int64(tt.limit) {
				t.Fatalf("log holds %d, want %d", n, tt.limit)
			}
		})
	}
}

// A dead Redis fails a check fast, without retries, and the limiter works
// again by itself once Redis is back, even though it lost the cached script.
func TestRedisOutage(t *testing.T) {
	r := testkit.StartRedis(t)
	l := throttle.New(r.FastClient(t))
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "outage", Limit: 5, Window: time.Minute}

	if _, err := l.Allow(ctx, rule); err != nil {
		t.Fatal(err)
	}
	r.Stop(t)
	for i := range 3 {
		start := time.Now()
		_, err := l.Allow(ctx, rule)
		if err == nil {
			t.Fatalf("check %d with Redis down: no error", i+1)
		}
		took := time.Since(start)
		if took > time.Second {
			t.Fatalf("check %d with Redis down took %v, want < 1s", i+1, took)
		}
		t.Logf("check %d with Redis down failed in %v: %v", i+1, took, err)
	}
	r.Start(t)
	d, err := l.Allow(ctx, rule)
	if err != nil {
		t.Fatalf("first check after Redis restarted: %v", err)
	}
	// Redis restarted empty, so the budget did too.
	if !d.Allowed || d.Remaining != rule.Limit-1 {
		t.Fatalf("after restart: %+v, want allowed with %d remaining", d, rule.Limit-1)
	}
}

func BenchmarkAllow(b *testing.B) {
	r := testkit.StartRedis(b)
	rdb := r.FastClient(b)
	l := throttle.New(rdb)
	ctx := context.Background() // a benchmark outlives any fixed deadline
	huge := 1 << 30             // never denies, so every check takes the recording path

	// The floor: one bare round trip to the same server.
	b.Run("PING baseline", func(b *testing.B) {
		for b.Loop() {
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one rule", func(b *testing.B) {
		rule := throttle.Rule{Policy: "bench", Subject: "one", Limit: huge, Window: time.Second}
		for b.Loop() {
			if _, err := l.Allow(ctx, rule); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("two rules", func(b *testing.B) {
		a := throttle.Rule{Policy: "bench", Subject: "ip", Limit: huge, Window: time.Second}
		u := throttle.Rule{Policy: "bench", Subject: "user", Limit: huge, Window: time.Second}
		for b.Loop() {
			if _, err := l.Allow(ctx, a, u); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("denied", func(b *testing.B) {
		rule := throttle.Rule{Policy: "bench", Subject: "denied", Limit: 20, Window: time.Hour}
		for b.Loop() {
			if _, err := l.Allow(ctx, rule); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel one rule", func(b *testing.B) {
		rule := throttle.Rule{Policy: "bench", Subject: "parallel", Limit: huge, Window: time.Second}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Allow(ctx, rule); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
