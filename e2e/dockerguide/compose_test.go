//go:build dockerguide

package dockerguide

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// base is the published port, the only address the test sends HTTP to.
	base      = "http://127.0.0.1:3000"
	multi     = "docker-compose.multi.yml"
	sentinel  = "docker-compose.sentinel.yml"
	project   = "cryptopulse"
	healthyIn = 5 * time.Minute
)

// deployment is a copy of the repository on which the guide's commands run.
type deployment struct {
	dir    string
	pass   string
	client *http.Client
	// report is where measurements go (DOCKERGUIDE_REPORT), if anywhere.
	report string
}

// record logs a measurement and appends it to the report at once, so a run
// cut short still keeps what it measured.
func (d *deployment) record(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log("measured: " + line)
	if d.report == "" {
		return
	}
	f, err := os.OpenFile(d.report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = fmt.Fprintln(f, line)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Errorf("report: %v", err)
	}
}

// compose runs `docker compose -f <files...> args...` in the copy, as a user
// types it, and fails the test when it fails.
func (d *deployment) compose(t *testing.T, files []string, args ...string) string {
	t.Helper()
	out, err := d.tryCompose(files, args...)
	if err != nil {
		t.Fatalf("docker compose %s: %v\n%s", strings.Join(composeArgs(files, args), " "), err, out)
	}
	return out
}

func composeArgs(files, args []string) []string {
	var full []string
	for _, f := range files {
		full = append(full, "-f", f)
	}
	return append(full, args...)
}

func (d *deployment) tryCompose(files []string, args ...string) (string, error) {
	// A cold `up --build` compiles every image on a small shared machine.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose"}, composeArgs(files, args)...)...)
	cmd.Dir = d.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// container is one line of `docker compose ps --format json`.
type container struct {
	ID, Name, Service, State, Health string
}

func (d *deployment) ps(t *testing.T, files []string) []container {
	t.Helper()
	out := d.compose(t, files, "ps", "--all", "--format", "json")
	var cs []container
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		// One object per line (Compose v2.21+); a JSON array before that.
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("docker compose ps --format json: %v\n%s", err, out)
		}
		if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			var many []container
			if err := json.Unmarshal(raw, &many); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, many...)
			continue
		}
		var c container
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// waitHealthy waits until each named service runs want[service] containers,
// every one running and healthy, and returns how long that took.
func (d *deployment) waitHealthy(t *testing.T, files []string, want map[string]int) time.Duration {
	t.Helper()
	start := time.Now()
	var last []container
	for time.Since(start) < healthyIn {
		last = d.ps(t, files)
		count := map[string]int{}
		ok := true
		for _, c := range last {
			if _, named := want[c.Service]; !named {
				continue
			}
			if c.State != "running" || c.Health != "healthy" {
				ok = false
			}
			count[c.Service]++
		}
		for s, n := range want {
			if count[s] != n {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(time.Second)
	}
	out, _ := d.tryCompose(files, "logs", "--no-color", "--tail", "30")
	t.Fatalf("not all healthy within %v: %+v\n%s", healthyIn, last, out)
	return 0
}

// ids maps each container name of the deployment to its id.
func (d *deployment) ids(t *testing.T, files []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, c := range d.ps(t, files) {
		m[c.Name] = c.ID
	}
	return m
}

// restartCounts maps each container to Docker's count of restarts (by the
// restart policy), read with docker inspect, not through the network.
func restartCounts(t *testing.T, ids map[string]string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for name, id := range ids {
		out, err := exec.Command("docker", "inspect", "-f", "{{.RestartCount}} {{.State.StartedAt}}", id).CombinedOutput()
		if err != nil {
			t.Fatalf("docker inspect %s: %v\n%s", name, err, out)
		}
		m[name] = strings.TrimSpace(string(out))
	}
	return m
}

// answer is one HTTP exchange through nginx.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

func (d *deployment) do(method, path, token string, body []byte) answer {
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start), err: err}
}

func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body))
}

// login is the guide's first API call: POST /auth/login with ADMIN_USER and
// the ADMIN_PASS written to .env.
func (d *deployment) login(t *testing.T) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": d.pass})
	var a answer
	// Right after a start nginx may not have resolved auth yet.
	for range 30 {
		if a = d.do(http.MethodPost, "/auth/login", "", body); a.status == http.StatusOK {
			break
		}
		time.Sleep(time.Second)
	}
	if a.status != http.StatusOK {
		t.Fatalf("login: %v", a)
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
		TokenType   string `json:"tokenType"`
	}
	if err := json.Unmarshal(a.body, &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("login answer %s: %v", a.body, err)
	}
	return tok.AccessToken
}

// prices asks for coin n times at once (one batch when n is the batch
// threshold) and returns the answers.
func (d *deployment) prices(coin, token string, n int) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = d.do(http.MethodGet, "/v1/price/"+coin, token, nil) })
	}
	wg.Wait()
	return out
}

// historyTotal is totalItems of the coin's price history.
func (d *deployment) historyTotal(t *testing.T, coin, token string) int {
	t.Helper()
	a := d.do(http.MethodGet, "/v1/price/"+coin+"/history?limit=1", token, nil)
	if a.status != http.StatusOK {
		t.Fatalf("history of %s: %v", coin, a)
	}
	var h struct {
		CoinID     string `json:"coinId"`
		TotalItems int    `json:"totalItems"`
	}
	if err := json.Unmarshal(a.body, &h); err != nil || h.CoinID != coin {
		t.Fatalf("history of %s: %s (%v)", coin, a.body, err)
	}
	return h.TotalItems
}

// waitHistory waits until the coin's history holds at least want items.
func (d *deployment) waitHistory(t *testing.T, coin, token string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := d.historyTotal(t, coin, token)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("history of %s has %d items %s after a fetch, want %d", coin, n, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load sends requests on a few connections until stopped, the way clients
// keep using a deployment while it is operated on.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	status map[int]int
	errs   int
	first  []string
	slow   time.Duration
}

func (d *deployment) startLoad(workers int, paths []string, token string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, status: map[int]int{}}
	for w := range workers {
		l.wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				a := d.do(http.MethodGet, paths[i%len(paths)], token, nil)
				l.mu.Lock()
				if a.err != nil {
					l.errs++
				} else {
					l.status[a.status]++
				}
				if (a.err != nil || a.status != http.StatusOK) && len(l.first) < 10 {
					l.first = append(l.first, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), paths[i%len(paths)], a))
				}
				l.slow = max(l.slow, a.took)
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return l
}

// total is the number of requests answered or failed so far.
func (l *load) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.errs
	for _, c := range l.status {
		n += c
	}
	return n
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// freePort3000 fails when something already listens on the port the guide
// publishes: the deployment could not start, or would test that instead.
func freePort3000(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:3000")
	if err != nil {
		t.Fatalf("port 3000 must be free for the guide (docker compose publishes 3000:80): %v", err)
	}
	ln.Close()
}

// copyRepo copies what git tracks (and new files not ignored) into dir, so
// the test's .env and any build output stay out of the working tree.
func copyRepo(t *testing.T, root, dir string) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or a symlink
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// writeEnv is the guide's first step: cp .env.example .env, then the two
// critical settings (JWT_SECRET, ADMIN_PASS) changed to values of one's own.
// The simulator profile and its address make the run offline; nginx's
// descriptor limit follows what this host allows.
func writeEnv(t *testing.T, dir string) (pass string) {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(dir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	secret, pass := randomHex(t, 32), randomHex(t, 12)
	var lines []string
	for _, line := range strings.Split(string(example), "\n") {
		switch {
		case strings.HasPrefix(line, "JWT_SECRET="):
			line = "JWT_SECRET=" + secret
		case strings.HasPrefix(line, "ADMIN_PASS="):
			line = "ADMIN_PASS=" + pass
		}
		lines = append(lines, line)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lines = append(lines,
		"# make test-docker: offline, against the bundled CoinGecko simulator",
		"COMPOSE_PROFILES=sim",
		"COINGECKO_BASE_URL=http://cgsim:8090",
		// One build at a time: the first downloads the modules, the others
		// reuse that layer; five parallel downloads of every module take a
		// 2-core machine far longer.
		"COMPOSE_PARALLEL_LIMIT=1",
		// The load below is one user; the throttle is not what is tested.
		"THROTTLE_GLOBAL_LIMIT=1000000",
		fmt.Sprintf("NGINX_NOFILE=%d", min(lim.Max, 65535)),
	)
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pass
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// instances returns the X-Instance-Id values seen over n GETs of path.
func (d *deployment) instances(t *testing.T, path string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		a := d.do(http.MethodGet, path, "", nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET %s: %v", path, a)
		}
		seen[a.header.Get("X-Instance-Id")]++
	}
	return seen
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
