package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
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
	r := streamRequest{subject: "user:" + claimsOf(c).Subject, currency: c.Query("vsCurrency", "usd")}
	if err := price.ValidateCurrency(r.currency); err != nil {
		problems = append(problems, err.Error())
	}
	r.after = c.Get("Last-Event-ID")
	if r.after == "" {
		r.after = c.Query("lastEventId")
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
	slots := pricestream.Slots{RDB: d.redis, Cap: d.cfg.StreamsPerUser, TTL: 3 * d.cfg.StreamHeartbeat}
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
		ok, retry, err := slots.Acquire(ctx, r.subject, streamID)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %v", errRedis, err)
		}
		if !ok {
			return httperr.New(http.StatusTooManyRequests,
				fmt.Sprintf("Too many open streams: at most %d per user; close one first", d.cfg.StreamsPerUser)).
				WithHeader(fiber.HeaderRetryAfter, httperr.RetryAfter(max(retry, time.Second).Milliseconds()))
		}
		opened.Inc()
		// A gateway that just started reads the newest prices first.
		select {
		case <-d.streams.Ready():
		case <-time.After(2 * time.Second):
		}
		sub, newest := d.streams.Subscribe(r.keys)
		c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
		// nginx passes the events on as they come rather than buffering them.
		c.Set("X-Accel-Buffering", "no")
		s := &stream{d: d, req: r, sub: sub, newest: newest, conn: c.Context().Conn(), slots: slots, id: streamID}
		c.Context().SetBodyStreamWriter(fasthttp.StreamWriter(s.run))
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
	conn   interface{ SetWriteDeadline(time.Time) error }
	slots  pricestream.Slots
	id     string
	// sent is the newest event id written: live events up to it were
	// already sent by the resume.
	sent pricefeed.ID
}

func (s *stream) run(w *bufio.Writer) {
	defer func() {
		s.d.streams.Unsubscribe(s.sub)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.slots.Release(ctx, s.req.subject, s.id); err != nil {
			s.d.log.Warn("releasing a stream slot failed; it lapses by itself", zap.Error(err))
		}
	}()
	if err := s.start(w); err != nil {
		s.d.log.Debug("stream ended while starting", zap.Error(err))
		return
	}
	beat := time.NewTicker(s.d.cfg.StreamHeartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case ev := <-s.sub.Events():
			err = s.events(w, ev)
		case <-beat.C:
			err = s.write(w, []byte(": heartbeat\n\n"))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if rerr := s.slots.Renew(ctx, s.req.subject, s.id); rerr != nil {
					s.d.log.Warn("renewing a stream slot failed", zap.Error(rerr))
				}
				cancel()
			}
		case <-s.sub.Dropped():
			// Too slow: whatever it has not read is replayed when it comes
			// back with its Last-Event-ID.
			s.d.log.Info("dropping a stream that fell behind", zap.String("stream", s.id))
			return
		case <-s.d.streams.Draining():
			_ = s.write(w, []byte(fmt.Sprintf("retry: %d\nevent: reconnect\ndata: {\"message\":\"This instance is stopping; reconnect with Last-Event-ID to resume\"}\n\n",
				s.d.cfg.StreamRetry.Milliseconds())))
			return
		}
		if err != nil {
			return
		}
	}
}

// start sends the reconnect delay, then either what the client missed
// since its Last-Event-ID or, for a new stream, the newest price of each id.
func (s *stream) start(w *bufio.Writer) error {
	if err := s.write(w, []byte("retry: "+strconv.FormatInt(s.d.cfg.StreamRetry.Milliseconds(), 10)+"\n\n")); err != nil {
		return err
	}
	if s.req.after != "" {
		resumed, err := s.resume(w)
		if err != nil || resumed {
			return err
		}
	}
	for _, ev := range s.newest {
		if err := s.event(w, ev); err != nil {
			return err
		}
	}
	return nil
}

// resume replays the updates of the stream's ids after its Last-Event-ID.
// When some of them were trimmed off the feed it says so in a "gap" event
// and reports false: the caller then sends the newest prices instead.
func (s *stream) resume(w *bufio.Writer) (bool, error) {
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
		return false, s.write(w, append(append([]byte("event: gap\ndata: "), body...), "\n\n"...))
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
			if err := s.event(w, ev); err != nil {
				return false, err
			}
		}
		if len(ups) < replayPage {
			return true, nil
		}
		from = ups[len(ups)-1].ID
	}
}

// events writes ev and whatever else is already waiting, then flushes
// once: a burst costs one write to the client, not one per update.
func (s *stream) events(w *bufio.Writer, ev *pricestream.Event) error {
	s.deadline()
	s.buffer(w, ev)
	for range len(s.sub.Events()) {
		s.buffer(w, <-s.sub.Events())
	}
	return w.Flush()
}

// event writes ev unless the client has it already.
func (s *stream) event(w *bufio.Writer, ev *pricestream.Event) error {
	s.deadline()
	s.buffer(w, ev)
	return w.Flush()
}

func (s *stream) buffer(w *bufio.Writer, ev *pricestream.Event) {
	if !s.sent.Less(ev.ID) {
		return
	}
	s.sent = ev.ID
	// A bufio.Writer keeps its first error and reports it on Flush.
	_, _ = w.Write(ev.Frame)
}

func (s *stream) write(w *bufio.Writer, b []byte) error {
	s.deadline()
	_, _ = w.Write(b)
	return w.Flush()
}

// deadline gives the writes about to happen streamWriteTimeout, before
// any of them can reach the connection (a full buffer writes through).
func (s *stream) deadline() { _ = s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) }
