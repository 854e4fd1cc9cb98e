// Package pricereq is the one place a gateway builds a price request and puts
// it on the request stream: the single price route (through the throttle
// script), the many-coins route and the reply hub's resend after a Redis
// restart all go through a Publisher, so every entry carries the same fields
// and the stream is always trimmed (XADD MAXLEN ~).
package pricereq

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
)

// Publisher builds and adds the price requests of one gateway instance.
type Publisher struct {
	gateway string
	timeout time.Duration
	maxLen  int64
}

// New returns a Publisher for gateway instance gateway whose requests wait
// timeout for their answer, on a stream trimmed to about maxLen entries.
func New(gateway string, timeout time.Duration, maxLen int64) (Publisher, error) {
	switch {
	case !price.ValidInstanceID(gateway):
		return Publisher{}, errors.New("pricereq: gateway instance id cannot be part of a channel name")
	case timeout <= 0:
		return Publisher{}, errors.New("pricereq: timeout must be positive")
	case maxLen <= 0:
		// An untrimmed stream grows without bound while fetchers are away.
		return Publisher{}, errors.New("pricereq: stream maxlen must be positive")
	}
	return Publisher{gateway: gateway, timeout: timeout, maxLen: maxLen}, nil
}

// Gateway is the instance id the requests' reply channels carry.
func (p Publisher) Gateway() string { return p.gateway }

// Request is a new request for coin in currency, answered on this gateway's
// reply channel for its id.
func (p Publisher) Request(coin, currency string) price.Request {
	id := web.NewID()
	return price.Request{
		ID: id, Coin: coin, Currency: currency,
		ReplyTo:   price.ReplyChannel(p.gateway, id),
		TimeoutMS: p.timeout.Milliseconds(), Gateway: p.gateway,
	}
}

// Entry is r as the stream entry the throttle script adds when it allows
// the request.
func (p Publisher) Entry(r price.Request) throttle.Entry {
	return throttle.Entry{Stream: price.StreamKey, MaxLen: p.maxLen, Values: r.Values()}
}

// Add puts r on the stream through c (a client or a pipeline) and returns
// the command holding the new entry's id.
func (p Publisher) Add(ctx context.Context, c redis.Cmdable, r price.Request) *redis.StringCmd {
	return c.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, MaxLen: p.maxLen, Approx: true, Values: r.Values()})
}
