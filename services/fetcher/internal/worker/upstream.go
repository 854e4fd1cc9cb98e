package worker

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cryptopulse/services/fetcher/internal/batch"
	"cryptopulse/services/fetcher/internal/coingecko"
)

// Upstream is the price source the flusher calls.
type Upstream interface {
	// SimplePrice returns prices or a *coingecko.Error.
	SimplePrice(ctx context.Context, ids, currencies []string) (coingecko.Quote, error)
}

var _ Upstream = (*coingecko.Client)(nil)

// errNoTime answers batches whose clients give up before a call could end.
var errNoTime = &coingecko.Error{Kind: coingecko.Timeout, Msg: "no time left before the clients' deadline"}

// caller makes one flush's upstream call. The claim already spent the first
// call's slot; each retry waits for a slot of its own from the shared
// budget (and for CoinGecko's cooldown after a 429), never past the
// deadline.
type caller struct {
	store    *batch.Store
	upstream Upstream
	timeout  time.Duration
	attempts int
	log      *zap.Logger
	calls    *prometheus.CounterVec
}

func (c *caller) fetch(ctx context.Context, coins, currencies []string, deadline time.Time) (coingecko.Quote, error) {
	coins, currencies = unique(coins), unique(currencies)
	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			if err := c.waitSlot(ctx, deadline); err != nil {
				return nil, retryOutcome(last, err)
			}
		}
		remaining := time.Until(deadline)
		if remaining < minCallTime {
			if last != nil {
				return nil, last
			}
			return nil, errNoTime
		}
		q, ce := c.once(ctx, coins, currencies, min(c.timeout, remaining), attempt)
		if ce == nil {
			return q, nil
		}
		last = ce
		switch {
		case ce.Kind == coingecko.RateLimited:
			// once shared CoinGecko's cooldown: the retry's slot comes after it.
		case !ce.Retryable():
			return nil, ce
		default:
			backoff := time.Duration(100<<attempt) * time.Millisecond
			if time.Until(deadline) < backoff+minCallTime {
				return nil, ce
			}
			time.Sleep(backoff)
		}
	}
	return nil, last
}

// once makes one upstream call whose slot is spent already, counts its
// outcome and, after a 429, makes every fetcher hold off: the next slot
// comes after CoinGecko's cooldown.
func (c *caller) once(ctx context.Context, coins, currencies []string, timeout time.Duration, attempt int) (coingecko.Quote, *coingecko.Error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	q, err := c.upstream.SimplePrice(cctx, coins, currencies)
	cancel()
	if err == nil {
		c.calls.WithLabelValues("ok").Inc()
		return q, nil
	}
	var ce *coingecko.Error
	if !errors.As(err, &ce) {
		ce = &coingecko.Error{Kind: coingecko.Failed, Msg: err.Error()}
	}
	c.calls.WithLabelValues(string(ce.Kind)).Inc()
	c.log.Warn("upstream call failed", zap.Int("attempt", attempt), zap.Error(ce))
	if ce.Kind == coingecko.RateLimited {
		if err := c.store.Cooldown(ctx, ce.RetryAfter); err != nil {
			c.log.Warn("sharing CoinGecko's cooldown failed", zap.Error(err))
		}
	}
	return nil, ce
}

// waitSlot waits for an upstream slot that comes before the deadline.
func (c *caller) waitSlot(ctx context.Context, deadline time.Time) error {
	for {
		wait, err := c.store.TakeSlot(ctx)
		if err != nil {
			return err
		}
		if wait == 0 {
			return nil
		}
		if time.Now().Add(wait + minCallTime).After(deadline) {
			return &coingecko.Error{Kind: coingecko.RateLimited, Status: http.StatusTooManyRequests, RetryAfter: wait,
				Msg: "no upstream slot before the clients' deadline"}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// retryOutcome is what a flush reports when no retry slot came: CoinGecko's
// own failure, unless it was a 429, whose answer says when to come back.
func retryOutcome(last, slotErr error) error {
	var ce *coingecko.Error
	if errors.As(last, &ce) && ce.Kind == coingecko.RateLimited {
		return slotErr
	}
	if last != nil {
		return last
	}
	return slotErr
}

func unique(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
