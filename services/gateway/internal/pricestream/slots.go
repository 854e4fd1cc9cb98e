package pricestream

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// SlotsPrefix starts the key that counts one user's open streams across
// every gateway: a sorted set of stream ids scored by when each lapses.
const SlotsPrefix = "cp:stream:slots:"

// SlotsKey is the open streams of a subject (a throttle subject such as user:<sub>).
func SlotsKey(subject string) string { return SlotsPrefix + subject }

// acquire drops lapsed streams, then takes a slot if fewer than the cap are
// held. Time is Redis TIME, the one clock. KEYS: slots. ARGV: cap, ttl ms,
// stream id. Returns {1, 0} or {0, ms until the oldest slot lapses}.
var acquire = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, 0}
`)

// renew keeps a held slot alive. KEYS: slots. ARGV: ttl ms, stream id.
var renew = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local held = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return held
`)

// Slots caps the streams a subject holds open at once, across gateways.
// A slot lapses unless renewed within its TTL, so a gateway killed with
// open streams gives its slots back by itself.
type Slots struct {
	RDB *redis.Client
	Cap int
	TTL time.Duration
}

// Acquire takes a slot for stream id, or says how long until one may lapse.
func (s Slots) Acquire(ctx context.Context, subject, id string) (ok bool, retry time.Duration, err error) {
	res, err := acquire.Run(ctx, s.RDB, []string{SlotsKey(subject)}, s.Cap, s.TTL.Milliseconds(), id).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("take a stream slot: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("take a stream slot: unexpected reply %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

// Renew keeps stream id's slot.
func (s Slots) Renew(ctx context.Context, subject, id string) error {
	if err := renew.Run(ctx, s.RDB, []string{SlotsKey(subject)}, s.TTL.Milliseconds(), id).Err(); err != nil {
		return fmt.Errorf("renew a stream slot: %w", err)
	}
	return nil
}

// Release gives stream id's slot back.
func (s Slots) Release(ctx context.Context, subject, id string) error {
	if err := s.RDB.ZRem(ctx, SlotsKey(subject), id).Err(); err != nil {
		return fmt.Errorf("release a stream slot: %w", err)
	}
	return nil
}
