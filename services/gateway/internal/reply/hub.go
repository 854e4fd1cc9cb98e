// Package reply delivers fetchers' answers to the requests waiting in this
// gateway. One pattern subscription carries every reply meant for this
// instance, so ten thousand waiting clients cost one Redis connection, not
// ten thousand. Publishes are fire-and-forget in Redis, so a reply sent while
// the subscription was down (a reconnect, a Redis restart) would be lost; the
// fetcher therefore also keeps every answer under its result key for a while,
// and the hub reads those keys for requests that have waited too long.
package reply

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/redisconn"
	"cryptopulse/services/gateway/internal/pricereq"
)

// Hub routes replies to waiting requests.
type Hub struct {
	rdb *redis.Client
	pub pricereq.Publisher
	log *zap.Logger
	// SweepAfter is how long a request waits for its publish before the hub
	// also looks for its result key; SweepEvery is how often it looks.
	sweepAfter, sweepEvery time.Duration

	mu      sync.Mutex
	waiters map[string]*waiter
	ready   chan struct{}
	once    sync.Once
	// runID is the Redis server's run_id at the last subscription: a new
	// one means Redis restarted (or failed over) under the waiters.
	runID string
}

type waiter struct {
	ch    chan price.Reply
	since time.Time
	// checked is when the sweep last read this request's result key.
	checked time.Time
	// The stream entry the request went out as, and the request, so a
	// request lost with a Redis restart can be sent again (see Sent).
	entry    string
	req      price.Request
	deadline time.Time
}

// NewHub returns a Hub for pub's gateway instance, which sends lost requests
// again through pub; call Run to start it.
func NewHub(rdb *redis.Client, pub pricereq.Publisher, log *zap.Logger) *Hub {
	return &Hub{
		rdb: rdb, pub: pub, log: log,
		sweepAfter: 750 * time.Millisecond, sweepEvery: 500 * time.Millisecond,
		waiters: map[string]*waiter{},
		ready:   make(chan struct{}),
	}
}

// Ready is closed once the subscription has been confirmed the first time
// and the first look for lost requests (which learns the run_id) is done.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Register starts waiting for the reply to requestID. The returned channel
// receives at most one reply; cancel must be called when done waiting.
func (h *Hub) Register(requestID string) (replies <-chan price.Reply, cancel func()) {
	w := &waiter{ch: make(chan price.Reply, 1), since: time.Now()}
	h.mu.Lock()
	h.waiters[requestID] = w
	h.mu.Unlock()
	return w.ch, func() {
		h.mu.Lock()
		delete(h.waiters, requestID)
		h.mu.Unlock()
	}
}

// Sent records the stream entry req went out as and its client's deadline. If Redis restarts empty while the request waits, the
// entry and its batch are gone and no reply would ever come: the hub then
// adds it again, and the client still gets its answer instead of a 504.
func (h *Hub) Sent(entryID string, req price.Request, deadline time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.waiters[req.ID]; w != nil {
		w.entry, w.req, w.deadline = entryID, req, deadline
	}
}

// Waiting is how many requests wait for a reply now.
func (h *Hub) Waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters)
}

func (h *Hub) deliver(requestID string, payload string) {
	var r price.Reply
	if err := json.Unmarshal([]byte(payload), &r); err != nil {
		h.log.Warn("undecodable reply", zap.String("requestId", requestID), zap.Error(err))
		return
	}
	h.mu.Lock()
	w := h.waiters[requestID]
	delete(h.waiters, requestID)
	h.mu.Unlock()
	if w != nil {
		w.ch <- r
	}
}

// Run subscribes and delivers until ctx is done. It never gives up on Redis:
// while Redis is down it retries, and on every (re)subscription it sweeps for
// replies published while it was away.
func (h *Hub) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.sweep(ctx, h.sweepAfter)
			}
		}
	}()
	defer wg.Wait()

	pattern := price.ReplyPattern(h.pub.Gateway())
	prefix := price.ReplyChannel(h.pub.Gateway(), "")
	redisconn.Receive(ctx, h.rdb.PSubscribe(ctx, pattern), h.log, "reply", func(msg any) {
		switch m := msg.(type) {
		case *redis.Subscription:
			h.log.Debug("reply subscription confirmed", zap.String("pattern", pattern))
			h.sweep(ctx, 0)
			h.resendLost(ctx)
			// Ready only once the server's run_id is known: a request sent
			// before that could not be told lost by a restart that follows.
			h.once.Do(func() { close(h.ready) })
		case *redis.Message:
			if id, ok := strings.CutPrefix(m.Channel, prefix); ok {
				h.deliver(id, m.Payload)
			}
		}
	})
}

// recheckEvery is how often one waiting request's result key is read.
const recheckEvery = 2 * time.Second

// sweep reads the result keys of requests that have waited longer than age.
func (h *Hub) sweep(ctx context.Context, age time.Duration) {
	now := time.Now()
	cutoff := now.Add(-age)
	h.mu.Lock()
	var ids []string
	for id, w := range h.waiters {
		// A request waiting out a batch window would otherwise be read on
		// every tick; after a resubscribe (age 0) everything is read.
		if !w.since.After(cutoff) && (age == 0 || now.Sub(w.checked) >= recheckEvery) {
			w.checked = now
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		ids = ids[n:]
		keys := make([]string, len(chunk))
		for i, id := range chunk {
			keys[i] = price.ResultKey(id)
		}
		vals, err := h.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				h.deliver(chunk[i], s)
			}
		}
	}
}

// resendMin is the least time left worth sending a lost request again.
const resendMin = 500 * time.Millisecond

// resendLost adds again the requests whose stream entries Redis lost: after
// a restart without data (a new run_id), an entry that is no longer in the
// stream and has no result will never be answered. The new entry carries
// the client's remaining time, so fetchers still answer before it gives up.
func (h *Hub) resendLost(ctx context.Context) {
	info, err := h.rdb.Info(ctx, "server").Result()
	if err != nil {
		return
	}
	runID := infoField(info, "run_id")
	h.mu.Lock()
	prev := h.runID
	h.runID = runID
	type sent struct {
		entry    string
		req      price.Request
		deadline time.Time
	}
	var check []sent
	for _, w := range h.waiters {
		if w.entry != "" {
			check = append(check, sent{w.entry, w.req, w.deadline})
		}
	}
	h.mu.Unlock()
	if prev == "" || prev == runID || len(check) == 0 {
		return
	}
	found := make([]*redis.XMessageSliceCmd, len(check))
	if _, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range check {
			found[i] = p.XRangeN(ctx, price.StreamKey, c.entry, c.entry, 1)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		h.log.Warn("checking requests after a Redis restart failed", zap.Error(err))
		return
	}
	resent := 0
	for i, c := range check {
		left := time.Until(c.deadline)
		if len(found[i].Val()) > 0 || left < resendMin {
			continue
		}
		req := c.req
		req.TimeoutMS = left.Milliseconds()
		entry, err := h.pub.Add(ctx, h.rdb, req).Result()
		if err != nil {
			h.log.Warn("sending a lost request again failed", zap.String("requestId", req.ID), zap.Error(err))
			continue
		}
		h.Sent(entry, req, c.deadline)
		resent++
	}
	if resent > 0 {
		h.log.Info("Redis restarted without data: sent the requests it lost again", zap.Int("requests", resent))
	}
}

// infoField reads one "key:value" line of an INFO reply.
func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}
