package pricedb

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"cryptopulse/testkit"
)

// queryTimeout is short so the tests are quick; the bound asserted is
// generous for a loaded machine and far below "forever", which is what a
// hung Postgres cost before.
const (
	queryTimeout = 500 * time.Millisecond
	hungBound    = 3 * time.Second
)

func openMigrated(t *testing.T, pg *testkit.Postgres) *Store {
	t.Helper()
	url := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	s, err := Open(url, Options{PoolSize: 2, QueryTimeout: queryTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var btc = HistoryQuery{CoinID: "bitcoin", VsCurrency: "usd", Limit: 10, Page: 1}

func insertOne(ctx context.Context, s *Store, batch string) error {
	_, err := s.Insert(ctx, []Record{{CoinID: "bitcoin", VsCurrency: "usd", Price: "60000.5", FetchedAt: time.Now(),
		BatchID: sql.NullString{String: batch, Valid: true}}})
	return err
}

// A stopped Postgres (connections open, nothing answering): every call
// fails with ErrUnavailable within the bound, pooled connections and fresh
// ones alike; once it answers again the same pool works with no restart.
func TestHungPostgresIsUnavailableWithinTheBoundAndThePoolRecovers(t *testing.T) {
	pg := testkit.StartPostgres(t)
	s := openMigrated(t, pg)
	ctx := context.Background()
	if err := insertOne(ctx, s, "b-1"); err != nil {
		t.Fatal(err)
	}
	// Both pooled connections are open and idle when the server stops.
	if _, _, err := s.History(ctx, btc); err != nil {
		t.Fatal(err)
	}

	pg.Freeze(t)
	calls := map[string]func() error{
		"history": func() error { _, _, err := s.History(ctx, btc); return err },
		"insert":  func() error { return insertOne(ctx, s, "b-2") },
		"latest":  func() error { _, err := s.Latest(ctx, "bitcoin", "usd"); return err },
		"ping":    func() error { return s.Ping(ctx) },
	}
	// Twice each: the pooled connections first, then fresh ones, whose
	// handshake hangs as well.
	for round := range 2 {
		for name, call := range calls {
			start := time.Now()
			err := call()
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("round %d, %s on a hung Postgres: %v, want ErrUnavailable", round, name, err)
			}
			if took > hungBound {
				t.Errorf("round %d, %s took %s, want within %s", round, name, took, hungBound)
			}
			t.Logf("round %d, %s: %v after %s", round, name, err, took.Round(time.Millisecond))
		}
	}
	// Many callers at once, more than the pool holds: a caller waiting for
	// a connection is bounded too.
	errs := make(chan error, 8)
	start := time.Now()
	for range cap(errs) {
		go func() { _, _, err := s.History(ctx, btc); errs <- err }()
	}
	for range cap(errs) {
		if err := <-errs; !errors.Is(err, ErrUnavailable) {
			t.Errorf("concurrent history: %v", err)
		}
	}
	if took := time.Since(start); took > hungBound {
		t.Errorf("8 concurrent calls on a pool of 2 took %s, want within %s", took, hungBound)
	}

	pg.Thaw(t)
	thawed := time.Now()
	deadline := thawed.Add(10 * time.Second)
	for {
		_, _, err := s.History(ctx, btc)
		if err == nil {
			t.Logf("the pool answers %s after the thaw", time.Since(thawed).Round(time.Millisecond))
			// b-2 may have been committed by the server after it woke; a
			// retried insert of the same batch is then skipped.
			if err := insertOne(ctx, s, "b-2"); err != nil {
				t.Fatalf("insert after thaw: %v", err)
			}
			if _, total, err := s.History(ctx, btc); err != nil || total != 2 {
				t.Fatalf("after thaw: %d rows, %v; want 2", total, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not recover within 10 s of the thaw: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A slow query on a live server is cancelled by Postgres at the bound
// (statement_timeout), and the connection stays usable.
func TestSlowQueryIsCancelledByTheServerAtTheBound(t *testing.T) {
	s := openMigrated(t, testkit.StartPostgres(t))
	ctx := context.Background()
	start := time.Now()
	_, err := s.db.ExecContext(ctx, "SELECT pg_sleep(10)")
	if err == nil || time.Since(start) > hungBound {
		t.Fatalf("pg_sleep(10): %v after %s, want an error within %s", err, time.Since(start), hungBound)
	}
	var timeout string
	if err := s.db.GetContext(ctx, &timeout, "SHOW statement_timeout"); err != nil || timeout != "500ms" {
		t.Fatalf("statement_timeout %q, %v; want 500ms", timeout, err)
	}
}
