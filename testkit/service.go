package testkit

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// RunFunc is a service's run function (Mat Ryer's pattern): it serves until
// ctx is done, reading settings only through getenv, and sends its listen
// address on ready once it accepts connections.
type RunFunc func(ctx context.Context, getenv func(string) string, stdout io.Writer, ready chan<- string) error

// StartService runs a service in-process with the given environment and
// returns its base URL. The service is stopped, and a clean exit required,
// when tb ends; tb may be a *testing.F so a fuzz target can share one
// service across its inputs. Logs go to stderr with -v, else nowhere.
func StartService(tb testing.TB, name string, run RunFunc, env map[string]string) string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	getenv := func(k string) string { return env[k] }
	go func() { done <- run(ctx, getenv, out, ready) }()
	select {
	case addr := <-ready:
		tb.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s stopped with %v", name, err)
				}
			case <-time.After(20 * time.Second):
				tb.Errorf("%s did not stop within 20s", name)
			}
		})
		return "http://" + addr
	case err := <-done:
		cancel()
		tb.Fatalf("%s did not start: %v", name, err)
	case <-time.After(10 * time.Second):
		cancel()
		tb.Fatalf("%s did not start within 10s", name)
	}
	return ""
}
