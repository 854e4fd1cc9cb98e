package worker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cryptopulse/libs/watchlist"
)

// Every worker is built the same way: its constructor fills in defaults,
// refuses a config it cannot run with, and registers its metrics without
// panicking on a second registration.
func TestWorkersRefuseConfigsTheyCannotRunWith(t *testing.T) {
	log := zap.NewNop()
	flusher := FlusherConfig{Name: "f1", MaxBatches: 100, CallTimeout: time.Second, Lease: time.Second}
	migrate := func(context.Context) error { return nil }

	c, err := NewConsumer(ConsumerConfig{Name: "f1", ReclaimIdle: time.Second}, nil, nil, nil, log)
	if err != nil || c.cfg.Count != 100 || c.cfg.Block != time.Second {
		t.Fatalf("consumer with defaults: %+v, %v", c, err)
	}
	reg := prometheus.NewRegistry()
	f, err := NewFlusher(flusher, nil, nil, nil, nil, log, reg)
	if err != nil || f.cfg.Concurrency != 4 || f.cfg.MaxAttempts != 3 || f.cfg.SafetyPoll != time.Second {
		t.Fatalf("flusher with defaults: %+v, %v", f, err)
	}
	if _, err := NewPersister(PersisterConfig{Name: "f1"}, nil, nil, migrate, log, reg); err != nil {
		t.Fatalf("persister: %v", err)
	}

	tooMany := flusher
	tooMany.MaxBatches = maxCoinsPerCall + 1
	negative := flusher
	negative.Margin = -time.Second
	unrefreshed := flusher
	unrefreshed.Watch = []watchlist.Coin{{ID: "bitcoin", Currency: "usd"}}
	for name, build := range map[string]func() error{
		"consumer without a name": func() error {
			_, err := NewConsumer(ConsumerConfig{ReclaimIdle: time.Second}, nil, nil, nil, log)
			return err
		},
		"consumer without reclaim": func() error { _, err := NewConsumer(ConsumerConfig{Name: "f1"}, nil, nil, nil, log); return err },
		"flusher over 515 coins": func() error {
			_, err := NewFlusher(tooMany, nil, nil, nil, nil, log, prometheus.NewRegistry())
			return err
		},
		"flusher with a negative margin": func() error {
			_, err := NewFlusher(negative, nil, nil, nil, nil, log, prometheus.NewRegistry())
			return err
		},
		"flusher watching coins it never refreshes": func() error {
			_, err := NewFlusher(unrefreshed, nil, nil, nil, nil, log, prometheus.NewRegistry())
			return err
		},
		"second flusher on a registry": func() error { _, err := NewFlusher(flusher, nil, nil, nil, nil, log, reg); return err },
		"persister without a name": func() error {
			_, err := NewPersister(PersisterConfig{}, nil, nil, migrate, log, prometheus.NewRegistry())
			return err
		},
		"second persister on a registry": func() error {
			_, err := NewPersister(PersisterConfig{Name: "f2"}, nil, nil, migrate, log, reg)
			return err
		},
	} {
		if build() == nil {
			t.Errorf("%s: built without an error", name)
		}
	}
}
