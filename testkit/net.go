package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Default ports of the services this package runs. Ours never use them so a
// test can never talk to (or clobber) a system-wide server by accident.
const (
	defaultRedisPort    = 6379
	defaultPostgresPort = 5432
)

func isDefaultPort(port int) bool {
	return port == defaultRedisPort || port == defaultPostgresPort
}

// FreePort returns a TCP port on 127.0.0.1 that was free at the time of the
// call.
//
// The kernel picks the port for a throwaway listener, so another process can
// still grab it before the caller binds it; LaunchRedis and LaunchPostgres
// retry with a fresh port when that happens.
func FreePort() (int, error) {
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testkit: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("testkit: find a free port: %w", err)
		}
		if !isDefaultPort(port) {
			return port, nil
		}
	}
	return 0, errors.New("testkit: find a free port: kernel kept handing out a default service port")
}

// WaitTCP blocks until something accepts TCP connections on addr
// ("host:port"), or ctx is done. It polls with a short, growing delay, so it
// is meant for servers that are expected to come up within seconds; pass a
// ctx with a deadline, or it waits forever for a server that never starts.
func WaitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	delay := 5 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testkit: nothing listening on %s: %w (last dial error: %v)", addr, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// ConnectionReset reports whether err, from an HTTP client, is the server
// resetting or closing an established connection under the request. A
// server that refuses a request too big to read (a 431 or 413) and closes
// without reading the rest makes the kernel reset the connection, so its
// client may see that instead of the answer: as the reset itself, a broken
// pipe, an EOF, or (Go's transport closing the connection on the reset its
// reader saw while its writer still wrote) a use of the closed connection.
// A refused connection is not one.
func ConnectionReset(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}
