package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQuickRunWritesTheTable runs the benchmark as `make bench-load
// BENCH_QUICK=1` does, on two scenarios and 3 s each: real builds, stacks,
// nginx, wrk and the open-loop generator. It checks that the table is
// written and printed and that its numbers are sane; it does not check the
// targets, which are for the benchmark itself.
func TestQuickRunWritesTheTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "load.txt")
	var stdout, stderr bytes.Buffer
	env := map[string]string{"BENCH_QUICK": "1"}
	err := run(ctx, []string{"-scenarios", "openloop", "-duration", "3s", "-out", out, "-dir", t.TempDir()},
		func(k string) string { return env[k] }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	table, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), string(table)) {
		t.Errorf("stdout does not carry the table written to %s", out)
	}
	if !strings.Contains(string(table), "quick (BENCH_QUICK=1") {
		t.Errorf("table does not say it is a quick run:\n%s", table)
	}

	rows := tableRows(string(table))
	head := rows["scenario"]
	if len(rows) != 3 || head == nil {
		t.Fatalf("want header, ceiling and open-loop rows, got %d:\n%s", len(rows), table)
	}
	col := func(row []string, name string) string {
		for i, h := range head {
			if h == name {
				return row[i]
			}
		}
		t.Fatalf("no column %q in %v", name, head)
		return ""
	}
	var ceiling, open []string
	for k, r := range rows {
		switch {
		case strings.HasPrefix(k, "ceiling"):
			ceiling = r
		case strings.HasPrefix(k, "open loop"):
			open = r
		}
	}
	if ceiling == nil || open == nil {
		t.Fatalf("rows missing:\n%s", table)
	}

	// The ceiling: thousands of /health answers a second, all 200.
	if rps := number(t, col(ceiling, "req/s")); rps < 500 {
		t.Errorf("ceiling %v req/s:\n%s", rps, table)
	}
	if col(ceiling, "non-2xx") != "0" || col(ceiling, "no answer") != "0" || col(ceiling, "× ceiling") != "100%" {
		t.Errorf("ceiling row %v", ceiling)
	}
	if p50, p99 := latency(t, col(ceiling, "p50")), latency(t, col(ceiling, "p99")); p50 <= 0 || p99 < p50 {
		t.Errorf("ceiling p50 %v p99 %v", p50, p99)
	}

	// The open loop: 1,500 requests offered, answered (whatever the
	// status), some upstream calls made, both gateways and fetchers
	// sampled, and a verdict.
	if rps := number(t, col(open, "req/s")); rps <= 0 || rps > 600 {
		t.Errorf("open loop %v req/s, offered 500:\n%s", rps, table)
	}
	calls := strings.Fields(col(open, "calls (max/60s)"))
	if n := number(t, calls[0]); n < 1 {
		t.Errorf("open loop made %v upstream calls", n)
	}
	for _, c := range []string{"gateway RSS MB", "fetcher RSS MB"} {
		parts := strings.Split(col(open, c), "/")
		if len(parts) != 2 || number(t, parts[0]) < 5 || number(t, parts[1]) < 5 {
			t.Errorf("%s = %q, want two instances of at least 5 MB", c, col(open, c))
		}
	}
	if v := col(open, "target"); v != "PASS" && v != "FAIL" {
		t.Errorf("target %q", v)
	}
	if !strings.Contains(string(table), "sent 1500 of 1500 at 500/s") {
		t.Errorf("open loop did not send what it planned:\n%s", table)
	}
}

// tableRows maps each table row's first cell to its cells.
func tableRows(table string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows[cells[0]] = cells
	}
	return rows
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return v
}

func latency(t *testing.T, s string) time.Duration {
	t.Helper()
	v, unit, _ := strings.Cut(s, " ")
	f := number(t, v)
	switch unit {
	case "ms":
		return time.Duration(f * 1e6)
	case "s":
		return time.Duration(f * 1e9)
	}
	t.Fatalf("latency %q", s)
	return 0
}
