package throttle

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leasing: a check costs one Redis round trip, and on a hot read that round
// trip was the largest cost left (two fifths of a gateway's CPU, and most of
// Redis's). So a Limiter with a lease term takes the slots of a busy rule from
// Redis several at a time, as a lease it spends locally, one slot a request,
// for at most one term. Redis scores leased slots at the end of the term, so
// "at most Limit in any span of Window" holds exactly as before, across every
// instance (see leaseLua); what a lease costs is that a slot another instance
// holds unspent is refused here until it is spent or given back, which
// happens as the term ends.
//
// A lease is never more than 1 % of the limit (leaseShare), so rules with
// limits under 200 per window, the default price limit of 20 among them,
// are never leased: each request is its own exact check, as without a term.
// A lease's size follows demand: it is at least the requests that arrived
// since the last renewal began (those waiting on it among them), doubles
// while leases run out before their term ends, and shrinks to what the last
// one spent.
const (
	// leaseShare is the part of a rule's limit one lease may take, as
	// 1/leaseShare: what one instance can hold unspent while another is
	// refused.
	leaseShare = 100
	// maxLease bounds one lease, and so how long one script holds Redis:
	// 1,000 slots took 3 ms (a ZADD of 1,000 into a log of a million),
	// during which Redis serves no one else; 256 take under 1 ms and
	// still leave one round trip for hundreds of requests.
	maxLease = 256
	// sweepEvery is how many leases are taken between sweeps of the rules
	// idle for sweepAfter terms.
	sweepEvery = 64
	sweepAfter = 16
)

// leaseCap is the most slots one lease of r may take; under 2, r is checked
// a request at a time.
func leaseCap(r Rule) int {
	return min(r.Limit/leaseShare, maxLease)
}

// leases are a Limiter's leases, one rule each.
type leases struct {
	term time.Duration
	// take is leaseLua; giveBack removes the slots named in ARGV from KEYS[1].
	take, giveBack *redis.Script

	mu    sync.Mutex
	rules map[Rule]*lease
	taken int // leases taken, for sweeping
}

// lease is the state of one rule on this instance: its current lease, if
// any, and what the next one should take.
type lease struct {
	// The current lease: slots prefix1 .. prefix<granted>, spent in order,
	// spendable for one term from grantedAt.
	prefix         string
	granted, spent int
	count          int // hits logged after the grant
	reset          time.Duration
	grantedAt      time.Time
	generation     int
	want           int // what the next lease asks for
	lastUsed       time.Time
	arrived        int       // requests since the last renewal began
	renewedAt      time.Time // when it began
	// renewal is the renewal in flight, nil when none is.
	renewal *renewal
}

// renewal is a renewal in flight, and then how it ended, for those who
// waited on it: its error or its refusal is every waiter's answer too, so
// that a Redis that hangs holds them one timeout, not one each.
type renewal struct {
	done   chan struct{} // closed when it ends, after err and denied are set
	err    error
	denied *Decision
}

// allowLeased is Allow for one rule whose slots may be leased.
func (l *Limiter) allowLeased(ctx context.Context, r Rule) (Decision, error) {
	ls := l.leases
	for arriving := true; ; arriving = false {
		now := time.Now()
		ls.mu.Lock()
		s := ls.rules[r]
		if s == nil {
			s = &lease{want: 1}
			ls.rules[r] = s
		}
		s.lastUsed = now
		if arriving {
			s.arrived++
		}
		if s.spent < s.granted && now.Before(s.grantedAt.Add(ls.term)) {
			s.spent++
			d := s.decision(r, now)
			if s.spent == s.granted {
				// Run out within its term: demand outgrows the lease.
				s.want = min(2*s.granted, leaseCap(r))
			}
			ls.mu.Unlock()
			return d, nil
		}
		if rn := s.renewal; rn != nil {
			ls.mu.Unlock()
			select {
			case <-rn.done:
			case <-ctx.Done():
				return Decision{}, fmt.Errorf("throttle %s: %w", r.Key(), ctx.Err())
			}
			switch {
			case rn.err != nil:
				return Decision{}, rn.err
			case rn.denied != nil:
				return *rn.denied, nil
			}
			continue
		}
		// This caller takes the next lease, for itself and those waiting:
		// as many as arrived during the last renewal, at least. The last
		// lease's unspent slots, if its term ran out before its timer gave
		// them back, go back with the renewal.
		back := s.endLocked()
		if now.Sub(s.renewedAt) > 2*ls.term {
			s.want = 1 // a quiet spell: what the last burst needed says nothing now
		}
		want := min(max(s.want, s.arrived), leaseCap(r))
		s.arrived, s.renewedAt = 0, now
		rn := &renewal{done: make(chan struct{})}
		s.renewal = rn
		ls.mu.Unlock()

		d, err := l.renew(ctx, r, s, want, back, now)

		rn.err = err
		if err == nil && !d.Allowed {
			rn.denied = &d
		}
		ls.mu.Lock()
		s.renewal = nil
		ls.mu.Unlock()
		close(rn.done)
		return d, err
	}
}

// renew takes a lease of want slots for r, or, for one slot, checks the
// request on its own, and returns the decision for the caller's own request;
// back are slots of an earlier lease to give back first.
func (l *Limiter) renew(ctx context.Context, r Rule, s *lease, want int, back []any, sentAt time.Time) (Decision, error) {
	ls := l.leases
	// The renewal answers those waiting too: one caller going away must not
	// fail it for them. Its deadline, the same for every request, still
	// bounds it, as do the client's timeouts.
	rctx := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(rctx, dl)
		defer cancel()
	}
	if want < 2 {
		if len(back) > 0 {
			l.giveBack(rctx, r, back)
		}
		return l.allowRules(rctx, []Rule{r})
	}
	args := append([]any{r.Limit, r.Window.Microseconds(), want, ls.term.Microseconds()}, back...)
	res, err := ls.take.Run(rctx, l.rdb, []string{r.Key()}, args...).Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("throttle %s: %w", r.Key(), err)
	}
	g, err := leaseReply(res)
	if err != nil {
		return Decision{}, fmt.Errorf("throttle %s: %w", r.Key(), err)
	}
	if g.granted == 0 {
		return Decision{
			Allowed: false, Limit: r.Limit, Remaining: 0,
			RetryAfter: g.retry, Reset: g.reset, Rule: r,
		}, nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s.generation++
	s.prefix, s.granted, s.spent, s.count, s.reset = g.prefix, g.granted, 1, g.count, g.reset
	// Redis saw the request after it was sent, so a term counted from the
	// sending ends no later than the one Redis scored the slots for.
	s.grantedAt = sentAt
	if g.granted > 1 {
		gen := s.generation
		time.AfterFunc(ls.term, func() { l.retire(r, s, gen) })
	}
	if ls.taken++; ls.taken%sweepEvery == 0 {
		ls.sweepLocked(sentAt)
	}
	return s.decision(r, sentAt), nil
}

// decision is the answer for the slot just spent.
func (s *lease) decision(r Rule, now time.Time) Decision {
	return Decision{
		Allowed: true, Limit: r.Limit,
		// The slots this lease still holds are the caller's to spend.
		Remaining: max(r.Limit-s.count+s.granted-s.spent, 0),
		Reset:     max(s.reset-now.Sub(s.grantedAt), 0),
		Rule:      r,
	}
}

// retire ends lease generation gen of r at its term: the slots it did not
// spend go back to Redis, so another instance can use them at once.
func (l *Limiter) retire(r Rule, s *lease, gen int) {
	ls := l.leases
	ls.mu.Lock()
	if s.generation != gen || s.renewal != nil {
		// A renewal took over, and gives them back itself.
		ls.mu.Unlock()
		return
	}
	back := s.endLocked()
	ls.mu.Unlock()
	if len(back) > 0 {
		l.giveBack(context.Background(), r, back)
	}
}

// endLocked ends the current lease and returns its unspent slots' members.
// A lease that ends unspent shows demand below it: the next asks for what
// it used.
func (s *lease) endLocked() []any {
	if s.spent >= s.granted {
		return nil
	}
	back := make([]any, 0, s.granted-s.spent)
	for i := s.spent + 1; i <= s.granted; i++ {
		back = append(back, s.prefix+strconv.Itoa(i))
	}
	s.want = max(s.spent, 1)
	s.granted = s.spent
	return back
}

// giveBack removes unspent slots from r's log. It is best effort, bounded by
// ctx and the client's timeouts: a slot not given back still leaves the
// window in time, as if it had been spent.
func (l *Limiter) giveBack(ctx context.Context, r Rule, back []any) {
	_ = l.leases.giveBack.Run(ctx, l.rdb, []string{r.Key()}, back...).Err()
}

// sweepLocked forgets the rules that no request has used for a while and
// that hold nothing, so the map keeps only the busy ones.
func (ls *leases) sweepLocked(now time.Time) {
	for r, s := range ls.rules {
		if s.renewal == nil && s.spent >= s.granted && now.Sub(s.lastUsed) > sweepAfter*ls.term {
			delete(ls.rules, r)
		}
	}
}

// grant is leaseLua's reply.
type grant struct {
	granted, count int
	retry, reset   time.Duration
	prefix         string
}

// leaseReply reads leaseLua's reply.
func leaseReply(res []any) (grant, error) {
	if len(res) != 5 {
		return grant{}, fmt.Errorf("lease script answered %d values", len(res))
	}
	n, err := int64s(res[:4])
	if err != nil {
		return grant{}, err
	}
	prefix, ok := res[4].(string)
	if !ok {
		return grant{}, fmt.Errorf("lease script answered %T for the prefix", res[4])
	}
	return grant{
		granted: int(n[0]), count: int(n[1]),
		retry: time.Duration(n[2]) * time.Microsecond, reset: time.Duration(n[3]) * time.Microsecond,
		prefix: prefix,
	}, nil
}
