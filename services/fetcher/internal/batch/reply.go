package batch

import (
	"errors"
	"fmt"
)

// ErrProtocol is returned, wrapped, when a script's reply does not have the
// shape the Go side expects: the two sides of the protocol have drifted
// apart, and a silent zero value would hide it.
var ErrProtocol = errors.New("batch: unexpected script reply")

// fields reads one positional script reply. The first mismatch (a reply of
// another length, a value of another type) is kept in err; reads after it
// return zero values, so a decoder reads every field and checks err once.
type fields struct {
	what string
	v    []any
	err  error
}

// decode expects v to be a list of n values.
func decode(what string, v any, n int) *fields {
	f := &fields{what: what}
	if row, ok := v.([]any); ok && len(row) == n {
		f.v = row
	} else {
		f.err = fmt.Errorf("%w: %s: want a list of %d values, got %T %v", ErrProtocol, what, n, v, v)
	}
	return f
}

func (f *fields) mismatch(i int, want string) {
	f.err = fmt.Errorf("%w: %s: value %d is %T %v, want %s", ErrProtocol, f.what, i, f.v[i], f.v[i], want)
}

func (f *fields) str(i int) string {
	if f.err != nil {
		return ""
	}
	s, ok := f.v[i].(string)
	if !ok {
		f.mismatch(i, "a string")
	}
	return s
}

func (f *fields) int(i int) int64 {
	if f.err != nil {
		return 0
	}
	n, ok := f.v[i].(int64)
	if !ok {
		f.mismatch(i, "an integer")
	}
	return n
}

func (f *fields) list(i int) []any {
	if f.err != nil {
		return nil
	}
	l, ok := f.v[i].([]any)
	if !ok {
		f.mismatch(i, "a list")
	}
	return l
}
