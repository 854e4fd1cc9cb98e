package benchload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk report in lines the harness parses: the summary, the
// latency percentiles, socket errors, and answers by status. wrk's own
// output only says "Non-2xx or 3xx responses: N"; a response callback
// tallies statuses per thread, and done (which runs once, in the main
// thread) collects the threads' tallies.
const wrkScript = `local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests %d\n", summary.requests))
  io.write(string.format("BENCH duration_us %d\n", summary.duration))
  io.write(string.format("BENCH p50_us %.0f\n", latency:percentile(50)))
  io.write(string.format("BENCH p99_us %.0f\n", latency:percentile(99)))
  io.write(string.format("BENCH error connect %d\n", e.connect))
  io.write(string.format("BENCH error read %d\n", e.read))
  io.write(string.format("BENCH error write %d\n", e.write))
  io.write(string.format("BENCH error timeout %d\n", e.timeout))
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("statuses")) do
      io.write(string.format("BENCH status %d %d\n", s, n))
    end
  end
end
`

// wrkRun is one closed-loop run: connections keep one request outstanding
// each for the whole duration.
type wrkRun struct {
	URL         string
	Header      string // "Name: value", or empty
	Connections int
	Duration    time.Duration
}

// wrkTimeout is how long wrk waits for one answer before counting a
// timeout; above BATCH_RESULT_TIMEOUT_MS and nginx's proxy_read_timeout
// (15 s), so only a request nothing answers counts.
const wrkTimeout = 20 * time.Second

// findWrk returns the wrk binary, or an error saying how to install it.
func findWrk() (string, error) {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", errors.New("benchload: wrk not found in PATH: run scripts/install-deps.sh (apt-get install wrk)")
	}
	return p, nil
}

// runWrk runs wrk with the tallying script (written into dir) and parses
// what it printed.
func runWrk(ctx context.Context, wrk, dir string, r wrkRun) (Measurement, error) {
	script := filepath.Join(dir, "status.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return Measurement{}, fmt.Errorf("benchload: %w", err)
	}
	args := []string{
		"-t", strconv.Itoa(min(2, r.Connections)), "-c", strconv.Itoa(r.Connections),
		"-d", strconv.Itoa(max(1, int(r.Duration.Round(time.Second)/time.Second))) + "s",
		"--timeout", strconv.Itoa(int(wrkTimeout/time.Second)) + "s", "-s", script,
	}
	if r.Header != "" {
		args = append(args, "-H", r.Header)
	}
	args = append(args, r.URL)
	cmd := exec.CommandContext(ctx, wrk, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Measurement{}, fmt.Errorf("benchload: wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	m, err := parseWrk(stdout.Bytes())
	if err != nil {
		return m, fmt.Errorf("benchload: wrk %s: %w\n%s", strings.Join(args, " "), err, stdout.String())
	}
	return m, nil
}

// parseWrk reads the BENCH lines of wrkScript's done callback.
func parseWrk(out []byte) (Measurement, error) {
	m := Measurement{Status: map[int]int{}, Errors: map[string]int{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "BENCH" {
			continue
		}
		nums := make([]int64, 0, 2)
		for _, s := range f[2:] {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				nums = append(nums, n)
			}
		}
		seen[f[1]] = true
		switch {
		case f[1] == "requests" && len(nums) == 1:
			m.Requests = int(nums[0])
		case f[1] == "duration_us" && len(nums) == 1:
			m.Elapsed = time.Duration(nums[0]) * time.Microsecond
		case f[1] == "p50_us" && len(nums) == 1:
			m.P50 = time.Duration(nums[0]) * time.Microsecond
		case f[1] == "p99_us" && len(nums) == 1:
			m.P99 = time.Duration(nums[0]) * time.Microsecond
		case f[1] == "error" && len(f) == 4:
			if n, err := strconv.Atoi(f[3]); err == nil && n > 0 {
				m.Errors[f[2]] += n
			}
		case f[1] == "status" && len(nums) == 2:
			m.Status[int(nums[0])] += int(nums[1])
		default:
			return m, fmt.Errorf("unexpected line %q", sc.Text())
		}
	}
	for _, k := range []string{"requests", "duration_us", "p50_us", "p99_us"} {
		if !seen[k] {
			return m, fmt.Errorf("no %s line in wrk's output", k)
		}
	}
	if m.Elapsed > 0 {
		m.RPS = float64(m.Requests) / m.Elapsed.Seconds()
	}
	return m, nil
}
