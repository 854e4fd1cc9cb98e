// Package web builds the Fiber app every CryptoPulse service serves: the one
// error translator, request and instance ids, security headers, timeouts,
// health and readiness, Prometheus metrics, and a graceful shutdown.
package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
)

// Options configure an app.
type Options struct {
	Service   string
	Instance  string
	Log       *zap.Logger
	Translate httperr.Translate
	// Registry receives the HTTP metrics; services add their own to it.
	Registry *prometheus.Registry
	// BodyLimit in bytes; 0 means 16 KiB, plenty for a login body.
	BodyLimit    int
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// KeepHijacked leaves a hijacked connection to its handler, which may
	// return at once and close it later (fasthttp's KeepHijackedConns):
	// fasthttp then frees the request's buffers instead of holding them
	// for the connection's life.
	KeepHijacked bool
}

// MaxRequestHead bounds a request's line and headers together; a longer head
// is answered 431 in the usual JSON shape. Every connection holds a buffer
// this big: 8 KiB, nginx's own header line limit, is what ten thousand
// waiting clients can afford (16 KiB cost 40 MB more per 5,000 of them).
const MaxRequestHead = 8 << 10

// NewRegistry returns a metrics registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// New returns a Fiber app with the shared middleware installed.
func New(o Options) *fiber.App {
	if o.BodyLimit == 0 {
		o.BodyLimit = 16 << 10
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.WriteTimeout == 0 {
		// Long enough for a price request that waits out a batch window.
		o.WriteTimeout = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 75 * time.Second
	}
	answer := httperr.Handler(o.Log, o.Translate)
	app := fiber.New(fiber.Config{
		AppName:               o.Service,
		DisableStartupMessage: true,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			// What fasthttp refuses before routing (a head over
			// MaxRequestHead, a request it cannot parse) never passes the
			// middleware below, yet its answer carries the same headers.
			if httperr.RequestID(c) == "" {
				stamp(c, o.Instance)
			}
			return answer(c, err)
		},
		BodyLimit:      o.BodyLimit,
		ReadTimeout:    o.ReadTimeout,
		WriteTimeout:   o.WriteTimeout,
		IdleTimeout:    o.IdleTimeout,
		ReadBufferSize: MaxRequestHead,
	})
	app.Server().KeepHijackedConns = o.KeepHijacked
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests answered, by route and status.",
	}, []string{"method", "route", "status"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "Time to answer an HTTP request.",
		Buckets: []float64{.005, .01, .05, .1, .5, 1, 2.5, 5, 6, 7.5, 10},
	}, []string{"method", "route"})
	if o.Registry != nil {
		o.Registry.MustRegister(reqs, lat)
	}
	app.Use(func(c *fiber.Ctx) (err error) {
		start := time.Now()
		id := stamp(c, o.Instance)
		defer func() {
			if r := recover(); r != nil {
				o.Log.Error("panic", zap.Any("panic", r), zap.String("requestId", id), zap.Stack("stack"))
				err = httperr.New(http.StatusInternalServerError, "Internal server error")
			}
			if err != nil {
				// Answer through the translator now, so the metrics see the real status.
				if herr := app.ErrorHandler(c, err); herr != nil {
					o.Log.Error("error handler failed", zap.Error(herr))
				}
				err = nil
			}
			route := c.Route().Path
			status := strconv.Itoa(c.Response().StatusCode())
			reqs.WithLabelValues(c.Method(), route, status).Inc()
			lat.WithLabelValues(c.Method(), route).Observe(time.Since(start).Seconds())
			o.Log.Debug("request", zap.String("method", c.Method()), zap.String("path", c.Path()),
				zap.String("status", status), zap.Duration("took", time.Since(start)), zap.String("requestId", id))
		}()
		return c.Next()
	})
	return app
}

// stamp gives a request its id (the caller's X-Request-Id when it is sane,
// else a new one) and sets the headers every answer carries. It returns the id.
func stamp(c *fiber.Ctx, instance string) string {
	id := c.Get("X-Request-Id")
	if id == "" || len(id) > 128 {
		id = NewID()
	}
	c.Locals("requestId", id)
	c.Set("X-Request-Id", id)
	c.Set("X-Instance-Id", instance)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Cache-Control", "no-store")
	return id
}

// Check reports whether one dependency is usable.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each dependency check of /ready, so the answer comes
// within the 2 s the readiness probes give it (Kubernetes' timeoutSeconds,
// the container healthcheck), whatever hangs.
const readyTimeout = time.Second

// Probes installs /health (the process is alive) and /ready (every dependency
// answers; 503 naming those that do not). Neither is throttled.
func Probes(app *fiber.App, service, instance string, checks ...Check) {
	app.Get("/health", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok", "service": service, "instance": instance})
	})
	app.Get("/ready", func(c *fiber.Ctx) error {
		status, down := checkAll(c.UserContext(), readyTimeout, checks)
		if len(down) > 0 {
			return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{
				"statusCode": http.StatusServiceUnavailable,
				"message":    fmt.Sprintf("Not ready: %v down", down),
				"error":      "Service Unavailable",
				"checks":     status,
			})
		}
		return c.JSON(fiber.Map{"status": "ready", "service": service, "instance": instance, "checks": status})
	})
}

// checkAll runs every check at once, each under the same deadline, and
// returns each one's state ("up" or "down") and the names of those down, in
// the order given. A check that has not answered by the deadline is down: a
// client that does not honour its context (a hung server read without a
// deadline) is left to finish on its own rather than hold the answer.
func checkAll(ctx context.Context, timeout time.Duration, checks []Check) (map[string]string, []string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	// Buffered, so a check that answers after the deadline never blocks.
	results := make(chan result, len(checks))
	for i, ch := range checks {
		go func() { results <- result{i, ch.Check(ctx)} }()
	}
	up := make([]bool, len(checks))
wait:
	for range checks {
		select {
		case r := <-results:
			up[r.i] = r.err == nil
		case <-ctx.Done():
			break wait
		}
	}
	status := make(map[string]string, len(checks))
	var down []string
	for i, ch := range checks {
		if up[i] {
			status[ch.Name] = "up"
			continue
		}
		status[ch.Name] = "down"
		down = append(down, ch.Name)
	}
	return status, down
}

// Metrics installs GET /metrics in the Prometheus text format.
func Metrics(app *fiber.App, reg *prometheus.Registry) {
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
}

// ListenAndServe listens on addr, logs and reports (on ready, when not nil)
// the address it got, and serves until ctx is done, as Serve does.
func ListenAndServe(ctx context.Context, app *fiber.App, addr string, grace time.Duration, log *zap.Logger, ready chan<- string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = Serve(ctx, app, ln, grace)
	log.Info("stopped serving", zap.Error(err))
	return err
}

// Serve answers on ln until ctx is done, then stops taking connections and
// waits up to grace for the requests in flight to finish.
func Serve(ctx context.Context, app *fiber.App, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := app.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
