package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"cryptopulse/tools/loadgen"
)

func TestRunPrintsJSON(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path+" "+r.Header.Get("X-Test")]++
		mu.Unlock()
	}))
	defer srv.Close()
	var out strings.Builder
	err := run(context.Background(), []string{"-url", srv.URL + "/p/{id}", "-ids", "a, b", "-rate", "100", "-duration", "200ms", "-H", "X-Test: yes"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var res loadgen.Result
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if res.Planned != 20 || res.Status[200] != 20 || seen["/p/a yes"]+seen["/p/b yes"] != 20 {
		t.Errorf("result %+v, server saw %v", res, seen)
	}
}

func TestParseFlagsRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-url", "http://x", "-ids", "a"},
		{"-url", "http://x", "-H", "nocolon"},
		{"-url", "http://x", "extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
