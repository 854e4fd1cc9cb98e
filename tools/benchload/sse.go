package benchload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"cryptopulse/libs/pricefeed"
)

// sseTarget is where stream clients connect: nginx's address.
type sseTarget struct {
	addr string
	// dials bounds the connections being opened at once, so 10,000
	// clients do not overflow nginx's listen backlog all in one instant.
	dials chan struct{}
	// reconnect makes a client come back after its stream ends, with its
	// Last-Event-ID, as a browser's EventSource does.
	reconnect bool
}

// received is one price event a client read.
type received struct {
	id pricefeed.ID
	// latency is the receive time minus the update's fetchedAt (Redis
	// time on this same host); toFeed is the part of it before the update
	// was on the feed (the id's milliseconds are Redis time of the XADD).
	latency, toFeed time.Duration
}

// sseClient is one lean stream reader: a raw connection, two 1 KB buffers
// and one goroutine, no http.Client. Ten thousand of them cost the harness
// tens of MB, not hundreds.
type sseClient struct {
	coin, token string
	connected   chan struct{} // closed at the first 200 answer

	mu     sync.Mutex
	events []received
	last   string // the newest event id, sent as Last-Event-ID
	// ends counts streams that ended while the run went on, failedOpens
	// the attempts that got no stream (refused, non-200); connects counts
	// the 200 answers (1 + reconnects).
	ends, failedOpens, connects int
	status                      int // the last non-200 status, 0 if none
	err                         error
}

func newSSEClient(coin, token string) *sseClient {
	return &sseClient{coin: coin, token: token, connected: make(chan struct{})}
}

// run reads the stream until ctx is done, reconnecting when t says so.
func (c *sseClient) run(ctx context.Context, t sseTarget) {
	retry := time.Second
	for ctx.Err() == nil {
		c.mu.Lock()
		before := c.connects
		c.mu.Unlock()
		r, err := c.stream(ctx, t)
		if r > 0 {
			retry = r
		}
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if c.connects > before {
			c.ends++
		} else {
			c.failedOpens++
		}
		c.err = err
		c.mu.Unlock()
		if !t.reconnect {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// stream opens one stream and reads it until it ends; it returns the
// reconnect delay the server asked for.
func (c *sseClient) stream(ctx context.Context, t sseTarget) (retry time.Duration, _ error) {
	t.dials <- struct{}{}
	opening := true
	release := func() {
		if opening {
			opening = false
			<-t.dials
		}
	}
	defer release()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	req := "GET /v1/prices/stream?ids=" + c.coin + " HTTP/1.1\r\nHost: " + t.addr +
		"\r\nAuthorization: Bearer " + c.token + "\r\nAccept: text/event-stream\r\n"
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.mu.Lock()
		c.status = resp.StatusCode
		c.mu.Unlock()
		return 0, fmt.Errorf("stream answered %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	release()
	c.mu.Lock()
	c.connects++
	if c.connects == 1 {
		close(c.connected)
	}
	c.mu.Unlock()

	body := bufio.NewReaderSize(resp.Body, 1024)
	var id, event string
	var data []byte
	for {
		line, err := body.ReadSlice('\n')
		if err != nil {
			return retry, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event == "price" && id != "" {
				c.record(id, data, time.Now())
			}
			id, event, data = "", "", data[:0]
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("id: ")):
			id = string(line[4:])
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[7:])
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data[:0], line[6:]...)
		case bytes.HasPrefix(line, []byte("retry: ")):
			if ms, err := strconv.Atoi(string(line[7:])); err == nil {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// record keeps a price event's id and how long after its fetch it came.
func (c *sseClient) record(id string, data []byte, at time.Time) {
	fid, err := pricefeed.ParseID(id)
	if err != nil {
		return
	}
	var p struct {
		FetchedAt time.Time `json:"fetchedAt"`
	}
	_ = json.Unmarshal(data, &p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, received{id: fid, latency: at.Sub(p.FetchedAt), toFeed: time.UnixMilli(int64(fid.MS)).Sub(p.FetchedAt)})
	c.last = id
}

// tally is what a set of clients received of the updates after a point
// of the feed.
type tally struct {
	clients, missed, duplicates, disordered int
	// clientsMissing counts clients that missed at least one update.
	clientsMissing int
	delivered      int
	latencies      []time.Duration
	toFeed         []time.Duration // the fetch → feed part of each latency
	ends           int             // streams that ended during the run
	failedOpens    int             // attempts to open one that failed (and were retried)
	// lastErrors counts, by kind, the error that last ended or refused
	// each client's stream.
	lastErrors  map[string]int
	reconnected int // clients that came back at least once
}

// count compares what each client received after the feed id from with
// the updates of its coin the feed holds after it (want, by coin).
func count(clients []*sseClient, from pricefeed.ID, want map[string][]pricefeed.ID) tally {
	t := tally{lastErrors: map[string]int{}}
	for _, c := range clients {
		c.mu.Lock()
		if c.err != nil {
			kind := loadgenKind(c.err)
			if c.status != 0 {
				kind = strconv.Itoa(c.status)
			}
			t.lastErrors[kind]++
		}
		t.clients++
		t.ends += c.ends
		t.failedOpens += c.failedOpens
		if c.connects > 1 {
			t.reconnected++
		}
		got := map[pricefeed.ID]int{}
		var prev pricefeed.ID
		for _, e := range c.events {
			if !from.Less(e.id) {
				continue
			}
			got[e.id]++
			if got[e.id] > 1 {
				t.duplicates++
				continue
			}
			if !prev.Less(e.id) {
				t.disordered++
			}
			prev = e.id
			t.delivered++
			t.latencies = append(t.latencies, e.latency)
			t.toFeed = append(t.toFeed, e.toFeed)
		}
		missed := 0
		for _, id := range want[c.coin] {
			if got[id] == 0 {
				missed++
			}
		}
		t.missed += missed
		if missed > 0 {
			t.clientsMissing++
		}
		c.mu.Unlock()
	}
	return t
}

// caughtUp reports whether every client holds the newest update of its
// coin in want.
func caughtUp(clients []*sseClient, want map[string][]pricefeed.ID) bool {
	for _, c := range clients {
		ids := want[c.coin]
		if len(ids) == 0 {
			continue
		}
		newest := ids[len(ids)-1]
		c.mu.Lock()
		n := len(c.events)
		has := n > 0 && !c.events[n-1].id.Less(newest)
		c.mu.Unlock()
		if !has {
			return false
		}
	}
	return true
}
