// Package throttle is the rate limiter every gateway and auth instance shares.
// Its state lives in Redis, so a limit holds across all instances, and it is
// an exact sliding window: a rule of N per W accepts at most N requests in
// any span of length W, whatever the alignment, so no burst is possible at a
// window edge the way it is with fixed INCR+EXPIRE counters.
//
// Each rule keeps a log of its accepted hits in the sorted set
// cp:throttle:<policy>:<subject> (scored by the microsecond Redis saw the
// hit), trimmed to the window and expiring when it holds nothing that still
// counts. Inspect one with
//
//	redis-cli ZRANGE cp:throttle:login-ip:203.0.113.7 0 -1 WITHSCORES
//	redis-cli PTTL cp:throttle:login-ip:203.0.113.7
//
// A check is one EVALSHA round trip, whatever the number of rules. The keys of
// one check must live on one Redis node (a single server, as CryptoPulse runs).
// With LeaseTerm, a busy rule of a large limit takes its slots several at a
// time instead (lease.go), and the same bound holds.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every throttle key in Redis.
const KeyPrefix = "cp:throttle:"

// ErrInvalidRule is returned, wrapped, by Allow and AllowAdd when a rule cannot
// be checked: a caller's bug, never the client's.
var ErrInvalidRule = errors.New("throttle: invalid rule")

// Rule is one limit a request must fit in: at most Limit requests per Window
// for one Subject (a client address, a username, a token subject) under a
// Policy (the name of the limit, such as "login-ip").
type Rule struct {
	Policy  string
	Subject string
	Limit   int
	Window  time.Duration
}

// Key returns the Redis key holding the rule's log of accepted hits.
func (r Rule) Key() string {
	return KeyPrefix + r.Policy + ":" + r.Subject
}

// Validate reports why a rule cannot be checked, wrapping ErrInvalidRule.
func (r Rule) Validate() error {
	switch {
	case r.Policy == "":
		return fmt.Errorf("%w: empty policy", ErrInvalidRule)
	case strings.Contains(r.Policy, ":"):
		// A colon would let policy "a:b" with subject "c" share a key with
		// policy "a" and subject "b:c".
		return fmt.Errorf("%w: policy %q contains ':'", ErrInvalidRule, r.Policy)
	case r.Limit < 1:
		return fmt.Errorf("%w: policy %q: limit %d is below 1", ErrInvalidRule, r.Policy, r.Limit)
	case r.Window < time.Millisecond:
		// Redis expires keys in whole milliseconds.
		return fmt.Errorf("%w: policy %q: window %v is below 1ms", ErrInvalidRule, r.Policy, r.Window)
	}
	return nil
}

// Decision is the outcome of a check.
type Decision struct {
	// Allowed is true when every rule had room; the hit was then recorded in
	// each. When false, nothing was recorded anywhere.
	Allowed bool
	// Limit and Remaining are those of Rule, after this request.
	Limit     int
	Remaining int
	// RetryAfter is how long until Rule has a free slot, when denied.
	RetryAfter time.Duration
	// Reset is how long until Rule's window holds no hits.
	Reset time.Duration
	// Rule is the rule that denied the request (the one freeing last, when
	// several did) or, when allowed, the one with the least room left.
	Rule Rule
}

// Limiter checks rules against the hit logs kept in Redis. It is safe for
// concurrent use, and any number of Limiters, in any number of processes,
// share the budgets of the Redis they talk to.
type Limiter struct {
	rdb       redis.Scripter
	script    *redis.Script
	addScript *redis.Script
	// leases is nil unless the Limiter leases slots (LeaseTerm).
	leases *leases
}

// Option configures a Limiter.
type Option func(*Limiter)

// LeaseTerm lets Allow take the slots of a busy single rule with a limit of
// 200 or more several at a time, spending them for at most term (lease.go);
// a term of 0 checks every request on its own.
func LeaseTerm(term time.Duration) Option {
	return func(l *Limiter) {
		if term <= 0 {
			l.leases = nil
			return
		}
		l.leases = &leases{
			term: term, rules: map[Rule]*lease{},
			take: redis.NewScript(leaseLua), giveBack: redis.NewScript(giveBackLua),
		}
	}
}

// New returns a Limiter over rdb; a *redis.Client satisfies redis.Scripter.
// The client's timeouts bound each check: configure short ones so a dead
// Redis fails a request fast instead of holding it.
func New(rdb redis.Scripter, opts ...Option) *Limiter {
	l := &Limiter{rdb: rdb, script: redis.NewScript(slidingWindowLua), addScript: redis.NewScript(slidingWindowAddLua)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow checks rules atomically: the request is accepted only if every rule
// allows it, and only then is it counted against each. It returns an error
// wrapping ErrInvalidRule for a bad rule, for no rules, or for two rules on
// one key; otherwise any error is Redis's (unreachable, timed out), wrapped.
// It never retries: the client's own timeouts bound it.
//
// The script is sent by digest (EVALSHA); only the first check after Redis
// starts empty costs a second round trip to load it.
//
// With a LeaseTerm, a single rule of a limit of 200 or more may be answered
// from a lease this Limiter holds (lease.go): still at most Limit in any
// span of Window, but a slot another instance holds unspent is refused here
// until its term ends.
func (l *Limiter) Allow(ctx context.Context, rules ...Rule) (Decision, error) {
	if len(rules) == 1 && l.leases != nil && leaseCap(rules[0]) >= 2 {
		if err := rules[0].Validate(); err != nil {
			return Decision{}, err
		}
		return l.allowLeased(ctx, rules[0])
	}
	return l.allowRules(ctx, rules)
}

// allowRules is Allow with every rule checked in Redis, now.
func (l *Limiter) allowRules(ctx context.Context, rules []Rule) (Decision, error) {
	keys, args, err := scriptArgs(rules)
	if err != nil {
		return Decision{}, err
	}
	res, err := l.script.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("throttle %s: %w", keys[0], err)
	}
	if len(res) != 1+3*len(rules) {
		return Decision{}, fmt.Errorf("throttle %s: script answered %d values for %d rules", keys[0], len(res), len(rules))
	}
	return decide(rules, res), nil
}

// Entry is a stream entry to add only if a check allows the request.
type Entry struct {
	Stream string
	// MaxLen trims the stream to about this many entries (MAXLEN ~); 0
	// leaves it untrimmed.
	MaxLen int64
	// Values are the entry's field/value pairs, in order.
	Values []any
}

// AllowAdd is Allow followed, when the request is allowed, by an XADD of e,
// in the same atomic script: one round trip where Allow and XADD are two,
// and a denied request never reaches the stream. It returns the new entry's
// id when the request was allowed. Errors are Allow's; a failed XADD (a
// stream key of another type, say) is Redis's, wrapped, and the hit then
// stays counted, as it would have with an XADD of its own after Allow. The
// stream must live on the rules' Redis node.
func (l *Limiter) AllowAdd(ctx context.Context, e Entry, rules ...Rule) (Decision, string, error) {
	keys, args, err := scriptArgs(rules)
	if err != nil {
		return Decision{}, "", err
	}
	if e.Stream == "" || len(e.Values) == 0 || len(e.Values)%2 != 0 || e.MaxLen < 0 {
		return Decision{}, "", fmt.Errorf("%w: entry for stream %q needs field/value pairs and MaxLen >= 0", ErrInvalidRule, e.Stream)
	}
	keys = append(keys, e.Stream)
	args = append(args, e.MaxLen)
	args = append(args, e.Values...)
	raw, err := l.addScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return Decision{}, "", fmt.Errorf("throttle %s: %w", keys[0], err)
	}
	n := 1 + 3*len(rules)
	if len(raw) != n && len(raw) != n+1 {
		return Decision{}, "", fmt.Errorf("throttle %s: script answered %d values for %d rules", keys[0], len(raw), len(rules))
	}
	res, err := int64s(raw[:n])
	if err != nil {
		return Decision{}, "", fmt.Errorf("throttle %s: %w", keys[0], err)
	}
	d := decide(rules, res)
	if !d.Allowed {
		return d, "", nil
	}
	id, ok := raw[len(raw)-1].(string)
	if len(raw) != n+1 || !ok {
		return Decision{}, "", fmt.Errorf("throttle %s: allowed, but no entry id for %s", keys[0], e.Stream)
	}
	return d, id, nil
}

// scriptArgs are the script's keys and arguments for rules, after checking
// them.
func scriptArgs(rules []Rule) ([]string, []any, error) {
	if len(rules) == 0 {
		return nil, nil, fmt.Errorf("%w: no rules", ErrInvalidRule)
	}
	keys := make([]string, len(rules), len(rules)+1)
	args := make([]any, 0, 2*len(rules)+16)
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, nil, err
		}
		keys[i] = r.Key()
		// One log trimmed to two windows would lose hits the longer one needs.
		if j := slices.Index(keys[:i], keys[i]); j >= 0 {
			return nil, nil, fmt.Errorf("%w: rules %d and %d share key %q", ErrInvalidRule, j, i, keys[i])
		}
		args = append(args, r.Limit, r.Window.Microseconds())
	}
	return keys, args, nil
}

// int64s reads a script's reply values that must be integers.
func int64s(raw []any) ([]int64, error) {
	res := make([]int64, len(raw))
	for i, v := range raw {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("script answered %T at %d", v, i)
		}
		res[i] = n
	}
	return res, nil
}

// decide picks the rule a client should hear about from the script's reply.
func decide(rules []Rule, res []int64) Decision {
	allowed := res[0] == 1
	var d Decision
	for i, r := range rules {
		count := int(res[1+3*i])
		retry := time.Duration(res[2+3*i]) * time.Microsecond
		reset := time.Duration(res[3+3*i]) * time.Microsecond
		c := Decision{
			Allowed:    allowed,
			Limit:      r.Limit,
			Remaining:  max(r.Limit-count, 0),
			RetryAfter: retry,
			Reset:      reset,
			Rule:       r,
		}
		var better bool
		switch {
		case i == 0:
			better = true
		case allowed:
			better = c.Remaining < d.Remaining
		default:
			// The client must wait until every denying rule frees a slot.
			better = c.RetryAfter > d.RetryAfter
		}
		if better {
			d = c
		}
	}
	return d
}
