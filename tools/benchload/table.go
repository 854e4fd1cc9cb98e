package benchload

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"
)

// ms formats a latency for people: two decimals below 10 ms, seconds above
// one.
func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mb(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

// mbList is each instance's peak in MB, "41/43".
func mbList(v []int64) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, len(v))
	for i, b := range v {
		parts[i] = mb(b)
	}
	return strings.Join(parts, "/")
}

// statusText lists non-2xx answers by status, "0" when there are none.
func statusText(m Measurement) string {
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(m.Status)) {
		if s < 200 || s > 299 {
			parts = append(parts, fmt.Sprintf("%d×%d", s, m.Status[s]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

// errorText lists requests without an answer by kind, "0" when none.
func errorText(m Measurement) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m.Errors)) {
		if m.Errors[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", k, m.Errors[k]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

func passText(m Measurement) string {
	switch {
	case m.Err != nil:
		return "ERROR"
	case m.Pass:
		return "PASS"
	}
	return "FAIL"
}

// columns are the table's measured columns, each a cell of one measurement.
func columns(ceiling float64) []struct {
	head string
	cell func(Measurement) string
} {
	return []struct {
		head string
		cell func(Measurement) string
	}{
		{"req/s", func(m Measurement) string {
			if m.NoRate {
				return "-"
			}
			return fmt.Sprintf("%.0f", m.RPS)
		}},
		{"p50", func(m Measurement) string { return ms(m.P50) }},
		{"p99", func(m Measurement) string { return ms(m.P99) }},
		{"non-2xx", statusText},
		{"no answer", errorText},
		{"calls (max/60s)", func(m Measurement) string { return fmt.Sprintf("%d (%d)", m.Calls, m.CallsMax60) }},
		{"gateway RSS MB", func(m Measurement) string { return mbList(m.GatewayRSS) }},
		{"fetcher RSS MB", func(m Measurement) string { return mbList(m.FetcherRSS) }},
		{"× ceiling", func(m Measurement) string {
			if m.NoRate {
				return "-"
			}
			return fmt.Sprintf("%.0f%%", 100*ratio(m.RPS, ceiling))
		}},
	}
}

// Table renders the report as text: a header, one row per scenario with
// before → after in each cell when two builds ran, then the targets, the
// reasons for each FAIL, scenario details and notes.
func (r *Report) Table() string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick (BENCH_QUICK=1: short runs, 2,000 waiting clients)"
	}
	var builds []string
	for _, bd := range r.Builds {
		builds = append(builds, bd.Label+" = "+bd.Rev)
	}
	fmt.Fprintf(&b, "# make bench-load, %s, %s mode, %d cores, %s\n", r.Started.Format(time.RFC3339), mode, runtime.NumCPU(), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "# builds: %s", strings.Join(builds, ", "))
	if len(r.Builds) > 1 {
		fmt.Fprintf(&b, "; cells read %s → %s", r.Builds[0].Label, r.Builds[1].Label)
	}
	b.WriteString("\n# each scenario on a fresh stack: nginx, auth, 2 gateways, 2 fetchers, Redis, PostgreSQL, CoinGecko simulator (0 ms latency);\n")
	b.WriteString("# THROTTLE_GLOBAL_LIMIT=10000000 and GOMEMLIMIT=120MiB (as in docker-compose.multi.yml) everywhere. PASS/FAIL are information, not a gate: the machine is noisy.\n\n")

	cols := columns(r.Ceiling.RPS)
	head := []string{"scenario"}
	for _, c := range cols {
		head = append(head, c.head)
	}
	head = append(head, "target")
	rows := [][]string{head}
	ceil := []string{"ceiling: GET /health via nginx, -c64"}
	for _, c := range cols {
		ceil = append(ceil, c.cell(r.Ceiling))
	}
	rows = append(rows, append(ceil, "-"))
	for _, row := range r.Rows {
		line := []string{row.Scenario.Title}
		for _, c := range cols {
			line = append(line, joinCells(row.Results, c.cell, "error"))
		}
		line = append(line, joinCells(row.Results, passText, "ERROR"))
		rows = append(rows, line)
	}
	writeAligned(&b, rows)

	b.WriteString("\nTargets (ratios are to this run's ceiling):\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "- %s: %s\n", row.Scenario.Name, row.Scenario.Target)
	}
	var why, details []string
	for _, row := range r.Rows {
		for i, m := range row.Results {
			label := row.Scenario.Name
			if len(r.Builds) > 1 {
				label += " (" + r.Builds[i].Label + ")"
			}
			switch {
			case m.Err != nil:
				why = append(why, fmt.Sprintf("- %s: ERROR %s", label, firstLine(m.Err.Error())))
			case !m.Pass:
				why = append(why, fmt.Sprintf("- %s: %s", label, m.Why))
			}
			if m.Detail != "" {
				details = append(details, fmt.Sprintf("- %s: %s", label, m.Detail))
			}
		}
	}
	if len(why) > 0 {
		b.WriteString("\nWhy FAIL:\n" + strings.Join(why, "\n") + "\n")
	}
	if len(details) > 0 {
		b.WriteString("\nDetails:\n" + strings.Join(details, "\n") + "\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// joinCells is one cell per build, "before → after"; a build whose run
// failed shows failed.
func joinCells(ms []Measurement, cell func(Measurement) string, failed string) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		if m.Err != nil {
			parts[i] = failed
			continue
		}
		parts[i] = cell(m)
	}
	return strings.Join(parts, " → ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeAligned writes rows as a Markdown table with padded columns, so it
// reads in a terminal and renders on a forge alike.
func writeAligned(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	pad := func(s string, w int) string { return s + strings.Repeat(" ", w-len([]rune(s))) }
	for n, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = pad(c, width[i])
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		if n == 0 {
			for i := range cells {
				cells[i] = strings.Repeat("-", width[i])
			}
			b.WriteString("|-" + strings.Join(cells, "-|-") + "-|\n")
		}
	}
}
