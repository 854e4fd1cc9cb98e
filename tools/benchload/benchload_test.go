package benchload

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cryptopulse/tools/cgsim"
)

func TestParseWrk(t *testing.T) {
	out := []byte(`Running 2s test @ http://127.0.0.1:1/health
  2 threads and 64 connections
BENCH requests 5000
BENCH duration_us 2000000
BENCH p50_us 1500
BENCH p99_us 9000
BENCH error connect 0
BENCH error read 0
BENCH error write 0
BENCH error timeout 3
BENCH status 200 4000
BENCH status 429 990
BENCH status 200 7
BENCH status 504 3
`)
	m, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 5000 || m.RPS != 2500 || m.P50 != 1500*time.Microsecond || m.P99 != 9*time.Millisecond ||
		m.Status[200] != 4007 || m.Non2xx() != 993 || m.ErrorCount() != 3 || m.Errors["timeout"] != 3 {
		t.Errorf("parsed %+v", m)
	}
	if statusText(m) != "429×990 504×3" || errorText(m) != "timeout×3" {
		t.Errorf("status %q errors %q", statusText(m), errorText(m))
	}
	for _, bad := range []string{"BENCH requests 1\n", "BENCH requests 1\nBENCH duration_us 1\nBENCH p50_us 1\nBENCH p99_us 1\nBENCH what 1 2\n"} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMaxInWindow(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var calls []cgsim.Call
	// 10 calls a second apart, then 25 calls 2 s apart starting at 70 s.
	for i := range 10 {
		calls = append(calls, cgsim.Call{Time: t0.Add(time.Duration(i) * time.Second)})
	}
	for i := range 25 {
		calls = append(calls, cgsim.Call{Time: t0.Add(70*time.Second + time.Duration(i)*2*time.Second)})
	}
	// The first run fits in one window (10 calls), the second too (25 in
	// 48 s), and they are more than 60 s apart: the densest window has 25.
	if got := maxInWindow(calls, time.Minute); got != 25 {
		t.Errorf("max in 60 s = %d, want 25", got)
	}
	// A call exactly 60 s after another starts a new window.
	edge := []cgsim.Call{{Time: t0}, {Time: t0.Add(time.Minute)}}
	if got := maxInWindow(edge, time.Minute); got != 1 {
		t.Errorf("edge = %d, want 1", got)
	}
	if maxInWindow(nil, time.Minute) != 0 {
		t.Error("empty log")
	}
}

func TestTableShowsBeforeAndAfter(t *testing.T) {
	sc := scenarios()[0]
	rep := &Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Finished: time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC),
		Builds:  []Build{{Label: "base main", Rev: "abc1234"}, {Label: "current", Rev: "def5678"}},
		Ceiling: Measurement{RPS: 10000, P50: time.Millisecond, P99: 3 * time.Millisecond, Status: map[int]int{200: 1}},
		Rows: []Row{{Scenario: sc, Results: []Measurement{
			{RPS: 300, P50: 98 * time.Millisecond, P99: 120 * time.Millisecond, Status: map[int]int{200: 10, 504: 2}, Calls: 40, CallsMax60: 40,
				GatewayRSS: []int64{210 << 20, 200 << 20}, FetcherRSS: []int64{20 << 20, 21 << 20}, Why: "slow"},
			{RPS: 4000, P50: 4 * time.Millisecond, P99: 9 * time.Millisecond, Status: map[int]int{200: 12}, Calls: 30, CallsMax60: 30,
				GatewayRSS: []int64{90 << 20, 91 << 20}, FetcherRSS: []int64{20 << 20, 21 << 20}, Pass: true},
		}}, {Scenario: scenarios()[1], Results: []Measurement{{Err: errors.New("stack did not start\nlong output")}, {Pass: true, Requests: 1}}}},
	}
	out := rep.Table()
	for _, want := range []string{
		"base main = abc1234, current = def5678", "cells read base main → current",
		"| 300 → 4000 ", "98.0 ms → 4.00 ms", "504×2 → 0", "40 (40) → 30 (30)", "210/200 → 90/91",
		"3% → 40%", "FAIL → PASS", "ERROR → PASS", "error → 0",
		"- machinery (base main): slow", "- budget (base main): ERROR stack did not start\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Every row has as many cells as the header.
	var cells []int
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "|") {
			cells = append(cells, strings.Count(line, "|"))
		}
	}
	if len(cells) != 5 || cells[0] != cells[1] || cells[0] != cells[4] {
		t.Errorf("rows have %v separators:\n%s", cells, out)
	}
}

func TestSelectScenarios(t *testing.T) {
	got, err := selectScenarios([]string{"waiting", "ceiling", "machinery"})
	if err != nil || len(got) != 2 || got[0].Name != "machinery" || got[1].Name != "waiting" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := selectScenarios([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "openloop") {
		t.Errorf("unknown scenario: %v", err)
	}
	if all, _ := selectScenarios(nil); len(all) != len(ScenarioNames()) || len(all) != 10 {
		t.Errorf("all = %d", len(all))
	}
}

func TestOpenLoopCoinsAreQuoted(t *testing.T) {
	builtin, added := openLoopCoins()
	seen := map[string]bool{}
	for _, id := range append(builtin, added...) {
		if seen[id] {
			t.Errorf("%s twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 100 || builtin[0] != hotCoin {
		t.Fatalf("%d coins, hottest %s", len(seen), builtin[0])
	}
	// The built-in ones are quoted by a fresh simulator as they are, the
	// others once listed, as the harness does.
	sim := cgsim.New(cgsim.Config{})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	for _, id := range added {
		sim.AddCoin(id, id, id)
	}
	resp, err := http.Get(srv.URL + "/api/v3/simple/price?vs_currencies=usd&ids=" + strings.Join(append(builtin, added...), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var prices map[string]map[string]json.Number
	if err := json.NewDecoder(resp.Body).Decode(&prices); err != nil {
		t.Fatal(err)
	}
	for id := range seen {
		if prices[id]["usd"] == "" {
			t.Errorf("simulator does not quote %s", id)
		}
	}
}
