package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// Bad flags and a soak too short for its schedule fail before anything
// starts, naming the problem.
func TestRunRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-duration", "5s", "-seed", "1", "-dir", t.TempDir()}, "too short"},
		{[]string{"-nope"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var stderr strings.Builder
		_, err := run(context.Background(), c.args, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), c.want) {
			t.Errorf("%v: error %v (stderr %q), want one saying %q", c.args, err, stderr.String(), c.want)
		}
	}
}
