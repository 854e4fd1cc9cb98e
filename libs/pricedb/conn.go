package pricedb

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// A Postgres that hangs (its processes stopped, or the network silently
// dropping packets) keeps connections open and answers nothing. lib/pq reads
// its socket without a deadline and does not stop reading when a context
// ends (it only sends Postgres a cancel request, which a hung server does
// not read either), so a context alone cannot bound a query. The bounds are
// therefore set where every query passes, on the connection itself.

// answerGrace is how much longer than the statement timeout the client waits
// for an answer: a slow query on a live server is cancelled by Postgres
// itself first and the connection stays usable; only a server that answers
// nothing at all loses the connection.
const answerGrace = 250 * time.Millisecond

// keepAlive finds an idle pooled connection whose peer vanished (a dropped
// network) in about half a minute, rather than the kernel's two hours.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// connector returns lib/pq's connector for url with the bounds of
// queryTimeout: the server's statement_timeout (unless the URL sets one), a
// deadline on every read and write, and TCP keepalive; connecting
// (handshake and authentication included) is bounded by connectTimeout
// unless the URL's connect_timeout says otherwise.
func connector(url string, queryTimeout, connectTimeout time.Duration) (*pq.Connector, error) {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return nil, err
	}
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	if _, set := cfg.Runtime["statement_timeout"]; !set {
		cfg.Runtime["statement_timeout"] = strconv.FormatInt(queryTimeout.Milliseconds(), 10)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Dialer(dialer{d: net.Dialer{KeepAliveConfig: keepAlive}, wait: queryTimeout + answerGrace})
	return c, nil
}

// dialer opens connections whose every read and write gives up after wait.
// It also serves lib/pq's cancel requests, so those cannot hang either.
type dialer struct {
	d    net.Dialer
	wait time.Duration
}

func (d dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d dialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, wait: d.wait}, nil
}

// deadlineConn sets a fresh deadline before each read and write. A read
// that times out returns a *net.OpError, on which lib/pq marks the
// connection bad, so database/sql closes it instead of pooling a
// connection with half an answer pending; the pool dials afresh once
// Postgres answers again.
type deadlineConn struct {
	net.Conn
	wait time.Duration
	// fixed is the deadline lib/pq set itself (connect_timeout, for the
	// handshake), in Unix nanoseconds, 0 for none; it wins when sooner.
	fixed atomic.Int64
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	c.fixed.Store(n)
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) deadline() time.Time {
	d := time.Now().Add(c.wait)
	if f := c.fixed.Load(); f != 0 && f < d.UnixNano() {
		return time.Unix(0, f)
	}
	return d
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(c.deadline()); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
