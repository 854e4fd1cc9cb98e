package throttle_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/throttle"
	"cryptopulse/testkit"
)

// fixedWindow is the naive limiter the design rules out, here only to prove
// that TestNoBurstAtWindowEdge can tell it apart: one INCR+PEXPIRE counter
// per aligned window, so a client can spend one window's budget at its end
// and the next window's at its start.
type fixedWindow struct {
	rdb    *redis.Client
	limit  int
	window time.Duration
}

func (f fixedWindow) allow(ctx context.Context, subject string) (bool, error) {
	key := fmt.Sprintf("test:fixed:%s:%d", subject, time.Now().UnixMilli()/f.window.Milliseconds())
	pipe := f.rdb.TxPipeline()
	n := pipe.Incr(ctx, key)
	pipe.PExpire(ctx, key, f.window)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, err
	}
	return n.Val() <= int64(f.limit), nil
}

// TestNoBurstAtWindowEdge spends a whole budget just before a fixed-window
// boundary and tries again just after it, then once more just after the
// first burst has left the window. A sliding window must accept nothing in
// the second burst and everything in the third; a fixed window accepts the
// second burst whole, twice the limit within 300ms.
func TestNoBurstAtWindowEdge(t *testing.T) {
	const (
		limit  = 20
		window = 2 * time.Second
	)
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	sliding := throttle.New(rdb)
	fixed := fixedWindow{rdb: rdb, limit: limit, window: window}

	tests := []struct {
		name  string
		allow func(ctx context.Context, subject string) (bool, error)
		// wantBursts is how many of each burst of 20 are accepted.
		wantBursts [3]int
		// wantMaxInWindow is the most accepted within any 2s span.
		wantMaxInWindow int
	}{
		{
			name: "sliding window",
			allow: func(ctx context.Context, subject string) (bool, error) {
				d, err := sliding.Allow(ctx, throttle.Rule{Policy: "edge", Subject: subject, Limit: limit, Window: window})
				return d.Allowed, err
			},
			wantBursts:      [3]int{20, 0, 20},
			wantMaxInWindow: limit,
		},
		{
			name:            "fixed window (the naive limiter, to prove the test can fail)",
			allow:           fixed.allow,
			wantBursts:      [3]int{20, 20, 0},
			wantMaxInWindow: 2 * limit,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			subject := t.Name()

			// The next fixed-window boundary at least 300ms away, as the
			// naive limiter's key arithmetic sees it.
			w := window.Milliseconds()
			edge := time.UnixMilli((time.Now().Add(300*time.Millisecond).UnixMilli()/w + 1) * w)
			bursts := []time.Time{
				edge.Add(-200 * time.Millisecond), // end of one fixed window
				edge.Add(100 * time.Millisecond),  // start of the next
				{},                                // set once the first burst is over
			}
			var accepted []time.Time
			var firstEnd time.Time
			var got [3]int
			for i, at := range bursts {
				if i == 2 {
					// 50ms after the first burst's last hit left the window:
					// timed from when it ended, so a slow burst cannot
					// leave hits behind and make the test flaky.
					at = firstEnd.Add(window + 50*time.Millisecond)
				}
				time.Sleep(time.Until(at))
				for range limit {
					ok, err := tt.allow(ctx, subject)
					if err != nil {
						t.Fatal(err)
					}
					if ok {
						got[i]++
						accepted = append(accepted, time.Now())
					}
				}
				if i == 0 {
					firstEnd = time.Now()
				}
				if i == 1 && tt.wantBursts[1] == 0 {
					// The second burst was refused because the first is
					// still in the window, not because its hits were lost.
					key := throttle.Rule{Policy: "edge", Subject: subject}.Key()
					if n := rdb.ZCount(ctx, key, fmt.Sprint(time.Now().Add(-window).UnixMicro()), "+inf").Val(); n != limit {
						t.Fatalf("after the second burst the window holds %d hits, want the first burst's %d", n, limit)
					}
				}
			}
			most := maxInSpan(accepted, window)
			t.Logf("accepted per burst %v, most in any %v span %d", got, window, most)
			if got != tt.wantBursts {
				t.Errorf("accepted per burst %v, want %v", got, tt.wantBursts)
			}
			if most != tt.wantMaxInWindow {
				t.Errorf("most accepted in any %v span = %d, want %d", window, most, tt.wantMaxInWindow)
			}
		})
	}
}

// maxInSpan returns the most times that fit in one half-open span of length
// w; a span holding the most can always be taken to start at one of them.
func maxInSpan(times []time.Time, w time.Duration) int {
	times = slices.Clone(times)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i, start := range times {
		j := i
		for j < len(times) && times[j].Sub(start) < w {
			j++
		}
		most = max(most, j-i)
	}
	return most
}
