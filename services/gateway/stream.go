package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/libs/web"
	"cryptopulse/services/gateway/internal/pricestream"
)

// accessTokenParam carries the token of a browser's EventSource, which
// cannot send headers. It is accepted on the stream route only, and no log
// records it: the gateway logs paths without their query, and nginx logs a
// redacted URI.
const accessTokenParam = "access_token"

// queryToken lets the stream route's authentication read a token from
// accessTokenParam when no Authorization header came, so a browser is
// verified exactly as every other client is.
func queryToken(c *fiber.Ctx) error {
	if tok := c.Query(accessTokenParam); tok != "" && len(c.Get(fiber.HeaderAuthorization)) == 0 {
		c.Request().Header.Set(fiber.HeaderAuthorization, "Bearer "+tok)
	}
	return c.Next()
}

// streamWriteTimeout bounds one write to a stream client: a client that
// stops reading is cut off after it, rather than holding its connection.
const streamWriteTimeout = 10 * time.Second

// replayPage is how many feed entries one read of a resume takes.
const replayPage = 1000

// streamRequest is a validated GET /v1/prices/stream.
type streamRequest struct {
	subject  string
	keys     []string
	currency string
	// after is the Last-Event-ID to resume from, "" for none.
	after string
}

func parseStream(c *fiber.Ctx) (streamRequest, error) {
	problems := checkQuery(c, "ids", "vsCurrency", "lastEventId", accessTokenParam)
	ids, idProblems := parseCoinIDs(c)
	problems = append(problems, idProblems...)
	// Fiber's strings point into the request's buffers, which fasthttp
	// reuses for another request once the stream has taken its connection
	// over; what the stream keeps is copied.
	r := streamRequest{subject: "user:" + claimsOf(c).Subject, currency: strings.Clone(c.Query("vsCurrency", "usd"))}
	if err := price.ValidateCurrency(r.currency); err != nil {
		problems = append(problems, err.Error())
	}
	r.after = strings.Clone(c.Get("Last-Event-ID"))
	if r.after == "" {
		r.after = strings.Clone(c.Query("lastEventId"))
	}
	if r.after != "" {
		if _, err := pricefeed.ParseID(r.after); err != nil {
			problems = append(problems, "Last-Event-ID must be an event id this stream sent (<milliseconds>-<sequence>)")
		}
	}
	if len(problems) > 0 {
		return r, httperr.Validation(problems...)
	}
	for _, id := range ids {
		r.keys = append(r.keys, pricestream.Key(id, r.currency))
	}
	return r, nil
}

// streamMetrics count streams for /metrics.
func streamMetrics(d deps) prometheus.Counter {
	opened := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gateway_streams_opened_total", Help: "Price streams opened.",
	})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_streams_open", Help: "Price streams open now.",
	}, func() float64 { n, _ := d.streams.Stats(); return float64(n) })
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "gateway_streams_dropped_total", Help: "Price streams ended because the client fell a buffer behind.",
	}, func() float64 { _, n := d.streams.Stats(); return float64(n) })
	d.registry.MustRegister(opened, open, dropped)
	return opened
}

// handleStream serves GET /v1/prices/stream: Server-Sent Events of the
// price update feed for the ids asked.
func handleStream(d deps) fiber.Handler {
	opened := streamMetrics(d)
	return func(c *fiber.Ctx) error {
		r, err := parseStream(c)
		if err != nil {
			return err
		}
		// Opening a stream is one request for the limit.
		if err := d.throttle(c); err != nil {
			return err
		}
		streamID := d.cfg.InstanceID + ":" + web.NewID()
		ctx, cancel := context.WithTimeout(c.UserContext(), time.Second)
		ok, retry, err := d.slots.Acquire(ctx, r.subject, streamID)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %v", errRedis, err)
		}
		if !ok {
			return httperr.New(http.StatusTooManyRequests,
				fmt.Sprintf("Too many open streams: at most %d per user; close one first", d.slots.Cap())).
				WithHeader(fiber.HeaderRetryAfter, httperr.RetryAfter(max(retry, time.Second).Milliseconds()))
		}
		opened.Inc()
		// A gateway that just started reads the newest prices first.
		select {
		case <-d.streams.Ready():
		case <-time.After(2 * time.Second):
		}
		sub, newest := d.streams.Subscribe(r.keys)
		s := &stream{d: d, req: r, sub: sub, newest: newest, id: streamID}
		s.hijack(c)
		return nil
	}
}

// stream is one open event stream. It runs after the handler returned, so
// it holds nothing of the request's context.
type stream struct {
	d      deps
	req    streamRequest
	sub    *pricestream.Sub
	newest []*pricestream.Event
	id     string
	w      chunkWriter
	// state is streamPending until the connection is handed over, then
	// streamRunning, or streamAbandoned if it never was.
	state atomic.Int32
	// sent is the newest event id written: live events up to it were
	// already sent by the resume.
	sent pricefeed.ID
}

const (
	streamPending int32 = iota
	streamRunning
	streamAbandoned
)

// hijack takes the connection from fasthttp once the handler returns and
// writes the events straight onto it. fasthttp's body-stream writer would
// put an in-memory pipe, a second goroutine and a pair of buffers between
// each stream and its socket (about 56 KB a stream, and two goroutine
// hand-offs per event); a hijacked connection costs one goroutine.
func (s *stream) hijack(c *fiber.Ctx) {
	fc := c.Context()
	fc.Response.Header.SetContentType("text/event-stream; charset=utf-8")
	// Each stream is its own: no cache on the way may keep or share it.
	fc.Response.Header.Set(fiber.HeaderCacheControl, "no-cache")
	// nginx passes the events on as they come rather than buffering them.
	fc.Response.Header.Set("X-Accel-Buffering", "no")
	fc.Response.Header.SetContentLength(-1) // chunked
	// The connection ends with the stream: never back in a keep-alive pool.
	fc.Response.SetConnectionClose()
	head := fc.IsHead()
	fc.HijackSetNoResponse(true)
	// fasthttp hands the connection over unless it broke first; then nobody
	// else would end the subscription and give the slot back.
	abandon := time.AfterFunc(streamWriteTimeout, func() {
		if s.state.CompareAndSwap(streamPending, streamAbandoned) {
			s.end()
		}
	})
	fc.Hijack(func(conn net.Conn) {
		abandon.Stop()
		if !s.state.CompareAndSwap(streamPending, streamRunning) {
			_ = conn.Close()
			return
		}
		// The head is read here, once every middleware has added its headers.
		h := fc.Response.Header.Header()
		if u, ok := conn.(interface{ UnsafeConn() net.Conn }); ok {
			conn = u.UnsafeConn()
		}
		s.w = chunkWriter{conn: conn, head: append([]byte(nil), h...), headOnly: head}
		// Keeping hijacked connections (web.Options.KeepHijacked) lets this
		// handler return now, and fasthttp free the request's buffers.
		go s.run()
	})
}

// end unsubscribes and gives the slot back.
func (s *stream) end() {
	s.d.streams.Unsubscribe(s.sub)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.d.slots.Release(ctx, s.req.subject, s.id); err != nil {
		s.d.log.Warn("releasing a stream slot failed; it lapses by itself", zap.Error(err))
	}
}

func (s *stream) run() {
	defer func() {
		s.w.close()
		s.end()
	}()
	if err := s.start(); err != nil || s.w.headOnly {
		if err != nil {
			s.d.log.Debug("stream ended while starting", zap.Error(err))
		}
		return
	}
	beat := time.NewTicker(s.d.cfg.StreamHeartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case ev := <-s.sub.Events():
			err = s.events(ev)
		case <-beat.C:
			err = s.write([]byte(": heartbeat\n\n"))
		case <-s.sub.Dropped():
			// Too slow: whatever it has not read is replayed when it comes
			// back with its Last-Event-ID.
			s.d.log.Info("dropping a stream that fell behind", zap.String("stream", s.id))
			return
		case <-s.d.streams.Draining():
			_ = s.write([]byte(fmt.Sprintf("retry: %d\nevent: reconnect\ndata: {\"message\":\"This instance is stopping; reconnect with Last-Event-ID to resume\"}\n\n",
				s.d.cfg.StreamRetry.Milliseconds())))
			return
		}
		if err != nil {
			return
		}
	}
}

// start sends the head and the reconnect delay, then either what the
// client missed since its Last-Event-ID or, for a new stream, the newest
// price of each id.
func (s *stream) start() error {
	if s.w.headOnly {
		return s.w.flush()
	}
	if err := s.write([]byte("retry: " + strconv.FormatInt(s.d.cfg.StreamRetry.Milliseconds(), 10) + "\n\n")); err != nil {
		return err
	}
	if s.req.after != "" {
		resumed, err := s.resume()
		if err != nil || resumed {
			return err
		}
	}
	for _, ev := range s.newest {
		if err := s.event(ev); err != nil {
			return err
		}
	}
	return nil
}

// resume replays the updates of the stream's ids after its Last-Event-ID.
// When some of them were trimmed off the feed it says so in a "gap" event
// and reports false: the caller then sends the newest prices instead.
func (s *stream) resume() (bool, error) {
	after, _ := pricefeed.ParseID(s.req.after)
	s.sent = after
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lost, err := pricefeed.Lost(ctx, s.d.redis, after)
	if err != nil {
		return false, err
	}
	if lost {
		body, _ := json.Marshal(map[string]string{
			"lastEventId": s.req.after,
			"message":     "Updates after lastEventId are no longer retained; the newest prices follow",
		})
		return false, s.write(append(append([]byte("event: gap\ndata: "), body...), "\n\n"...))
	}
	want := make(map[string]bool, len(s.req.keys))
	for _, k := range s.req.keys {
		want[k] = true
	}
	from := s.req.after
	for {
		ups, err := pricefeed.Since(ctx, s.d.redis, from, replayPage)
		if err != nil {
			return false, err
		}
		for _, u := range ups {
			if !want[pricestream.Key(u.Coin, u.Currency)] {
				continue
			}
			ev, err := pricestream.NewEvent(u)
			if err != nil {
				continue
			}
			s.buffer(ev)
		}
		if err := s.w.flush(); err != nil {
			return false, err
		}
		if len(ups) < replayPage {
			return true, nil
		}
		from = ups[len(ups)-1].ID
	}
}

// events writes ev and whatever else is already waiting, then flushes
// once: a burst costs one write to the client, not one per update.
func (s *stream) events(ev *pricestream.Event) error {
	s.buffer(ev)
	for range len(s.sub.Events()) {
		s.buffer(<-s.sub.Events())
	}
	return s.w.flush()
}

// event writes ev unless the client has it already.
func (s *stream) event(ev *pricestream.Event) error {
	s.buffer(ev)
	return s.w.flush()
}

func (s *stream) buffer(ev *pricestream.Event) {
	if !s.sent.Less(ev.ID) {
		return
	}
	s.sent = ev.ID
	s.w.add(ev.Frame)
}

func (s *stream) write(b []byte) error {
	s.w.add(b)
	return s.w.flush()
}

// chunkWriter writes a stream's response onto its connection: the head
// first, then each flush as one HTTP/1.1 chunk in one system call.
type chunkWriter struct {
	conn net.Conn
	// head is the response head, sent with the first flush.
	head []byte
	// headOnly answers a HEAD request: the head and nothing else.
	headOnly bool
	buf      []byte
	size     [16]byte
}

// keepBuffer is the largest buffer a stream keeps between flushes; a
// burst's bigger one is left to the garbage collector.
const keepBuffer = 4 << 10

func (w *chunkWriter) add(b []byte) { w.buf = append(w.buf, b...) }

// flush writes what was added, within streamWriteTimeout: a client that
// stops reading is cut off after it, rather than holding its connection.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 && w.head == nil {
		return nil
	}
	out := net.Buffers{}
	if w.head != nil {
		out = append(out, w.head)
		w.head = nil
	}
	if len(w.buf) > 0 && !w.headOnly {
		size := strconv.AppendInt(w.size[:0], int64(len(w.buf)), 16)
		out = append(out, append(size, "\r\n"...), w.buf, crlf)
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := out.WriteTo(w.conn)
	if cap(w.buf) > keepBuffer {
		w.buf = nil
	}
	w.buf = w.buf[:0]
	return err
}

var crlf = []byte("\r\n")

// close ends the body with the last chunk, when the client still reads,
// and closes the connection.
func (w *chunkWriter) close() {
	if w.head == nil && !w.headOnly {
		_ = w.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = w.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = w.conn.Close()
}
