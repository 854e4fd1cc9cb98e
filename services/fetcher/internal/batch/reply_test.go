package batch

import (
	"errors"
	"testing"
	"time"
)

// A reply of another shape than the Go side expects is an error, never a
// batch of zero values: the scripts and their decoders change together.
func TestRepliesOfAnotherShapeAreErrors(t *testing.T) {
	now := time.Now()
	row := []any{"bitcoin:usd:1-1", "bitcoin", "usd", int64(3), "window", int64(1), int64(9000), int64(1000), "coingecko", "", int64(0)}
	for name, decodeReply := range map[string]func() error{
		"enqueue, short":            func() error { _, err := joined("1-0", []any{"id", int64(1), "queued", int64(0)}, now); return err },
		"enqueue, size as a string": func() error { _, err := joined("1-0", []any{"id", "1", "queued", int64(0), int64(5)}, now); return err },
		"enqueue, not a list":       func() error { _, err := joined("1-0", int64(1), now); return err },
		"claim, rows not a list":    func() error { _, err := claimed([]any{int64(5), "x", int64(-1), int64(5), []any{}}, now); return err },
		"claim, short row": func() error {
			_, err := claimed([]any{int64(5), []any{row[:10]}, int64(-1), int64(5), []any{}}, now)
			return err
		},
		"claim, waiting deadline as a string": func() error {
			_, err := claimed([]any{int64(5), []any{}, int64(-1), int64(5), []any{[]any{"id", "9000"}}}, now)
			return err
		},
	} {
		if err := decodeReply(); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: error %v, want ErrProtocol", name, err)
		}
	}
	c, err := claimed([]any{int64(5), []any{row}, int64(-1), int64(5), []any{[]any{"ethereum:usd:2-1", int64(9000)}}}, now)
	if err != nil || len(c.Batches) != 1 || c.Batches[0].Size != 3 || c.Batches[0].Coin != "bitcoin" || len(c.Waiting) != 1 {
		t.Fatalf("a well-formed claim reply: %+v, %v", c, err)
	}
}
