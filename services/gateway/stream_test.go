package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/testkit"
	"cryptopulse/testkit/sse"
)

// sseClient reads one stream in the background.
type sseClient struct {
	resp   *http.Response
	events chan sse.Event
	// done is closed when the server ends the stream; err then says how
	// the body ended (nil: with its last chunk).
	done chan struct{}
	err  error
}

// openStream opens GET path with the headers; it fails the test unless the
// answer is 200 text/event-stream.
func openStream(t *testing.T, base, path string, header map[string]string) *sseClient {
	t.Helper()
	resp := streamGet(t, base, path, header)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	c := &sseClient{resp: resp, events: make(chan sse.Event, 100_000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = sse.Read(resp.Body, func(ev sse.Event) bool { c.events <- ev; return true })
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.resp.Body.Close() }

func streamGet(t *testing.T, base, path string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// next returns the next event other than heartbeats and the opening retry.
func (c *sseClient) next(t *testing.T) sse.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.events:
			if ev.Comment != "" || (ev.Event == "" && ev.ID == "" && ev.Retry != "") {
				continue
			}
			return ev
		case <-c.done:
			select {
			case ev := <-c.events:
				if ev.Comment != "" || (ev.Event == "" && ev.ID == "" && ev.Retry != "") {
					continue
				}
				return ev
			default:
			}
			t.Fatal("the stream ended")
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

// prices returns the next n price events.
func (c *sseClient) prices(t *testing.T, n int) []sse.Event {
	t.Helper()
	out := make([]sse.Event, 0, n)
	for len(out) < n {
		ev := c.next(t)
		if ev.Event != "price" {
			t.Fatalf("event %+v, want a price", ev)
		}
		out = append(out, ev)
	}
	return out
}

// feed stands in for the fetchers: it appends updates to the feed.
type feed struct {
	rdb *redis.Client
	n   int
}

// add appends one update of coin and returns its id and the answer a
// stream must carry for it.
func (f *feed) add(t *testing.T, coin string, fetchedAt time.Time) (string, price.Answer) {
	t.Helper()
	f.n++
	u := pricefeed.Update{
		Coin: coin, Currency: "usd", Price: fmt.Sprintf("%d.123456789012345678", 60000+f.n), FetchedAt: fetchedAt.Truncate(time.Millisecond),
		BatchID: fmt.Sprintf("%s:usd:%d-%d", coin, time.Now().UnixMilli(), f.n), BatchSize: 3, FlushReason: price.FlushThreshold,
		Fetcher: "fetcher-1", Attempt: 1, Source: price.SourceUpstream,
	}
	id, err := f.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: pricefeed.Key, Values: u.Values()}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id, u.Answer()
}

// wantPrice checks that ev is the update id carrying answer a.
func wantPrice(t *testing.T, ev sse.Event, id string, a price.Answer) {
	t.Helper()
	var got price.Answer
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil {
		t.Fatalf("event data %q: %v", ev.Data, err)
	}
	if ev.ID != id || got != a {
		t.Errorf("event id %s data %+v, want id %s data %+v", ev.ID, got, id, a)
	}
}

func streamGateway(t *testing.T, r *testkit.Redis, overrides map[string]string) string {
	t.Helper()
	o := map[string]string{"STREAM_HEARTBEAT_MS": "200", "THROTTLE_GLOBAL_LIMIT": "1000"}
	for k, v := range overrides {
		o[k] = v
	}
	return startGateway(t, r.URL(), secNoDatabase, o)
}

func bearer(t *testing.T, sub string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token(t, sub)}
}

// A stream starts with the newest price of each id it names, then carries
// every update of those ids (and none of others) as the price answer's
// JSON, the update's stream id as the event id; heartbeats keep it alive.
func TestStreamSendsNewestPricesThenEachUpdate(t *testing.T) {
	r := testkit.StartRedis(t)
	f := &feed{rdb: r.Client(t)}
	f.add(t, "bitcoin", time.Now())
	btcID, btc := f.add(t, "bitcoin", time.Now())
	ethID, eth := f.add(t, "ethereum", time.Now())
	base := streamGateway(t, r, nil)

	s := openStream(t, base, "/v1/prices/stream?ids=ethereum,bitcoin,solana", bearer(t, "alice"))
	if s.resp.Header.Get("X-Accel-Buffering") != "no" || s.resp.Header.Get("X-Instance-Id") == "" ||
		s.resp.Header.Get("X-Request-Id") == "" || s.resp.Header.Get("Cache-Control") != "no-cache" ||
		len(s.resp.TransferEncoding) != 1 || s.resp.TransferEncoding[0] != "chunked" {
		t.Errorf("headers %v transfer encoding %v, want the usual ones, no-cache and chunked", s.resp.Header, s.resp.TransferEncoding)
	}
	first := s.prices(t, 2)
	wantPrice(t, first[0], btcID, btc)
	wantPrice(t, first[1], ethID, eth)

	f.add(t, "dogecoin", time.Now())
	solID, sol := f.add(t, "solana", time.Now())
	btcID, btc = f.add(t, "bitcoin", time.Now())
	live := s.prices(t, 2)
	wantPrice(t, live[0], solID, sol)
	wantPrice(t, live[1], btcID, btc)

	heartbeat := time.After(5 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if ev.Comment == "heartbeat" {
				return
			}
			t.Fatalf("unexpected event %+v", ev)
		case <-heartbeat:
			t.Fatal("no heartbeat within 5s at STREAM_HEARTBEAT_MS=200")
		}
	}
}

// A client that reconnects with the last event id it got receives exactly
// the updates of its ids it missed, in order, then live ones; an id no
// longer retained gets a "gap" event and the newest prices.
func TestStreamResumesFromLastEventID(t *testing.T) {
	r := testkit.StartRedis(t)
	f := &feed{rdb: r.Client(t)}
	base := streamGateway(t, r, nil)
	auth := bearer(t, "bob")

	s := openStream(t, base, "/v1/prices/stream?ids=bitcoin,ethereum", auth)
	id1, a1 := f.add(t, "bitcoin", time.Now())
	wantPrice(t, s.prices(t, 1)[0], id1, a1)
	s.close()

	var missedIDs []string
	var missed []price.Answer
	for i := range 6 {
		coin := []string{"bitcoin", "cardano", "ethereum"}[i%3]
		id, a := f.add(t, coin, time.Now())
		if coin != "cardano" {
			missedIDs, missed = append(missedIDs, id), append(missed, a)
		}
	}
	for _, how := range []struct {
		name, query string
		header      map[string]string
	}{
		{"Last-Event-ID header", "", map[string]string{"Last-Event-ID": id1}},
		{"lastEventId parameter", "&lastEventId=" + id1, nil},
	} {
		t.Run(how.name, func(t *testing.T) {
			h := bearer(t, "bob")
			for k, v := range how.header {
				h[k] = v
			}
			again := openStream(t, base, "/v1/prices/stream?ids=bitcoin,ethereum"+how.query, h)
			got := again.prices(t, len(missed))
			for i := range missed {
				wantPrice(t, got[i], missedIDs[i], missed[i])
			}
			liveID, live := f.add(t, "ethereum", time.Now())
			wantPrice(t, again.prices(t, 1)[0], liveID, live)
			again.close()
			missedIDs, missed = append(missedIDs, liveID), append(missed, live)
		})
	}

	t.Run("no longer retained", func(t *testing.T) {
		if err := f.rdb.XTrimMaxLen(context.Background(), pricefeed.Key, 1).Err(); err != nil {
			t.Fatal(err)
		}
		h := bearer(t, "bob")
		h["Last-Event-ID"] = id1
		again := openStream(t, base, "/v1/prices/stream?ids=bitcoin,ethereum", h)
		gap := again.next(t)
		if gap.Event != "gap" || !strings.Contains(gap.Data, id1) {
			t.Fatalf("first event %+v, want a gap naming %s", gap, id1)
		}
		// Then the newest price of each id.
		newest := again.prices(t, 2)
		wantPrice(t, newest[1], missedIDs[len(missedIDs)-1], missed[len(missed)-1])
	})
}

func TestStreamRefusesBadRequests(t *testing.T) {
	base, r := secStart(t, map[string]string{"STREAMS_PER_USER": "2"})
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	names := func(want string) func(t *testing.T, got httperr.Body) {
		return func(t *testing.T, got httperr.Body) {
			t.Helper()
			if got.StatusCode != 400 || !strings.Contains(fmt.Sprint(got.Message), want) {
				t.Errorf("body %+v, want a 400 saying %q", got, want)
			}
		}
	}
	const p = "/v1/prices/stream"
	secRun(t, base, []secRow{
		{name: "no token", path: p + "?ids=bitcoin", statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "bad access_token", path: p + "?ids=bitcoin&access_token=nope", statusCode: 401, expResp: unauthorized("Invalid Bearer token")},
		{name: "no ids", path: p, header: auth, statusCode: 400, cmp: names("ids should not be empty")},
		{name: "bad id", path: p + "?ids=Bitcoin", header: auth, statusCode: 400, cmp: names(`"Bitcoin"`)},
		{name: "unknown parameter", path: p + "?ids=bitcoin&limit=3", header: auth, statusCode: 400, cmp: names("property limit should not exist")},
		{name: "bad Last-Event-ID", path: p + "?ids=bitcoin", header: map[string]string{"Authorization": auth["Authorization"], "Last-Event-ID": "yesterday"}, statusCode: 400, cmp: names("Last-Event-ID")},
		{name: "bad lastEventId", path: p + "?ids=bitcoin&lastEventId=1-x", header: auth, statusCode: 400, cmp: names("Last-Event-ID")},
		{name: "access_token elsewhere", path: "/v1/price/bitcoin?access_token=" + token(t, "admin"), statusCode: 401, expResp: unauthorized("Missing Authorization header")},
	})
	secNothingInRedis(t, r)

	// A browser's EventSource sends its token as access_token.
	s := openStream(t, base, p+"?ids=bitcoin&access_token="+token(t, "admin"), nil)
	s.close()
}

// Streams per user are capped across gateways (429 JSON past the cap); a
// closed stream gives its slot back, and other users are not affected.
func TestStreamsPerUserAreCapped(t *testing.T) {
	r := testkit.StartRedis(t)
	o := map[string]string{"STREAMS_PER_USER": "2"}
	a, b := streamGateway(t, r, o), streamGateway(t, r, o)
	openStream(t, a, "/v1/prices/stream?ids=bitcoin", bearer(t, "carol"))
	second := openStream(t, b, "/v1/prices/stream?ids=ethereum", bearer(t, "carol"))

	resp := streamGet(t, a, "/v1/prices/stream?ids=bitcoin", bearer(t, "carol"))
	var body httperr.Body
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 429 || body.StatusCode != 429 || !strings.Contains(fmt.Sprint(body.Message), "at most 2") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d %+v Retry-After %q, want a 429 naming the cap", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	openStream(t, b, "/v1/prices/stream?ids=bitcoin", bearer(t, "dave")).close()

	second.close()
	slotFreed(t, a, "carol", "a closed stream's slot was not given back")
}

// slotFreed waits until user can open a stream on base again (10 s), a
// slot having been given back.
func slotFreed(t *testing.T, base, user, failure string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := streamGet(t, base, "/v1/prices/stream?ids=bitcoin", bearer(t, user))
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d", failure, resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStreamOpeningCountsAgainstTheLimit(t *testing.T) {
	r := testkit.StartRedis(t)
	base := streamGateway(t, r, map[string]string{"THROTTLE_GLOBAL_LIMIT": "2", "STREAMS_PER_USER": "10"})
	openStream(t, base, "/v1/prices/stream?ids=bitcoin", bearer(t, "erin"))
	openStream(t, base, "/v1/prices/stream?ids=bitcoin", bearer(t, "erin"))
	resp := streamGet(t, base, "/v1/prices/stream?ids=bitcoin", bearer(t, "erin"))
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third opening within the limit of 2: %d", resp.StatusCode)
	}
}

// metric reads one unlabelled sample from a gateway's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics", "")
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// slowStream opens a stream on a raw connection with a tiny receive buffer
// and reads nothing from it: a client that has stopped keeping up.
func slowStream(t *testing.T, base, path, tok string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", path, tok); err != nil {
		t.Fatal(err)
	}
	return conn
}

// A client that stops reading is dropped once its buffer is full, while a
// client that keeps up receives every update: the slow one never holds up
// the feed reader or anyone else, and can resume with its Last-Event-ID.
func TestSlowStreamIsDroppedWithoutDelayingOthers(t *testing.T) {
	r := testkit.StartRedis(t)
	base := streamGateway(t, r, map[string]string{"STREAM_BUFFER": "256", "STREAM_HEARTBEAT_MS": "60000"})
	rdb := r.Client(t)
	const path = "/v1/prices/stream?ids=bitcoin"
	slow := slowStream(t, base, path, token(t, "slow"))
	fast := openStream(t, base, path, bearer(t, "fast"))
	testkit.Eventually(t, 10*time.Second, "both streams open", func() bool { return metric(t, base, "gateway_streams_open") == 2 })

	// Lockstep: the next chunk goes out once the fast client has the last
	// one, so it never falls behind, however loaded the machine; the slow
	// client's socket buffers fill until its stream buffer overflows.
	const chunk = 100
	total := 0
	for round := 0; metric(t, base, "gateway_streams_dropped_total") == 0; round++ {
		if round == 600 {
			t.Fatalf("the slow client was not dropped after %d updates", total)
		}
		u := pricefeed.Update{Coin: "bitcoin", Currency: "usd", FetchedAt: time.Now(), BatchID: "b", BatchSize: 1,
			FlushReason: price.FlushWindow, Fetcher: "f", Attempt: 1, Source: price.SourceUpstream}
		ids := make([]*redis.StringCmd, chunk)
		_, err := rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
			for i := range chunk {
				u.Price = strconv.Itoa(total + i)
				ids[i] = p.XAdd(context.Background(), &redis.XAddArgs{Stream: pricefeed.Key, Values: u.Values()})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range fast.prices(t, chunk) {
			var a price.Answer
			_ = json.Unmarshal([]byte(ev.Data), &a)
			if ev.ID != ids[i].Val() || a.Price.String() != strconv.Itoa(total+i) {
				t.Fatalf("fast client got %s %s, want %s %d: it missed an update", ev.ID, a.Price, ids[i].Val(), total+i)
			}
		}
		total += chunk
	}
	t.Logf("slow client dropped after %d updates; the fast one got all of them", total)
	if n := metric(t, base, "gateway_streams_dropped_total"); n != 1 {
		t.Errorf("%v streams dropped, want only the slow one", n)
	}

	// The slow client, reading at last, finds its stream ended before the
	// newest update.
	if err := slow.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the dropped stream: %v (it should end)", err)
	}
	if n := strings.Count(string(got), "event: price"); n == 0 || n >= total {
		t.Errorf("dropped client received %d of %d updates, want some but not all", n, total)
	}
}

// Redis work per update does not grow with the number of stream clients:
// one feed reader per gateway, whatever it fans out to.
func TestStreamRedisCommandsPerUpdateDoNotGrowWithClients(t *testing.T) {
	r := testkit.StartRedis(t)
	base := streamGateway(t, r, map[string]string{"STREAM_HEARTBEAT_MS": "600000", "STREAMS_PER_USER": "200", "THROTTLE_GLOBAL_LIMIT": "1000"})
	f := &feed{rdb: r.Client(t)}
	const updates = 20
	calls := map[int]int64{}
	var clients []*sseClient
	for _, n := range []int{1, 100} {
		for len(clients) < n {
			c := openStream(t, base, "/v1/prices/stream?ids=bitcoin", bearer(t, "load"))
			if len(clients) > 0 {
				c.prices(t, 1) // the newest price, on connect
			}
			clients = append(clients, c)
		}
		if err := f.rdb.ConfigResetStat(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		for range updates {
			id, a := f.add(t, "bitcoin", time.Now())
			for _, c := range clients {
				wantPrice(t, c.prices(t, 1)[0], id, a)
			}
		}
		calls[n] = redisCalls(t, f.rdb)
		t.Logf("%d clients: %d Redis commands for %d updates (besides the test's own)", n, calls[n], updates)
	}
	// A blocking read per update or so, plus a check per idle read; per
	// client work would be at least 100 per update.
	for n, c := range calls {
		if c > 3*updates+10 {
			t.Errorf("%d clients: %d Redis commands for %d updates, want at most %d", n, c, updates, 3*updates+10)
		}
	}
}

// redisCalls sums INFO commandstats, leaving out the commands the test
// itself sends (XADD, INFO, CONFIG).
func redisCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || strings.HasSuffix(name, "_xadd") || strings.HasSuffix(name, "_info") || strings.Contains(name, "_config") {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		total += n
	}
	return total
}

// A stopping gateway ends its streams with a retry hint; a client that
// reconnects to another gateway with its Last-Event-ID loses nothing.
func TestStoppingGatewayEndsStreamsWithRetryAndResumeLosesNothing(t *testing.T) {
	r := testkit.StartRedis(t)
	f := &feed{rdb: r.Client(t)}
	other := streamGateway(t, r, nil)
	ctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	e := env(map[string]string{"REDIS_URL": r.URL(), "DATABASE_URL": secNoDatabase, "STREAM_HEARTBEAT_MS": "200", "STREAM_RETRY_MS": "250", "INSTANCE_ID": "gw-stopping"})
	go func() { done <- run(ctx, func(k string) string { return e[k] }, io.Discard, ready) }()
	var stopping string
	select {
	case addr := <-ready:
		stopping = "http://" + addr
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(stop)

	s := openStream(t, stopping, "/v1/prices/stream?ids=bitcoin", bearer(t, "frank"))
	lastID, a := f.add(t, "bitcoin", time.Now())
	wantPrice(t, s.prices(t, 1)[0], lastID, a)

	stop()
	ev := s.next(t)
	if ev.Event != "reconnect" || ev.Retry != "250" {
		t.Fatalf("on shutdown the stream sent %+v, want a reconnect event with retry: 250", ev)
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("the stream's body ended with %v, want its last chunk", s.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end on shutdown")
	}
	var missedIDs []string
	var missed []price.Answer
	for range 3 {
		id, a := f.add(t, "bitcoin", time.Now())
		missedIDs, missed = append(missedIDs, id), append(missed, a)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the gateway stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not stop within 20s of its streams ending")
	}

	// The reconnect event has no id: a browser resumes from the last
	// price it got.
	h := bearer(t, "frank")
	h["Last-Event-ID"] = lastID
	again := openStream(t, other, "/v1/prices/stream?ids=bitcoin", h)
	got := again.prices(t, len(missed))
	for i := range missed {
		wantPrice(t, got[i], missedIDs[i], missed[i])
	}
}

// A HEAD of the stream gets the stream's head and no body, and holds no
// slot afterwards.
func TestStreamHeadAnswersTheHeadOnly(t *testing.T) {
	r := testkit.StartRedis(t)
	base := streamGateway(t, r, map[string]string{"STREAMS_PER_USER": "1"})
	{
		req, err := http.NewRequest(http.MethodHead, base+"/v1/prices/stream?ids=bitcoin", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearer(t, "gina")["Authorization"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || len(body) != 0 {
			t.Fatalf("HEAD: %d %q body %q, want 200 text/event-stream and no body", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// The HEAD gave its slot back: a stream opens at a cap of one.
	slotFreed(t, base, "gina", "a HEAD kept its slot")
}
