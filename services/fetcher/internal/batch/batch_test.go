package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

var settings = Settings{
	Window: 300 * time.Millisecond, Threshold: 3, Lease: 300 * time.Millisecond,
	KeyTTL: time.Minute, Keep: time.Minute, ResultTTL: time.Minute, RecordsMaxLen: 1000,
}

func newStore(t *testing.T, set Settings) (*Store, *redis.Client) {
	t.Helper()
	rdb := testkit.StartRedis(t).Client(t)
	if err := rdb.XGroupCreateMkStream(context.Background(), price.StreamKey, price.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(rdb, set)
	if err != nil {
		t.Fatal(err)
	}
	return s, rdb
}

// add puts a request on the stream and reads it through the group, as a
// consumer would, returning its entry id.
func add(t *testing.T, rdb *redis.Client, coin, id string) (string, price.Request) {
	t.Helper()
	ctx := context.Background()
	r := price.Request{ID: id, Coin: coin, Currency: "usd", ReplyTo: price.ReplyChannel("gw", id), TimeoutMS: 8000, Gateway: "gw"}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: r.Values()}).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: price.Group, Consumer: "c", Streams: []string{price.StreamKey, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Messages[0].ID, r
}

func TestThresholdFlushesAtOnceAndClosesTheBatch(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	var last Joined
	for i := range 3 {
		entry, r := add(t, rdb, "bitcoin", fmt.Sprint("r", i))
		j, err := s.Enqueue(ctx, entry, r)
		if err != nil || j.Outcome != "queued" || j.Size != i+1 {
			t.Fatalf("enqueue %d: %+v %v", i, j, err)
		}
		last = j
	}
	claimed, err := claimBatches(s, ctx, "f1", 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	c := claimed[0]
	if c.ID != last.BatchID || c.Size != 3 || c.FlushReason != price.FlushThreshold || c.Attempt != 1 {
		t.Errorf("claimed %+v", c)
	}
	if left := time.Until(c.Deadline); left < 7*time.Second || left > 8100*time.Millisecond {
		t.Errorf("deadline in %s, want about 8 s", left)
	}
	// A fourth request starts a new batch: the full one is closed.
	entry, r := add(t, rdb, "bitcoin", "r3")
	j, _ := s.Enqueue(ctx, entry, r)
	if j.BatchID == c.ID || j.Size != 1 {
		t.Errorf("request after flush joined %+v", j)
	}
	if n, _ := rdb.XPending(ctx, price.StreamKey, price.Group).Result(); n.Count != 0 {
		t.Errorf("%d entries left pending; enqueue must acknowledge", n.Count)
	}
}

func TestWindowFlushComesDueByRedisTime(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	entry, r := add(t, rdb, "ethereum", "lone")
	if _, err := s.Enqueue(ctx, entry, r); err != nil {
		t.Fatal(err)
	}
	if c, _ := claimBatches(s, ctx, "f1", 10); len(c) != 0 {
		t.Fatalf("claimed %v before the window ended", c)
	}
	time.Sleep(settings.Window + 50*time.Millisecond)
	c, err := claimBatches(s, ctx, "f1", 10)
	if err != nil || len(c) != 1 || c[0].FlushReason != price.FlushWindow || c[0].Size != 1 {
		t.Fatalf("claim after window: %+v %v", c, err)
	}
}

func TestExactlyOneClaimerAmongMany(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	for i := range 3 {
		entry, r := add(t, rdb, "solana", fmt.Sprint("r", i))
		if _, err := s.Enqueue(ctx, entry, r); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := claimBatches(s, ctx, fmt.Sprint("f", i), 10)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += len(c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != 1 {
		t.Errorf("%d claims of one batch, want exactly 1", total)
	}
}

func TestLeaseLapsesToAnotherFetcherAndOnlyTheOwnerAnswers(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		entry, r := add(t, rdb, "dogecoin", id)
		if _, err := s.Enqueue(ctx, entry, r); err != nil {
			t.Fatal(err)
		}
	}
	ps := rdb.PSubscribe(ctx, price.ReplyPattern("gw"))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := claimBatches(s, ctx, "dead", 10)
	if len(first) != 1 {
		t.Fatalf("first claim %v", first)
	}
	// A renewing owner keeps the batch.
	time.Sleep(settings.Lease / 2)
	if kept, err := s.Renew(ctx, "dead", []string{first[0].ID}); err != nil || len(kept) != 1 {
		t.Fatalf("renew: %v %v", kept, err)
	}
	time.Sleep(settings.Lease / 2)
	if c, _ := claimBatches(s, ctx, "other", 10); len(c) != 0 {
		t.Fatalf("batch taken while its lease was renewed: %v", c)
	}
	// Then "dead" stops renewing.
	time.Sleep(settings.Lease + 50*time.Millisecond)
	second, err := claimBatches(s, ctx, "other", 10)
	if err != nil || len(second) != 1 || second[0].ID != first[0].ID || second[0].Attempt != 2 {
		t.Fatalf("takeover: %+v %v", second, err)
	}
	if _, err := s.Complete(ctx, "dead", first[0].ID, []byte(`{}`), nil); err != ErrLeaseLost {
		t.Errorf("old owner completed: %v, want ErrLeaseLost", err)
	}
	payload, _ := json.Marshal(price.Reply{Status: 200, CoinID: "dogecoin", Price: "0.1"})
	rec := &Record{Coin: "dogecoin", Currency: "usd", Price: "0.1", BatchID: first[0].ID, FetchedAt: time.Now()}
	n, err := s.Complete(ctx, "other", first[0].ID, payload, rec)
	if err != nil || n != 3 {
		t.Fatalf("complete: %d %v", n, err)
	}
	got := map[string]bool{}
	for range ids {
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got[m.Channel] = true
		if m.Payload != string(payload) {
			t.Errorf("payload %s", m.Payload)
		}
	}
	for _, id := range ids {
		if !got[price.ReplyChannel("gw", id)] {
			t.Errorf("no reply on %s", price.ReplyChannel("gw", id))
		}
		if v, _ := rdb.Get(ctx, price.ResultKey(id)).Result(); v != string(payload) {
			t.Errorf("result key of %s = %q", id, v)
		}
	}
	if n, _ := rdb.XLen(ctx, price.RecordsStream).Result(); n != 1 {
		t.Errorf("records queued = %d, want 1", n)
	}
	if _, err := s.Complete(ctx, "other", first[0].ID, payload, rec); err != ErrLeaseLost {
		t.Errorf("second completion: %v, want ErrLeaseLost (answered once)", err)
	}
	if c, _ := claimBatches(s, ctx, "third", 10); len(c) != 0 {
		t.Errorf("a finished batch was claimed again: %v", c)
	}
}

func TestExpiredAndDuplicateEntriesAreNotBatched(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	entry, r := add(t, rdb, "cardano", "x")
	if j, _ := s.Enqueue(ctx, entry, r); j.Outcome != "queued" {
		t.Fatalf("first: %+v", j)
	}
	if j, _ := s.Enqueue(ctx, entry, r); j.Outcome != "duplicate" {
		t.Errorf("same entry twice: %+v, want duplicate", j)
	}
	// An entry whose client has already given up (a 1 ms timeout).
	old := price.Request{ID: "old", Coin: "cardano", Currency: "usd", ReplyTo: price.ReplyChannel("gw", "old"), TimeoutMS: 1, Gateway: "gw"}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: old.Values()}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	res, _ := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: price.Group, Consumer: "c", Streams: []string{price.StreamKey, ">"}, Count: 1}).Result()
	if j, _ := s.Enqueue(ctx, res[0].Messages[0].ID, old); j.Outcome != "expired" {
		t.Errorf("stale entry: %+v, want expired", j)
	}
}

// A request that arrives late (reclaimed from a dead fetcher) makes its batch
// due early enough to be answered before its client gives up.
func TestLateRequestPullsItsBatchForward(t *testing.T) {
	set := settings
	set.Window, set.KeyTTL = time.Hour, 2*time.Hour
	s, rdb := newStore(t, set)
	ctx := context.Background()
	r := price.Request{ID: "late", Coin: "tron", Currency: "usd", ReplyTo: price.ReplyChannel("gw", "late"), TimeoutMS: 2000, Gateway: "gw"}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: r.Values()}).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: price.Group, Consumer: "c", Streams: []string{price.StreamKey, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, res[0].Messages[0].ID, r); err != nil {
		t.Fatal(err)
	}
	if c, _ := claimBatches(s, ctx, "f", 10); len(c) != 0 {
		t.Fatalf("due at once: %v", c)
	}
	time.Sleep(700 * time.Millisecond) // 2 s deadline - 1.5 s lead
	if c, _ := claimBatches(s, ctx, "f", 10); len(c) != 1 {
		t.Fatalf("not due 1.5 s before its client's deadline (window is an hour): %v", c)
	}
}

// claimBatches is Claim for the tests that only look at what was leased.
func claimBatches(s *Store, ctx context.Context, owner string, max int) ([]Claimed, error) {
	c, err := s.Claim(ctx, owner, max)
	return c.Batches, err
}

// The batches of one flush are answered in one round trip, each on its own
// terms: a batch whose lease went to another fetcher is not answered, the
// others are, with their own payloads.
func TestCompleteAllAnswersEachBatchOnItsOwn(t *testing.T) {
	s, rdb := newStore(t, settings)
	ctx := context.Background()
	coins := []string{"bitcoin", "ethereum", "tron"}
	for _, coin := range coins {
		for i := range 3 {
			entry, r := add(t, rdb, coin, fmt.Sprint(coin, i))
			if _, err := s.Enqueue(ctx, entry, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	claimed, err := claimBatches(s, ctx, "f1", 10)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	// ethereum's batch has been taken over by f2 meanwhile.
	var lost string
	for _, c := range claimed {
		if c.Coin == "ethereum" {
			lost = c.ID
		}
	}
	if err := rdb.HSet(ctx, price.BatchKey(lost), "owner", "f2").Err(); err != nil {
		t.Fatal(err)
	}
	done := make([]Completion, len(claimed))
	for i, c := range claimed {
		done[i] = Completion{ID: c.ID, Payload: []byte(fmt.Sprintf(`{"status":200,"coinId":%q}`, c.Coin))}
	}
	ns, errs := s.CompleteAll(ctx, "f1", done)
	for i, c := range claimed {
		want, wantErr := 3, error(nil)
		if c.ID == lost {
			want, wantErr = 0, ErrLeaseLost
		}
		if ns[i] != want || errs[i] != wantErr {
			t.Errorf("%s: answered %d, %v; want %d, %v", c.Coin, ns[i], errs[i], want, wantErr)
		}
		for j := range 3 {
			v, _ := rdb.Get(ctx, price.ResultKey(fmt.Sprint(c.Coin, j))).Result()
			if c.ID == lost && v != "" {
				t.Errorf("%s answered although its lease was lost: %s", c.Coin, v)
			}
			if c.ID != lost && v != string(done[i].Payload) {
				t.Errorf("%s result %q, want %s", c.Coin, v, done[i].Payload)
			}
		}
	}
}

// What a user reads with redis-cli follows each request: size, the
// earliest client deadline, the due time it pulls forward, and keys that
// expire on their own.
func TestEnqueueKeepsTheBatchFieldsAUserInspects(t *testing.T) {
	set := settings
	set.Window, set.Lead = 5*time.Second, 500*time.Millisecond
	s, rdb := newStore(t, set)
	ctx := context.Background()
	entry, r := add(t, rdb, "bitcoin", "slow")
	first, err := s.Enqueue(ctx, entry, r)
	if err != nil || first.Size != 1 || first.Due.IsZero() {
		t.Fatalf("first: %+v %v", first, err)
	}
	// A client that gives up in 2 s makes the batch due 500 ms before that.
	r2 := price.Request{ID: "hasty", Coin: "bitcoin", Currency: "usd", ReplyTo: price.ReplyChannel("gw", "hasty"), TimeoutMS: 2000, Gateway: "gw"}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: price.StreamKey, Values: r2.Values()}).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: price.Group, Consumer: "c", Streams: []string{price.StreamKey, ">"}, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Enqueue(ctx, res[0].Messages[0].ID, r2)
	if err != nil || second.BatchID != first.BatchID || second.Size != 2 {
		t.Fatalf("second: %+v %v", second, err)
	}
	if d := time.Until(second.Due); d < time.Second || d > 1600*time.Millisecond {
		t.Errorf("due in %v, want about 1.5 s (2 s deadline - 500 ms lead)", d)
	}
	h, err := rdb.HGetAll(ctx, price.BatchKey(first.BatchID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	created, _ := strconv.ParseInt(h["created_ms"], 10, 64)
	due, _ := strconv.ParseInt(h["due_ms"], 10, 64)
	deadline, _ := strconv.ParseInt(h["deadline_ms"], 10, 64)
	if h["size"] != "2" || h["state"] != "open" || h["coin"] != "bitcoin" || h["currency"] != "usd" || h["id"] != first.BatchID || h["attempt"] != "0" {
		t.Errorf("batch hash %v", h)
	}
	if deadline-due != 500 || due-created > 1600 || due-created < 1000 {
		t.Errorf("created %d, due %d, deadline %d: want due = the hasty deadline - 500 ms", created, due, deadline)
	}
	if score, err := rdb.ZScore(ctx, price.DueKey, first.BatchID).Result(); err != nil || int64(score) != due {
		t.Errorf("due zset score %v (%v), want %d", score, err, due)
	}
	if reqs, _ := rdb.LRange(ctx, price.BatchRequestsKey(first.BatchID), 0, -1).Result(); len(reqs) != 2 {
		t.Errorf("requests %v", reqs)
	}
	for _, k := range []string{price.BatchKey(first.BatchID), price.BatchRequestsKey(first.BatchID), price.OpenBatchKey("bitcoin", "usd")} {
		if ttl, _ := rdb.PTTL(ctx, k).Result(); ttl <= 0 || ttl > set.KeyTTL {
			t.Errorf("%s expires in %v, want within KeyTTL %v", k, ttl, set.KeyTTL)
		}
	}
}
