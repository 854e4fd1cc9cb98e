//go:build dockerguide

package dockerguide

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuide runs the multi-instance guide's commands in order; each step
// starts from what the one before left, so the first failure ends the run.
// Everything the run created (containers, networks, volumes; not the
// images) is removed at the end, also after a failure.
func TestGuide(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker CLI not found: run make test-docker, which prepares the machine")
	}
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("docker compose (the v2 plugin) does not run: %v\n%s\nrun make test-docker, which installs it", err, out)
	}
	freePort3000(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{dir: t.TempDir(), client: &http.Client{Timeout: 30 * time.Second}, report: os.Getenv("DOCKERGUIDE_REPORT")}
	copyRepo(t, root, d.dir)
	d.pass = writeEnv(t, d.dir)
	t.Cleanup(func() {
		out, err := d.tryCompose([]string{multi, sentinel}, "down", "-v", "--remove-orphans", "--timeout", "5")
		if err != nil {
			t.Errorf("teardown: docker compose down -v: %v\n%s", err, out)
		}
	})

	f := []string{multi}
	all := map[string]int{"postgres": 1, "redis": 1, "auth": 1, "gateway-1": 1, "gateway-2": 1, "fetcher": 2, "nginx": 1, "cgsim": 1}
	var token string
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"up --build -d, then ps: every service up and healthy", func(t *testing.T) {
			cold := exec.Command("docker", "image", "inspect", "cryptopulse/gateway:latest").Run() != nil
			start := time.Now()
			d.compose(t, f, "up", "--build", "-d")
			d.waitHealthy(t, f, all)
			kind := "warm (service images built before)"
			if cold {
				kind = "cold (no service image yet)"
			}
			d.record(t, "up --build -d to all healthy, %s: %.0f s", kind, time.Since(start).Seconds())
			out := d.compose(t, f, "ps")
			for _, s := range []string{"gateway-1", "gateway-2", "nginx", "postgres", "redis", "auth", "fetcher"} {
				if !strings.Contains(out, s) {
					t.Errorf("ps does not list %s:\n%s", s, out)
				}
			}
			if strings.Count(out, "(healthy)") != 9 {
				t.Errorf("ps: want 9 containers Up (healthy):\n%s", out)
			}
		}},
		{"curl :3000/docs shows the Swagger UI", func(t *testing.T) {
			a := d.do(http.MethodGet, "/docs", "", nil)
			if a.status != http.StatusOK || !bytes.Contains(bytes.ToLower(a.body), []byte("swagger-ui")) {
				t.Fatalf("/docs: %d, %.300s", a.status, a.body)
			}
			spec := d.do(http.MethodGet, "/docs-json", "", nil)
			if spec.status != http.StatusOK || !bytes.Contains(spec.body, []byte(`"openapi"`)) {
				t.Fatalf("/docs-json: %v", spec)
			}
		}},
		{"login, price, history through :3000", func(t *testing.T) {
			token = d.login(t)
			for _, a := range d.prices("bitcoin", token, 3) {
				var p struct {
					CoinID     string  `json:"coinId"`
					VsCurrency string  `json:"vsCurrency"`
					Price      float64 `json:"price"`
				}
				if a.status != http.StatusOK || json.Unmarshal(a.body, &p) != nil || p.CoinID != "bitcoin" || p.VsCurrency != "usd" || p.Price <= 0 {
					t.Fatalf("price of bitcoin: %v", a)
				}
			}
			// The fetcher's persister writes rows after the answers, so
			// history shows a fetch a moment later.
			d.waitHistory(t, "bitcoin", token, 1, 15*time.Second)
		}},
		{"requests spread over gateway-1 and gateway-2", func(t *testing.T) {
			seen := d.instances(t, "/health", 20)
			if seen["gateway-1"] == 0 || seen["gateway-2"] == 0 || len(seen) != 2 {
				t.Fatalf("X-Instance-Id over 20 requests: %v", seen)
			}
		}},
		{"logs of one instance and of all", func(t *testing.T) {
			one := d.compose(t, f, "logs", "--no-color", "gateway-1")
			if one == "" || strings.Contains(one, "gateway-2-1") || !strings.Contains(one, "gateway-1") {
				t.Errorf("logs gateway-1 shows other instances or nothing:\n%.1000s", one)
			}
			every := d.compose(t, f, "logs", "--no-color")
			for _, s := range []string{"gateway-1-1", "gateway-2-1", "nginx-1", "auth-1", "fetcher-1", "fetcher-2", "postgres-1", "redis-1"} {
				if !strings.Contains(every, s+" ") && !strings.Contains(every, s+"  ") {
					t.Errorf("logs (all) has no line from %s", s)
				}
			}
		}},
		{"stop gateway-2: prices keep answering; start gateway-2; restart gateway-1", func(t *testing.T) {
			d.compose(t, f, "stop", "gateway-2")
			for _, a := range d.prices("ethereum", token, 3) {
				if a.status != http.StatusOK {
					t.Fatalf("price with gateway-2 stopped: %v", a)
				}
				if id := a.header.Get("X-Instance-Id"); id != "gateway-1" {
					t.Errorf("answered by %q with gateway-2 stopped", id)
				}
			}
			d.compose(t, f, "start", "gateway-2")
			d.waitHealthy(t, f, all)
			d.compose(t, f, "restart", "gateway-1")
			d.waitHealthy(t, f, all)
			// nginx re-resolves names every 5 s: both serve again.
			deadline := time.Now().Add(30 * time.Second)
			for {
				seen := d.instances(t, "/health", 10)
				if seen["gateway-1"] > 0 && seen["gateway-2"] > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after start/restart only %v answer", keys(seen))
				}
				time.Sleep(time.Second)
			}
		}},
		{"up -d --scale fetcher=4: three requests for one coin, one upstream call", func(t *testing.T) {
			d.compose(t, f, "up", "-d", "--scale", "fetcher=4")
			scaled := map[string]int{}
			for k, v := range all {
				scaled[k] = v
			}
			scaled["fetcher"] = 4
			d.waitHealthy(t, f, scaled)
			answers := d.prices("solana", token, 3)
			batches := map[string]bool{}
			for _, a := range answers {
				if a.status != http.StatusOK {
					t.Fatalf("price of solana: %v", a)
				}
				batches[a.header.Get("X-Batch-Id")+" size "+a.header.Get("X-Batch-Size")] = true
			}
			if len(batches) != 1 || !strings.HasSuffix(firstKey(batches), " size 3") {
				t.Fatalf("three requests across 4 fetchers were answered by batches %v, want one of size 3", batches)
			}
			d.compose(t, f, "up", "-d", "--scale", "fetcher=2")
			d.waitHealthy(t, f, all)
		}},
		{"rolling update under load: up --build -d --no-deps gateway-N, one at a time", func(t *testing.T) {
			// A new version to roll out: one more line in the gateway's source.
			mainGo := filepath.Join(d.dir, "services", "gateway", "main.go")
			src, err := os.ReadFile(mainGo)
			if err != nil {
				t.Fatal(err)
			}
			stamp := fmt.Sprintf("\n// rolled out by the guide test at %s\n", time.Now().UTC().Format(time.RFC3339))
			if err := os.WriteFile(mainGo, append(src, stamp...), 0o644); err != nil {
				t.Fatal(err)
			}
			// Afterwards the source is as before, so the next `up --build`
			// finds every image's layers cached instead of rebuilding all.
			defer func() {
				if err := os.WriteFile(mainGo, src, 0o644); err != nil {
					t.Error(err)
				}
			}()
			before := d.ids(t, f)
			l := d.startLoad(4, []string{"/v1/price/bitcoin/history?limit=5", "/health", "/v1/price/ethereum/history?limit=1"}, token)
			start := time.Now()
			for _, g := range []string{"gateway-1", "gateway-2"} {
				d.compose(t, f, "up", "--build", "-d", "--no-deps", g)
				d.waitHealthy(t, f, all)
			}
			took := time.Since(start)
			for l.total() < 2000 {
				time.Sleep(100 * time.Millisecond)
			}
			l.stop()
			after := d.ids(t, f)
			for _, g := range []string{"cryptopulse-gateway-1-1", "cryptopulse-gateway-2-1"} {
				if before[g] == after[g] {
					t.Errorf("%s was not recreated by the update", g)
				}
			}
			failed := l.errs
			for s, n := range l.status {
				if s != http.StatusOK {
					failed += n
				}
			}
			d.record(t, "rolling update of gateway-1 then gateway-2 (rebuild included) under load: %d requests, %d failed, slowest %.2f s, update took %.0f s",
				l.total(), failed, l.slow.Seconds(), took.Seconds())
			if failed != 0 {
				t.Fatalf("%d of %d requests failed during the rolling update: %v; first: %s", failed, l.total(), l.status, strings.Join(l.first, "; "))
			}
		}},
		{"restart redis: fast 503s, then 200 with no service restarted", func(t *testing.T) {
			before := restartCounts(t, d.ids(t, f))
			d.compose(t, f, "stop", "redis")
			a := d.do(http.MethodGet, "/v1/price/bitcoin", token, nil)
			if a.status != http.StatusServiceUnavailable || a.took > 5*time.Second {
				t.Fatalf("price with Redis down: %v after %v, want a prompt 503", a, a.took)
			}
			d.compose(t, f, "start", "redis")
			d.compose(t, f, "restart", "redis")
			deadline := time.Now().Add(60 * time.Second)
			for {
				got := d.prices("cardano", token, 3)
				if got[0].status == http.StatusOK && got[1].status == http.StatusOK && got[2].status == http.StatusOK {
					break
				}
				for _, a := range got {
					if a.status != http.StatusOK && a.status != http.StatusServiceUnavailable {
						t.Fatalf("while Redis comes back: %v", a)
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("prices not back 60 s after Redis: %v", got)
				}
				time.Sleep(time.Second)
			}
			after := restartCounts(t, d.ids(t, f))
			for name, was := range before {
				if strings.Contains(name, "redis") {
					continue
				}
				if after[name] != was {
					t.Errorf("%s restarted (%s -> %s): services must follow Redis by themselves", name, was, after[name])
				}
			}
		}},
		{"down, then up -d: price history kept in the volume", func(t *testing.T) {
			n := d.historyTotal(t, "bitcoin", token)
			d.compose(t, f, "down")
			d.compose(t, f, "up", "-d")
			d.waitHealthy(t, f, all)
			token = d.login(t)
			if got := d.historyTotal(t, "bitcoin", token); got < n {
				t.Fatalf("history of bitcoin has %d items after down/up, had %d", got, n)
			}
		}},
		{"Sentinel override: SENTINEL FAILOVER under load, followed without restarts", func(t *testing.T) {
			fs := []string{multi, sentinel}
			withSentinel := map[string]int{"redis-replica": 1, "sentinel-1": 1, "sentinel-2": 1, "sentinel-3": 1}
			for k, v := range all {
				withSentinel[k] = v
			}
			d.compose(t, fs, "up", "--build", "-d")
			d.waitHealthy(t, fs, withSentinel)
			token = d.login(t)
			master := func() string {
				return strings.TrimSpace(d.compose(t, fs, "exec", "-T", "sentinel-1", "redis-cli", "-p", "26379", "SENTINEL", "get-master-addr-by-name", "mymaster"))
			}
			was := master()
			before := restartCounts(t, d.ids(t, fs))
			l := d.startLoad(3, []string{"/v1/price/bitcoin/history?limit=1", "/health"}, token)
			time.Sleep(2 * time.Second)
			d.compose(t, fs, "exec", "-T", "sentinel-1", "redis-cli", "-p", "26379", "SENTINEL", "FAILOVER", "mymaster")
			deadline := time.Now().Add(60 * time.Second)
			for master() == was {
				if time.Now().After(deadline) {
					t.Fatalf("master still %q 60 s after SENTINEL FAILOVER", was)
				}
				time.Sleep(time.Second)
			}
			// Prices (stream, batch, reply) go through the new master.
			deadline = time.Now().Add(60 * time.Second)
			for {
				got := d.prices("ripple", token, 3)
				if got[0].status == http.StatusOK && got[1].status == http.StatusOK && got[2].status == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("prices not answered 60 s after the failover: %v", got)
				}
				time.Sleep(time.Second)
			}
			l.stop()
			if s := l.status; s[http.StatusOK] == 0 {
				t.Fatalf("no request answered during the failover: %v", s)
			}
			for code, n := range l.status {
				if code != http.StatusOK && code != http.StatusServiceUnavailable {
					t.Errorf("%d answers %d during the failover (only 200 or a brief 503 expected); first: %s", n, code, strings.Join(l.first, "; "))
				}
			}
			d.record(t, "Sentinel failover under load: %d requests, statuses %v, %d transport errors", l.total(), l.status, l.errs)
			after := restartCounts(t, d.ids(t, fs))
			for name, v := range before {
				if after[name] != v {
					t.Errorf("%s restarted during the failover (%s -> %s)", name, v, after[name])
				}
			}
		}},
		{"down -v removes containers, networks and volumes", func(t *testing.T) {
			d.compose(t, []string{multi, sentinel}, "down", "-v")
			for _, kind := range []string{"container", "network", "volume"} {
				args := []string{kind, "ls", "-q", "--filter", "label=com.docker.compose.project=" + project}
				if kind == "container" {
					args = []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + project}
				}
				out, err := exec.Command("docker", args...).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "" {
					t.Errorf("after down -v, %ss of the project remain: %s %v", kind, out, err)
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}
