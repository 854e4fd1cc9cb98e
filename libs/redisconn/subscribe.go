package redisconn

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Receive reads ps until ctx is done and hands every message to handle: a
// *redis.Subscription on each (re)subscription, a *redis.Message for each
// publish. It never gives up on Redis: go-redis reconnects and subscribes
// again by itself on the next read, and a failed read is retried after a
// short pause. It closes ps when ctx is done, since a blocked read does not
// watch ctx.
func Receive(ctx context.Context, ps *redis.PubSub, log *zap.Logger, what string, handle func(msg any)) {
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			log.Warn(what+" subscription interrupted; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		handle(msg)
	}
}
