package worker

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/price"
	"cryptopulse/libs/redisconn"
)

// waker decides when the flusher claims: at once when a batch fills, at the
// earliest due time it knows of (a timer, re-armed when an earlier time is
// announced on price.WakeChannel by any fetcher), and on a slow safety poll.
// An idle fetcher therefore costs Redis one claim per safety poll.
type waker struct {
	rdb  *redis.Client
	log  *zap.Logger
	kick chan struct{}

	mu    sync.Mutex
	next  time.Time // when the timer fires; zero when none is armed
	timer *time.Timer
}

func newWaker(rdb *redis.Client, log *zap.Logger) *waker {
	return &waker{rdb: rdb, log: log, kick: make(chan struct{}, 1)}
}

// now wakes the flusher at once.
func (w *waker) now() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// at wakes the flusher at t, unless an earlier wake-up is armed.
func (w *waker) at(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		w.now()
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.next.IsZero() && !t.Before(w.next) {
		return
	}
	w.next = t
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(d, func() {
		w.mu.Lock()
		if w.next.Equal(t) {
			w.next = time.Time{}
		}
		w.mu.Unlock()
		w.now()
	})
}

// wait blocks until it is time to claim, or returns false when ctx is done.
func (w *waker) wait(ctx context.Context, poll time.Duration) bool {
	t := time.NewTimer(poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-w.kick:
	case <-t.C:
	}
	return true
}

// listen follows price.WakeChannel until ctx is done. Every (re)subscription
// wakes the flusher too: announcements sent while it was away are lost.
func (w *waker) listen(ctx context.Context) {
	redisconn.Receive(ctx, w.rdb.Subscribe(ctx, price.WakeChannel), w.log, "wake-up", func(msg any) {
		switch m := msg.(type) {
		case *redis.Subscription:
			w.now()
		case *redis.Message:
			if t, ok := parseWake(m.Payload, time.Now()); ok {
				w.at(t)
			}
		}
	})
}

// parseWake turns "<due ms> <now ms>" (Redis time) into a local time.
func parseWake(payload string, local time.Time) (time.Time, bool) {
	dueText, nowText, ok := strings.Cut(payload, " ")
	if !ok {
		return time.Time{}, false
	}
	due, err1 := strconv.ParseInt(dueText, 10, 64)
	now, err2 := strconv.ParseInt(nowText, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, false
	}
	return local.Add(time.Duration(due-now) * time.Millisecond), true
}
