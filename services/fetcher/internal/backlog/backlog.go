// Package backlog exports, at scrape time, how much work waits in Redis: price
// requests no fetcher has read or answered yet, price records not yet in
// Postgres, and batches still open. These live in Redis, not in any one
// fetcher, so every fetcher reports the same numbers; dashboards take max()
// across instances.
package backlog

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
)

// DefaultTimeout bounds one scrape's Redis reads: well under Prometheus's
// default scrape timeout (10 s), so a slow Redis costs a scrape a moment,
// never the whole scrape.
const DefaultTimeout = 500 * time.Millisecond

// Collector is a prometheus.Collector reading the backlog from Redis on
// every scrape. When Redis does not answer within Timeout it reports only
// fetcher_backlog_up 0.
type Collector struct {
	rdb     *redis.Client
	timeout time.Duration

	up, lag, pending, records, open *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector reading through rdb; timeout 0 means DefaultTimeout.
func New(rdb *redis.Client, timeout time.Duration) *Collector {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Collector{
		rdb: rdb, timeout: timeout,
		up: prometheus.NewDesc("fetcher_backlog_up",
			"1 if the last scrape read the backlog from Redis, 0 if Redis did not answer in time.", nil, nil),
		lag: prometheus.NewDesc("fetcher_stream_lag",
			"Price requests in "+price.StreamKey+" not yet delivered to the "+price.Group+" group (XINFO GROUPS lag).", nil, nil),
		pending: prometheus.NewDesc("fetcher_stream_pending",
			"Price requests delivered to a fetcher and not yet acknowledged (pending in the "+price.Group+" group).", nil, nil),
		records: prometheus.NewDesc("fetcher_records_backlog",
			"Price records in "+price.RecordsStream+" not yet written to Postgres (lag plus pending of the "+price.RecordsGroup+" group).", nil, nil),
		open: prometheus.NewDesc("fetcher_open_batches",
			"Batches open or being flushed now (ZCARD "+price.DueKey+").", nil, nil),
	}
}

// Describe sends the descriptors of every metric Collect may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.lag, c.pending, c.records, c.open} {
		ch <- d
	}
}

// Collect reads Redis and sends the backlog, or only fetcher_backlog_up 0.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	// go-redis bounds a read by its own ReadTimeout, not by ctx (unless
	// ContextTimeoutEnabled), so wait on the answer here to keep the bound
	// whatever the client's options.
	done := make(chan snapshot, 1)
	go func() { done <- c.read(ctx) }()
	var s snapshot
	select {
	case s = <-done:
	case <-ctx.Done():
		s.err = ctx.Err()
	}
	if s.err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	if s.requests.lag >= 0 {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.requests.lag))
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.requests.pending))
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(s.records))
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.open))
}

// snapshot is one reading of the backlog.
type snapshot struct {
	requests group
	records  int64
	open     int64
	err      error
}

// group is one consumer group's undelivered (lag, -1 when Redis cannot tell)
// and unacknowledged (pending) entries.
type group struct{ lag, pending int64 }

// read takes every number in one round trip.
func (c *Collector) read(ctx context.Context) snapshot {
	pipe := c.rdb.Pipeline()
	reqGroups := pipe.XInfoGroups(ctx, price.StreamKey)
	reqLen := pipe.XLen(ctx, price.StreamKey)
	recGroups := pipe.XInfoGroups(ctx, price.RecordsStream)
	recLen := pipe.XLen(ctx, price.RecordsStream)
	open := pipe.ZCard(ctx, price.DueKey)
	// Per-command errors are checked below: a missing stream is an answer.
	_, _ = pipe.Exec(ctx)

	var s snapshot
	if s.requests, s.err = groupOf(reqGroups, reqLen, price.Group); s.err != nil {
		return s
	}
	var rec group
	if rec, s.err = groupOf(recGroups, recLen, price.RecordsGroup); s.err != nil {
		return s
	}
	s.records = rec.lag + rec.pending
	if rec.lag < 0 {
		// The persister deletes what it has written (XACK then XDEL), so
		// the stream's length is what Postgres has not got yet.
		s.records = recLen.Val()
	}
	s.open, s.err = open.Result()
	return s
}

// groupOf picks name out of an XINFO GROUPS answer. A stream that does not
// exist holds nothing; a group not created yet will read the whole stream
// (fetchers create their groups at id 0), so all of it is lag.
func groupOf(groups *redis.XInfoGroupsCmd, length *redis.IntCmd, name string) (group, error) {
	gs, err := groups.Result()
	if isNoSuchKey(err) {
		return group{}, nil
	}
	if err != nil {
		return group{}, err
	}
	for _, g := range gs {
		if g.Name == name {
			return group{lag: g.Lag, pending: g.Pending}, nil
		}
	}
	n, err := length.Result()
	return group{lag: n}, err
}

func isNoSuchKey(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && strings.Contains(err.Error(), "no such key")
}
