package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// Budget is the upstream call budget every fetcher shares. Calls are paced
// by GCRA (the generic cell rate algorithm): one call per interval, with a
// burst of Burst calls after a quiet spell. The interval is chosen so that
// no 60 s window, however aligned, holds more than PerMinute calls: a burst
// early in a minute cannot leave the rest of it without a slot.
type Budget struct {
	PerMinute int // 0: no budget
	Burst     int // 1..PerMinute; 0 means 1
}

func (b Budget) validate() error {
	if b.PerMinute < 0 || b.Burst < 0 || (b.PerMinute > 0 && b.Burst > b.PerMinute) {
		return errors.New("upstream burst must be between 1 and the calls per minute")
	}
	return nil
}

func (b Budget) burst() int { return max(b.Burst, 1) }

// budgetSpan is the window the budget is spread over: CoinGecko's minute
// plus a second of slack. Slots are taken at Redis time, but a call reaches
// CoinGecko some milliseconds later, and not always equally late (a new
// connection, a loaded machine): paced over exactly 60 s, a call could
// arrive less than a minute after the call PerMinute before it, and be
// refused (seen with 2 calls a minute against the simulator).
const budgetSpan = 61_000

// gcra returns the emission interval and the burst tolerance in ms (0, 0
// with no budget). GCRA admits at most floor((L+tolerance)/interval)+1 calls
// in any span of length L; with interval = budgetSpan / (PerMinute-Burst+1)
// and tolerance = (Burst-1) intervals that is PerMinute for any span under
// budgetSpan, so for any minute with a second to spare.
func (b Budget) gcra() (interval, tolerance int64) {
	if b.PerMinute <= 0 {
		return 0, 0
	}
	n := int64(b.PerMinute - b.burst() + 1)
	interval = (budgetSpan + n - 1) / n
	return interval, int64(b.burst()-1) * interval
}

// Interval is the pacing between calls once the burst is spent.
func (b Budget) Interval() time.Duration {
	i, _ := b.gcra()
	return time.Duration(i) * time.Millisecond
}

// Remaining is how many upstream calls could start right now, and -1 when
// there is no budget. It reads the shared GCRA state and the cooldown.
func (s *Store) Remaining(ctx context.Context) (int, error) {
	b := s.set.Budget
	if b.PerMinute <= 0 {
		return -1, nil
	}
	var tat *redis.StringCmd
	var cool *redis.DurationCmd
	var now *redis.TimeCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		tat = p.Get(ctx, price.BudgetKey)
		cool = p.PTTL(ctx, price.CooldownKey)
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read upstream budget: %w", err)
	}
	if d := cool.Val(); d > 0 {
		return 0, nil
	}
	interval, tolerance := b.gcra()
	t, _ := strconv.ParseInt(tat.Val(), 10, 64)
	nowMS := now.Val().UnixMilli()
	if t <= nowMS {
		return b.burst(), nil
	}
	// Calls fit while tat - tolerance <= now; each adds one interval.
	left := (nowMS + tolerance - t) / interval
	if nowMS+tolerance-t < 0 {
		return 0, nil
	}
	return min(int(left)+1, b.burst()), nil
}
