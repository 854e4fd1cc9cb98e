package e2e

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// partitionRig is a namespace with two links to the host, one carrying only
// Redis and one carrying everything else (HTTP from nginx and health checks,
// PostgreSQL, the simulator), and a Redis that listens on loopback and on
// the Redis link. Cutting the Redis link partitions an instance inside from
// Redis alone, as a failed switch between it and Redis would.
type partitionRig struct {
	ns               *testkit.Netns
	redisLink, other *testkit.Link
	redis            *testkit.Redis
	redisURL         string
	dbURL            string
	// inside is how an instance in the namespace is placed.
	inside *devstack.Netns
}

func newPartitionRig(t *testing.T) *partitionRig {
	t.Helper()
	p := &partitionRig{ns: testkit.NewNetns(t)}
	p.redisLink, p.other = p.ns.AddLink(t), p.ns.AddLink(t)
	r, err := testkit.LaunchRedisArgs(t.TempDir(), 0, "--bind", "127.0.0.1 "+p.redisLink.HostIP, "--protected-mode", "no")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p.redis = r
	_, port, _ := net.SplitHostPort(r.Addr)
	// Every service, inside or not, reaches Redis at the link's address.
	p.redisURL = "redis://" + net.JoinHostPort(p.redisLink.HostIP, port) + "/0"
	p.dbURL = kit.pg.NewDatabase(t)
	// The shared PostgreSQL listens on loopback only; a relay on the other
	// link carries it into the namespace. Made before the stack, so it is
	// closed after the stack's services have stopped.
	relay := p.other.Forward(t, kit.pg.Addr)
	p.inside = &devstack.Netns{Name: p.ns.Name, Host: p.other.NsIP,
		Env: map[string]string{"DATABASE_URL": strings.Replace(p.dbURL, kit.pg.Addr, relay, 1)}}
	return p
}

// replyCounter counts the publishes on every reply channel.
type replyCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countReplies(t *testing.T, rdb *redis.Client) *replyCounter {
	t.Helper()
	rc := &replyCounter{n: map[string]int{}}
	ps := rdb.PSubscribe(context.Background(), price.ReplyPrefix+"*")
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatalf("psubscribe: %v", err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	go func() {
		for m := range ps.Channel() {
			rc.mu.Lock()
			rc.n[m.Channel]++
			rc.mu.Unlock()
		}
	}()
	return rc
}

func (rc *replyCounter) snapshot() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]int{}
	for k, v := range rc.n {
		out[k] = v
	}
	return out
}

// A fetcher cut off from Redis while it holds a batch and waits on a slow
// upstream: the lease runs out, another fetcher answers every waiter, and
// when the link comes back the cut-off fetcher's late completion is refused,
// so nobody is answered twice and the batch is stored once.
func TestPartitionedFetcherLateCompletionIsRefused(t *testing.T) {
	t.Parallel()
	p := newPartitionRig(t)
	s := startStack(t, devstack.Config{Gateways: 2, Fetchers: -1, RedisURL: p.redisURL, DatabaseURL: p.dbURL,
		SimHost: p.other.HostIP, Env: map[string]string{
			// The cut-off fetcher's call must outlive the partition, so its
			// completion comes late rather than as a timeout.
			"COINGECKO_TIMEOUT_MS": "15000",
			"BATCH_LEASE_MS":       "1000",
		}})
	ctx := context.Background()
	inside, err := s.AddFetcherIn(ctx, p.inside)
	if err != nil {
		t.Fatal(err)
	}
	tok := login(t, s)
	rdb := p.redis.Client(t)
	replies := countReplies(t, rdb)
	simFault(t, s, `{"kind":"slow","delay_ms":6000,"times":1}`)

	wait := askInBackground([]string{s.Gateways[0].URL(), s.Gateways[1].URL(), s.Gateways[0].URL()}, "/v1/price/bitcoin", tok)
	testkit.Eventually(t, 5*time.Second, "the upstream sees the first call", func() bool { return simCalls(t, s).Calls >= 1 })
	callAt := time.Now()
	if owner := batchOwner(t, rdb, "bitcoin:usd:"); owner != inside.Name {
		t.Fatalf("batch owned by %q, want %s", owner, inside.Name)
	}
	if err := p.redisLink.Cut(); err != nil {
		t.Fatal(err)
	}
	// Only now a fetcher that can take the batch over.
	outside, err := s.AddFetcher(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := wait()
	answered := time.Since(callAt)
	// Back before the slow call ends (6 s after it started).
	time.Sleep(4*time.Second - time.Since(callAt))
	if err := p.redisLink.Restore(); err != nil {
		t.Fatal(err)
	}
	restored := time.Since(callAt)

	var batchID string
	for i, a := range got {
		if a.Status != http.StatusOK {
			t.Fatalf("waiter %d: status %d %s", i, a.Status, a.Raw)
		}
		if a.batch()["fetcher"] != outside.Name || a.batch()["attempt"] != float64(2) {
			t.Errorf("waiter %d: batch %v, want it answered by %s on attempt 2", i, a.batch(), outside.Name)
		}
		batchID, _ = a.batch()["id"].(string)
	}
	const refused = "batch was taken over before we answered"
	testkit.Eventually(t, 10*time.Second, "the cut-off fetcher's completion is refused", func() bool {
		return strings.Contains(inside.Output(), refused)
	})
	// Give a wrongly accepted completion time to publish and insert.
	time.Sleep(time.Second)
	counts := replies.snapshot()
	if len(counts) != 3 {
		t.Errorf("replies on %d channels, want 3 (one per request): %v", len(counts), counts)
	}
	for ch, n := range counts {
		if n != 1 {
			t.Errorf("%s answered %d times", ch, n)
		}
	}
	db, err := sql.Open("postgres", p.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	testkit.Eventually(t, 10*time.Second, "the batch reaches price_records", func() bool {
		return db.QueryRow("SELECT count(*) FROM price_records WHERE batch_id = $1", batchID).Scan(&rows) == nil && rows > 0
	})
	time.Sleep(time.Second) // the outbox of the cut-off fetcher, had it been let through
	if err := db.QueryRow("SELECT count(*) FROM price_records WHERE batch_id = $1", batchID).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("price_records rows for batch %s: %d (%v), want 1", batchID, rows, err)
	}
	// The cut-off fetcher is back to work once the link is.
	if a := getJSON(s.Gateways[0].URL(), "/v1/price/ethereum", tok); a.Status != http.StatusOK {
		t.Errorf("after the partition: %d %s", a.Status, a.Raw)
	}
	t.Logf("upstream call at 0; Redis link cut right after; answered by %s (attempt 2) at %s; link back at %s; %s refused its completion; replies %v; rows %d",
		outside.Name, answered.Round(time.Millisecond), restored.Round(time.Millisecond), inside.Name, counts, rows)
}

// A gateway cut off from Redis answers its clients 503 within a second
// instead of hanging, while the other gateway behind nginx keeps answering
// 200; when the link is back it serves again.
func TestPartitionedGatewayAnswers503Quickly(t *testing.T) {
	t.Parallel()
	p := newPartitionRig(t)
	s := startStack(t, devstack.Config{Gateways: 1, Fetchers: 1, Nginx: true, RedisURL: p.redisURL, DatabaseURL: p.dbURL,
		SimHost: p.other.HostIP, Env: map[string]string{"BATCH_THRESHOLD": "1", "COINGECKO_RATE_LIMIT": "0"}})
	ctx := context.Background()
	cut, err := s.AddGatewayIn(ctx, p.inside)
	if err != nil {
		t.Fatal(err)
	}
	tok := login(t, s)
	for _, g := range s.Gateways {
		if a := getJSON(g.URL(), "/v1/price/bitcoin", tok); a.Status != http.StatusOK {
			t.Fatalf("%s before the cut: %d %s", g.Name, a.Status, a.Raw)
		}
	}
	if err := p.redisLink.Cut(); err != nil {
		t.Fatal(err)
	}
	var slowest503 time.Duration
	for range 5 {
		a := getJSON(cut.URL(), "/v1/price/bitcoin", tok)
		if a.Status != http.StatusServiceUnavailable || a.Body["statusCode"] != float64(503) || a.Took > time.Second {
			t.Errorf("%s cut from Redis: %d after %s (%s), want 503 JSON within 1 s", cut.Name, a.Status, a.Took, a.Raw)
		}
		slowest503 = max(slowest503, a.Took)
	}
	// Through nginx: round robin over both, and nobody waits long.
	type seen struct {
		n       int
		slowest time.Duration
	}
	via := map[string]*seen{}
	bases := make([]string, 40)
	for i := range bases {
		bases[i] = s.URL
	}
	for _, a := range concurrently(bases, func(b string) answer { return getJSON(b, "/v1/price/ethereum", tok) }) {
		k := a.Gateway + " " + http.StatusText(a.Status)
		if via[k] == nil {
			via[k] = &seen{}
		}
		via[k].n++
		via[k].slowest = max(via[k].slowest, a.Took)
		switch {
		case a.Gateway == s.Gateways[0].Name && a.Status == http.StatusOK:
		case a.Gateway == cut.Name && a.Status == http.StatusServiceUnavailable && a.Took <= time.Second:
		default:
			t.Errorf("via nginx: %d from %q after %s: %s", a.Status, a.Gateway, a.Took, a.Raw)
		}
	}
	if via[s.Gateways[0].Name+" OK"] == nil {
		t.Errorf("via nginx nothing answered 200 by %s: %v", s.Gateways[0].Name, via)
	}
	if err := p.redisLink.Restore(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testkit.Eventually(t, 10*time.Second, cut.Name+" serves again", func() bool {
		return getJSON(cut.URL(), "/v1/price/bitcoin", tok).Status == http.StatusOK
	})
	report := []string{}
	for k, v := range via {
		report = append(report, k+": "+strconv.Itoa(v.n)+" (slowest "+v.slowest.Round(time.Millisecond).String()+")")
	}
	t.Logf("cut gateway: slowest direct 503 %s; via nginx %s; 200 again %s after the link came back",
		slowest503.Round(time.Millisecond), strings.Join(report, ", "), time.Since(start).Round(time.Millisecond))
}
