package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond every 50 ms until it holds, and fails tb if it does
// not within timeout: for what a system does a moment after it is asked.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
