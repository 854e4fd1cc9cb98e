package benchload

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/pricefeed"
)

// TestSSEClientResumesWithLastEventID serves a stream that ends after two
// events, then checks the client came back with the last id it read and
// recorded every event once, with its delivery latency.
func TestSSEClientResumesWithLastEventID(t *testing.T) {
	fetched := time.Now().Add(-40 * time.Millisecond).UTC()
	resumed := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("ids") != "bitcoin" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		event := func(id string) {
			fmt.Fprintf(w, "id: %s\nevent: price\ndata: {\"coinId\":\"bitcoin\",\"fetchedAt\":%q}\n\n", id, fetched.Format(time.RFC3339Nano))
		}
		fmt.Fprint(w, "retry: 10\n\n: heartbeat\n\n")
		if last := r.Header.Get("Last-Event-ID"); last != "" {
			resumed <- last
			event("1000-2")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		event("1000-0")
		fmt.Fprint(w, "event: gap\ndata: {}\n\n")
		event("1000-1")
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := newSSEClient("bitcoin", "tok")
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx, sseTarget{addr: strings.TrimPrefix(srv.URL, "http://"), dials: make(chan struct{}, 1), reconnect: true})
	}()
	select {
	case last := <-resumed:
		if last != "1000-1" {
			t.Errorf("resumed with Last-Event-ID %q, want 1000-1", last)
		}
	case <-ctx.Done():
		t.Fatal("the client did not come back after its stream ended")
	}
	want := map[string][]pricefeed.ID{"bitcoin": {{MS: 1000, Seq: 0}, {MS: 1000, Seq: 1}, {MS: 1000, Seq: 2}}}
	for !caughtUp([]*sseClient{c}, want) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	got := count([]*sseClient{c}, pricefeed.ID{}, want)
	if got.delivered != 3 || got.missed != 0 || got.duplicates != 0 || got.reconnected != 1 || got.ends < 1 {
		t.Errorf("tally %+v", got)
	}
	for _, l := range got.latencies {
		if l < 40*time.Millisecond || l > 5*time.Second {
			t.Errorf("latency %v, want from the fetchedAt 40 ms ago", l)
		}
	}
}

// TestCountFindsGapsPerClient: a missed update, a duplicate and events at
// or before the starting id, counted per client.
func TestCountFindsGapsPerClient(t *testing.T) {
	id := func(ms uint64) pricefeed.ID { return pricefeed.ID{MS: ms} }
	ev := func(ids ...uint64) []received {
		var out []received
		for _, i := range ids {
			out = append(out, received{id: id(i), latency: time.Millisecond})
		}
		return out
	}
	want := map[string][]pricefeed.ID{"bitcoin": {id(11), id(12), id(13)}, "ethereum": {id(14)}}
	full := &sseClient{coin: "bitcoin", events: ev(9, 10, 11, 12, 13), connects: 1}
	gappy := &sseClient{coin: "bitcoin", events: ev(11, 13, 13), connects: 2}
	eth := &sseClient{coin: "ethereum", events: ev(14), connects: 1}
	got := count([]*sseClient{full, gappy, eth}, id(10), want)
	if got.clients != 3 || got.missed != 1 || got.clientsMissing != 1 || got.duplicates != 1 || got.delivered != 6 || got.reconnected != 1 {
		t.Errorf("tally %+v", got)
	}
	if caughtUp([]*sseClient{full, eth}, want) != true || caughtUp([]*sseClient{{coin: "ethereum"}}, want) {
		t.Error("caughtUp")
	}
}
