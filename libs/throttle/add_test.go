package throttle_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"cryptopulse/libs/throttle"
	"cryptopulse/testkit"
)

// AllowAdd puts the entry on the stream exactly when the check allows the
// request, and answers the same decisions Allow would.
func TestAllowAddQueuesOnlyAllowedRequests(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "add", Limit: 3, Window: time.Minute}
	e := throttle.Entry{Stream: "cp:test:stream", MaxLen: 1000, Values: []any{"coin", "bitcoin", "timeout_ms", int64(8000)}}
	var ids []string
	for i := range 5 {
		d, id, err := l.AllowAdd(ctx, e, rule)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 3; d.Allowed != want || (id != "") != want {
			t.Fatalf("hit %d: allowed %v id %q, want allowed %v with an id only then", i+1, d.Allowed, id, want)
		}
		if i < 3 && (d.Remaining != 2-i || d.Reset != time.Minute) {
			t.Errorf("hit %d: %+v", i+1, d)
		}
		if i >= 3 && (d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > time.Minute) {
			t.Errorf("denied hit %d: %+v", i+1, d)
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	msgs, err := rdb.XRange(ctx, e.Stream, "-", "+").Result()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("stream holds %d entries (%v), want 3", len(msgs), err)
	}
	for i, m := range msgs {
		if m.ID != ids[i] || m.Values["coin"] != "bitcoin" || m.Values["timeout_ms"] != "8000" {
			t.Errorf("entry %d: %s %v, want id %s with the fields given", i, m.ID, m.Values, ids[i])
		}
	}
	if n, _ := rdb.ZCard(ctx, rule.Key()).Result(); n != 3 {
		t.Errorf("log holds %d hits, want 3", n)
	}
}

// Concurrent AllowAdds on one budget queue exactly the limit, never more.
func TestAllowAddHoldsTheLimitUnderConcurrency(t *testing.T) {
	r := testkit.StartRedis(t)
	// The default client: 200 callers queue for its pool, and on a loaded
	// machine the fast client's 300ms pool timeout fails some of them
	// before the limit is ever in question.
	rdb := r.Client(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "race", Limit: 25, Window: time.Minute}
	e := throttle.Entry{Stream: "cp:test:race", Values: []any{"k", "v"}}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := l.AllowAdd(ctx, e, rule); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, _ := rdb.XLen(ctx, e.Stream).Result(); n != 25 {
		t.Errorf("stream holds %d entries, want exactly the limit of 25", n)
	}
}

func TestAllowAddRefusesABadEntry(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.FastClient(t)
	l := throttle.New(rdb)
	ctx := ctxFor(t)
	rule := throttle.Rule{Policy: "test", Subject: "bad", Limit: 3, Window: time.Minute}
	for _, e := range []throttle.Entry{
		{Values: []any{"k", "v"}},
		{Stream: "s"},
		{Stream: "s", Values: []any{"k"}},
		{Stream: "s", MaxLen: -1, Values: []any{"k", "v"}},
	} {
		if _, _, err := l.AllowAdd(ctx, e, rule); !errors.Is(err, throttle.ErrInvalidRule) {
			t.Errorf("%+v: err %v, want ErrInvalidRule", e, err)
		}
	}
	if _, _, err := l.AllowAdd(ctx, throttle.Entry{Stream: "s", Values: []any{"k", "v"}}); !errors.Is(err, throttle.ErrInvalidRule) {
		t.Errorf("no rules: err %v, want ErrInvalidRule", err)
	}
	// A stream key of another type fails in Redis, as XADD alone would.
	if err := rdb.Set(ctx, "not-a-stream", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.AllowAdd(ctx, throttle.Entry{Stream: "not-a-stream", Values: []any{"k", "v"}}, rule); err == nil || errors.Is(err, throttle.ErrInvalidRule) {
		t.Errorf("XADD to a string: err %v, want Redis's error", err)
	}
	if keys, _ := rdb.Keys(ctx, "s").Result(); len(keys) != 0 {
		t.Errorf("a refused entry reached Redis: %v", keys)
	}
}
