package pricestream

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// SlotsPrefix starts the key that counts one user's open streams across
// every gateway: a sorted set of stream ids scored by when each lapses.
const SlotsPrefix = "cp:stream:slots:"

// SlotsKey is the open streams of a subject (a throttle subject such as user:<sub>).
func SlotsKey(subject string) string { return SlotsPrefix + subject }

// acquire drops lapsed streams, then takes a slot if fewer than the cap are
// held. Time is Redis TIME, the one clock.
var acquire = redis.NewScript(`
local slots = KEYS[1]
local cap, ttl, stream = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if redis.call('ZCARD', slots) >= cap then
  local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
redis.call('ZADD', slots, now + ttl, stream)
redis.call('PEXPIRE', slots, ttl)
return {1, 0}
`)

// renew keeps the held slots of several subjects alive in one call. A slot
// that lapsed meanwhile is not taken again (XX): its user may have opened
// another stream in its place.
var renew = redis.NewScript(`
local ttl = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local arg = 2
for _, slots in ipairs(KEYS) do
  local n = tonumber(ARGV[arg])
  for i = arg + 1, arg + n do
    redis.call('ZADD', slots, 'XX', now + ttl, ARGV[i])
  end
  arg = arg + n + 1
  redis.call('PEXPIRE', slots, ttl)
end
return #KEYS
`)

// renewBatch is how many stream ids one renew call carries at most.
const renewBatch = 2000

// Slots caps the streams a subject holds open at once, across gateways.
// A slot lapses unless renewed within its TTL, so a gateway killed with
// open streams gives its slots back by itself. A gateway renews every slot
// it holds together (Keep), a few subjects to a script, rather than each
// stream its own: the slots' Redis work grows with the users streaming
// through a gateway, not with their streams.
type Slots struct {
	rdb *redis.Client
	cap int
	ttl time.Duration

	mu sync.Mutex
	// held is subject → the stream ids this gateway holds a slot for.
	held map[string]map[string]struct{}
}

// NewSlots caps each subject at cap streams, each slot lapsing ttl after
// its last renewal.
func NewSlots(rdb *redis.Client, cap int, ttl time.Duration) *Slots {
	return &Slots{rdb: rdb, cap: cap, ttl: ttl, held: map[string]map[string]struct{}{}}
}

// Cap is the most streams one subject may hold open.
func (s *Slots) Cap() int { return s.cap }

// Acquire takes a slot for stream id, or says how long until one may lapse.
func (s *Slots) Acquire(ctx context.Context, subject, id string) (ok bool, retry time.Duration, err error) {
	res, err := acquire.Run(ctx, s.rdb, []string{SlotsKey(subject)}, s.cap, s.ttl.Milliseconds(), id).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("take a stream slot: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("take a stream slot: unexpected reply %v", res)
	}
	if res[0] != 1 {
		return false, time.Duration(res[1]) * time.Millisecond, nil
	}
	s.mu.Lock()
	if s.held[subject] == nil {
		s.held[subject] = map[string]struct{}{}
	}
	s.held[subject][id] = struct{}{}
	s.mu.Unlock()
	return true, 0, nil
}

// Release gives stream id's slot back.
func (s *Slots) Release(ctx context.Context, subject, id string) error {
	s.mu.Lock()
	delete(s.held[subject], id)
	if len(s.held[subject]) == 0 {
		delete(s.held, subject)
	}
	s.mu.Unlock()
	if err := s.rdb.ZRem(ctx, SlotsKey(subject), id).Err(); err != nil {
		return fmt.Errorf("release a stream slot: %w", err)
	}
	return nil
}

// Keep renews every held slot a third of the TTL apart until ctx is done,
// so a slot survives two failed renewals in a row.
func (s *Slots) Keep(ctx context.Context, log *zap.Logger) {
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			rctx, cancel := context.WithTimeout(ctx, s.ttl/3)
			if err := s.Renew(rctx); err != nil {
				log.Warn("renewing the stream slots failed; they lapse unless the next renewal succeeds", zap.Error(err))
			}
			cancel()
		}
	}
}

// Renew renews every slot this gateway holds now.
func (s *Slots) Renew(ctx context.Context) error {
	for _, call := range s.renewCalls() {
		if err := renew.Run(ctx, s.rdb, call.keys, call.args...).Err(); err != nil {
			return fmt.Errorf("renew the stream slots: %w", err)
		}
	}
	return nil
}

type renewCall struct {
	keys []string
	args []any
}

// renewCalls lays the held slots out as renew's KEYS and ARGV (the TTL,
// then per key its count of ids and the ids), at most renewBatch ids a call.
func (s *Slots) renewCalls() []renewCall {
	s.mu.Lock()
	subjects := make([]string, 0, len(s.held))
	ids := make(map[string][]string, len(s.held))
	for subject, held := range s.held {
		subjects = append(subjects, subject)
		for id := range held {
			ids[subject] = append(ids[subject], id)
		}
	}
	s.mu.Unlock()
	sort.Strings(subjects)
	var calls []renewCall
	cur, n := renewCall{}, 0
	for _, subject := range subjects {
		rest := ids[subject]
		for len(rest) > 0 {
			if n == renewBatch || cur.keys == nil {
				if cur.keys != nil {
					calls = append(calls, cur)
				}
				cur, n = renewCall{args: []any{strconv.FormatInt(s.ttl.Milliseconds(), 10)}}, 0
			}
			take := min(len(rest), renewBatch-n)
			cur.keys = append(cur.keys, SlotsKey(subject))
			cur.args = append(cur.args, take)
			for _, id := range rest[:take] {
				cur.args = append(cur.args, id)
			}
			rest, n = rest[take:], n+take
		}
	}
	if cur.keys != nil {
		calls = append(calls, cur)
	}
	return calls
}
