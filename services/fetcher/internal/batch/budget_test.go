package batch

import (
	"context"
	"testing"
	"time"
)

// GCRA admits at most floor((L+tolerance)/interval)+1 calls in a span L; the
// chosen interval keeps that at PerMinute for every span under a minute.
func TestBudgetNeverExceedsPerMinuteInAnyMinute(t *testing.T) {
	for _, b := range []Budget{{30, 1}, {30, 3}, {30, 30}, {1, 1}, {500, 10}, {7, 2}} {
		interval, tolerance := b.gcra()
		span := int64(budgetSpan - 1) // a minute and the second of slack
		if most := (span+tolerance)/interval + 1; most > int64(b.PerMinute) {
			t.Errorf("%+v: interval %d ms, tolerance %d ms admit %d calls in a minute", b, interval, tolerance, most)
		}
	}
	if i, tol := (Budget{}).gcra(); i != 0 || tol != 0 {
		t.Errorf("no budget: %d %d", i, tol)
	}
}

// Against real Redis time: a burst, then one slot per interval.
func TestTakeSlotPacesCallsEvenly(t *testing.T) {
	set := settings
	set.Budget = Budget{PerMinute: 600, Burst: 3} // 100+ ms apart after 3 at once
	s, _ := newStore(t, set)
	ctx := context.Background()
	// Each slot is granted somewhere between the call and its return, so
	// two slots are at most (return of the later - call of the earlier)
	// apart: a gap measured that way is never shortened by this process
	// being descheduled on a loaded machine.
	type span struct{ called, returned time.Time }
	var taken []span
	end := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(end) {
		called := time.Now()
		wait, err := s.TakeSlot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if wait == 0 {
			taken = append(taken, span{called, time.Now()})
			continue
		}
		if wait > set.Budget.Interval() {
			t.Fatalf("told to wait %s, longer than one interval (%s)", wait, set.Budget.Interval())
		}
		time.Sleep(wait / 2)
	}
	interval := set.Budget.Interval()
	// 3 at once, then about one per interval over the 1.2 s.
	if want := 3 + int(1200*time.Millisecond/interval); len(taken) > want+1 || len(taken) < want-2 {
		t.Errorf("%d slots in 1.2 s, want about %d", len(taken), want)
	}
	// GCRA's bound: any k+1 slots span at least (k - burst + 1) intervals,
	// whatever their alignment. A caller that comes late for one slot
	// rightly gets the next one sooner (the schedule is kept, not a minimum
	// gap), so only this span is checked, over every pair of slots.
	burst := set.Budget.Burst
	for i := range taken {
		for j := i + 1; j < len(taken); j++ {
			want := time.Duration(j-i-burst+1)*interval - 15*time.Millisecond
			if span := taken[j].returned.Sub(taken[i].called); want > 0 && span < want {
				t.Errorf("slots %d..%d came within %s, under the %s the budget allows", i, j, span, want)
			}
		}
	}
	if n, err := s.Remaining(ctx); err != nil || n < 0 || n > 3 {
		t.Errorf("remaining = %d %v", n, err)
	}
}
