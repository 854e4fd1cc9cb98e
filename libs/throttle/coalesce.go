package throttle

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// coalescer sends the checks that arrive while another round trip is in
// flight together, as one pipeline: under load a gateway's checks cost one
// write and one read for many requests rather than one each, on the gateway
// and on Redis (the throttle's round trip was ~40 % of a gateway's CPU on a
// hot read). Each check is still its own atomic script, so nothing about
// the limits changes, and an idle limiter sends a check at once: there is
// no timer, only the queue that forms behind a call already on the wire.
type coalescer struct {
	rdb  redis.Scripter
	pipe func() redis.Pipeliner
	// maxBatch bounds one pipeline, so one slow round trip holds few checks.
	maxBatch int

	mu      sync.Mutex
	queue   []*scriptCall
	running bool
}

// scriptCall is one check waiting for its pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	// lead hands the next pipeline to this call's goroutine; done is
	// closed once cmd holds the reply.
	lead, done chan struct{}
}

// run evaluates script for keys and args, in a pipeline with whatever other
// checks are waiting. The pipeline's round trip is bounded by the Redis
// client's own timeouts; ctx ending stops this caller's wait.
func (c *coalescer) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	call := &scriptCall{script: script, keys: keys, args: args, lead: make(chan struct{}, 1), done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, call)
	if !c.running {
		c.running = true
		c.mu.Unlock()
		c.flush(ctx)
	} else {
		c.mu.Unlock()
	}
	for {
		select {
		case <-call.done:
			return call.cmd
		case <-call.lead:
			c.flush(ctx)
		case <-ctx.Done():
			c.abandon(call)
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(ctx.Err())
			return cmd
		}
	}
}

// abandon takes a call whose caller stopped waiting out of the queue. If
// it was handed the next pipeline, the next call gets it instead, so the
// calls behind it are never left without a sender.
func (c *coalescer) abandon(call *scriptCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.queue, call)
	if i < 0 {
		return // in a pipeline already, which goes on without it
	}
	c.queue = slices.Delete(c.queue, i, i+1)
	select {
	case <-call.lead:
		c.handOnLocked()
	default:
	}
}

// handOnLocked gives the next pipeline to the first waiting call, or marks
// the coalescer idle.
func (c *coalescer) handOnLocked() {
	if len(c.queue) == 0 {
		c.running = false
		return
	}
	c.queue[0].lead <- struct{}{}
}

// flush sends the queue's first maxBatch calls as one pipeline, then hands
// the rest to the first of them that is still waiting: the goroutine that
// sends a pipeline is never held for other callers' later ones.
func (c *coalescer) flush(ctx context.Context) {
	c.mu.Lock()
	n := min(len(c.queue), c.maxBatch)
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	c.mu.Unlock()

	// The pipeline serves other callers too: it must not end with this
	// caller's context.
	ctx = context.WithoutCancel(ctx)
	if len(batch) == 1 {
		b := batch[0]
		b.cmd = b.script.Run(ctx, c.rdb, b.keys, b.args...)
		close(b.done)
	} else if len(batch) > 1 {
		pipe := c.pipe()
		for _, b := range batch {
			b.cmd = b.script.EvalSha(ctx, pipe, b.keys, b.args...)
		}
		_, _ = pipe.Exec(ctx)
		for _, b := range batch {
			// A Redis that restarted empty has forgotten the script: load it
			// the way Script.Run does, once, then answer.
			if redis.HasErrorPrefix(b.cmd.Err(), "NOSCRIPT") {
				b.cmd = b.script.Run(ctx, c.rdb, b.keys, b.args...)
			}
			close(b.done)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.handOnLocked()
}
