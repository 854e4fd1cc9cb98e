package backlog

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

// scrape registers c alone and returns every sample it sent, by name.
func scrape(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	return out
}

func expect(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for name, v := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing; got %v", name, got)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", name, g, v)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected %s = %v", name, got[name])
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// add appends n entries to stream and returns their ids.
func add(t *testing.T, rdb *redis.Client, stream string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{"k", "v"}}).Result()
		must(t, err)
		ids = append(ids, id)
	}
	return ids
}

// read delivers up to n entries of stream to one consumer of group.
func read(t *testing.T, rdb *redis.Client, stream, group string, n int) []string {
	t.Helper()
	res, err := rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{
		Group: group, Consumer: "c1", Streams: []string{stream, ">"}, Count: int64(n),
	}).Result()
	must(t, err)
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestEmptyRedisHasNoBacklog(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	expect(t, scrape(t, New(rdb, 0)), map[string]float64{
		"fetcher_backlog_up": 1, "fetcher_stream_lag": 0, "fetcher_stream_pending": 0,
		"fetcher_records_backlog": 0, "fetcher_open_batches": 0,
	})
}

func TestBacklogFollowsTheStreams(t *testing.T) {
	ctx := context.Background()
	rdb := testkit.StartRedis(t).Client(t)
	c := New(rdb, 0)

	// Requests published before any fetcher created its group: all lag.
	add(t, rdb, price.StreamKey, 2)
	expect(t, scrape(t, c), map[string]float64{
		"fetcher_backlog_up": 1, "fetcher_stream_lag": 2, "fetcher_stream_pending": 0,
		"fetcher_records_backlog": 0, "fetcher_open_batches": 0,
	})

	must(t, rdb.XGroupCreate(ctx, price.StreamKey, price.Group, "0").Err())
	add(t, rdb, price.StreamKey, 3)
	got := read(t, rdb, price.StreamKey, price.Group, 2)
	must(t, rdb.XAck(ctx, price.StreamKey, price.Group, got[0]).Err())

	must(t, rdb.XGroupCreateMkStream(ctx, price.RecordsStream, price.RecordsGroup, "0").Err())
	add(t, rdb, price.RecordsStream, 4)
	rec := read(t, rdb, price.RecordsStream, price.RecordsGroup, 2)
	// Written to Postgres: the persister acknowledges and deletes it.
	must(t, rdb.XAck(ctx, price.RecordsStream, price.RecordsGroup, rec[0]).Err())
	must(t, rdb.XDel(ctx, price.RecordsStream, rec[0]).Err())

	must(t, rdb.ZAdd(ctx, price.DueKey, redis.Z{Score: 1, Member: "bitcoin:usd:1"}, redis.Z{Score: 2, Member: "ethereum:usd:2"}).Err())

	expect(t, scrape(t, c), map[string]float64{
		"fetcher_backlog_up":      1,
		"fetcher_stream_lag":      3, // 5 published, 2 delivered
		"fetcher_stream_pending":  1, // 2 delivered, 1 acknowledged
		"fetcher_records_backlog": 3, // 4 written to the stream, 1 in Postgres
		"fetcher_open_batches":    2,
	})
}

// When Redis cannot tell a group's lag (an undelivered entry was deleted),
// the request lag is left out rather than guessed, and the records backlog
// falls back to the stream's length.
func TestUnknownLag(t *testing.T) {
	ctx := context.Background()
	rdb := testkit.StartRedis(t).Client(t)
	for _, s := range []struct{ stream, group string }{{price.StreamKey, price.Group}, {price.RecordsStream, price.RecordsGroup}} {
		must(t, rdb.XGroupCreateMkStream(ctx, s.stream, s.group, "0").Err())
		ids := add(t, rdb, s.stream, 3)
		must(t, rdb.XDel(ctx, s.stream, ids[2]).Err())
		gs, err := rdb.XInfoGroups(ctx, s.stream).Result()
		must(t, err)
		if gs[0].Lag != -1 {
			t.Fatalf("set-up: Redis still knows the lag of %s (%d): the fallback is not exercised", s.stream, gs[0].Lag)
		}
	}
	expect(t, scrape(t, New(rdb, 0)), map[string]float64{
		"fetcher_backlog_up": 1, "fetcher_stream_pending": 0, "fetcher_records_backlog": 2, "fetcher_open_batches": 0,
	})
}

func TestRedisDownReportsOnlyUp0(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.Client(t)
	c := New(rdb, 0)
	r.Stop(t)
	start := time.Now()
	got := scrape(t, c)
	if took := time.Since(start); took > time.Second {
		t.Errorf("scrape with Redis stopped took %s", took)
	}
	expect(t, got, map[string]float64{"fetcher_backlog_up": 0})
	r.Start(t)
	if v := scrape(t, c)["fetcher_backlog_up"]; v != 1 {
		t.Errorf("after Redis came back: fetcher_backlog_up = %v", v)
	}
}

// A Redis that accepts connections and never answers must not hold the
// scrape longer than the timeout, whatever the client's own read timeout.
func TestHungRedisDoesNotHoldTheScrape(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: 10 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	start := time.Now()
	got := scrape(t, New(rdb, 200*time.Millisecond))
	if took := time.Since(start); took > time.Second {
		t.Errorf("scrape against a hung Redis took %s (timeout 200ms)", took)
	}
	expect(t, got, map[string]float64{"fetcher_backlog_up": 0})
}
