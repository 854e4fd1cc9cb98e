// Package e2e drives the whole system as a user would: real binaries of
// auth, gateways and fetchers, real redis-server and PostgreSQL, nginx where
// a test needs it, and the CoinGecko simulator, all on loopback.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
)

// suite holds what every test shares: the binaries, built once, and one
// PostgreSQL cluster in which each stack gets its own database.
type suite struct {
	binDir string
	pg     *testkit.Postgres
}

// kit is set by TestMain only; tests read it.
var kit suite

func TestMain(m *testing.M) {
	os.Exit(mainErr(m))
}

func mainErr(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "cp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	root, err := devstack.FindRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kit.binDir = filepath.Join(tmp, "bin")
	if err := devstack.Build(ctx, root, kit.binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pg, err := testkit.LaunchPostgres(filepath.Join(tmp, "pg"), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e needs PostgreSQL 15 (run scripts/install-deps.sh):", err)
		return 1
	}
	defer pg.Close()
	kit.pg = pg
	return m.Run()
}

// syncBuffer collects a stack's logs for a failing test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// baseEnv keeps the user throttle out of the way of tests about batching.
var baseEnv = map[string]string{"THROTTLE_GLOBAL_LIMIT": "100000", "THROTTLE_LOGIN_LIMIT": "1000"}

// ownPostgres as Config.DatabaseURL gives a stack its own PostgreSQL, for
// tests that stop it.
const ownPostgres = "own"

// startStack starts a topology for one test, with its own database, and
// prints every instance's log if the test fails.
func startStack(t *testing.T, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	env := map[string]string{}
	for k, v := range baseEnv {
		env[k] = v
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	cfg.Env = env
	cfg.Dir = t.TempDir()
	cfg.BinDir = kit.binDir
	cfg.Simulator = true
	switch cfg.DatabaseURL {
	case ownPostgres:
		cfg.DatabaseURL = ""
	case "":
		cfg.DatabaseURL = kit.pg.NewDatabase(t)
	}
	logs := &syncBuffer{}
	cfg.Log = logs
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start stack: %v\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close stack: %v", err)
		}
		if t.Failed() {
			t.Logf("stack logs:\n%s", logs)
		}
	})
	return s
}

// login returns an access token from the stack's auth service.
func login(t *testing.T, s *devstack.Stack) string {
	t.Helper()
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, s.AdminUser, s.AdminPass)
	resp, err := http.Post(s.AuthURL+"/auth/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ AccessToken string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.AccessToken == "" {
		t.Fatalf("login: status %d", resp.StatusCode)
	}
	return out.AccessToken
}

// answer is what a client saw for one price request.
type answer struct {
	Status  int
	Header  http.Header
	Took    time.Duration
	Body    map[string]any
	Raw     string
	Err     error
	Gateway string
}

func (a answer) str(k string) string { s, _ := a.Body[k].(string); return s }

func (a answer) batch() map[string]any { b, _ := a.Body["batch"].(map[string]any); return b }

// getJSON sends an authorised GET and decodes the JSON answer.
func getJSON(base, path, token string) answer {
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	return getWith(base, path, header)
}

// getWith sends a GET with the given headers and decodes the JSON answer.
func getWith(base, path string, header http.Header) answer {
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return answer{Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(req, start, 30*time.Second)
}

// do sends req, started at start, with a client that waits at most timeout,
// and decodes the JSON answer.
func do(req *http.Request, start time.Time, timeout time.Duration) answer {
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return answer{Err: err, Took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Took: time.Since(start), Raw: string(raw), Gateway: resp.Header.Get("X-Instance-Id")}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		a.Err = fmt.Errorf("answer is not JSON: %q", raw)
	}
	return a
}

// askInBackground sends path to every base URL at once, in the background;
// wait returns the answers in order once all have come.
func askInBackground(bases []string, path, token string) (wait func() []answer) {
	var got []answer
	done := make(chan struct{})
	go func() {
		got = concurrently(bases, func(b string) answer { return getJSON(b, path, token) })
		close(done)
	}()
	return func() []answer { <-done; return got }
}

// fetcherNamed returns the stack's fetcher with that instance name.
func fetcherNamed(t *testing.T, s *devstack.Stack, name string) *devstack.Proc {
	t.Helper()
	for _, f := range s.Fetchers {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("%q is not one of the fetchers", name)
	return nil
}

// askInLoop runs clients that each ask for a coin's price through nginx in a
// loop (client i asks for coins[i%len(coins)]) until stop is closed, handing
// every answer and when it was sent to record.
func askInLoop(s *devstack.Stack, token string, clients int, coins []string, stop <-chan struct{}, wg *sync.WaitGroup,
	record func(sent time.Time, a answer)) {
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now()
				record(sent, getJSON(s.URL, "/v1/price/"+coins[i%len(coins)], token))
			}
		}()
	}
}

// concurrently runs fn for each base URL at once and returns the answers in order.
func concurrently(bases []string, fn func(base string) answer) []answer {
	out := make([]answer, len(bases))
	var wg sync.WaitGroup
	for i, b := range bases {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = fn(b) }()
	}
	wg.Wait()
	return out
}

// simCalls reads the simulator's count and log of /simple/price calls.
type simReport struct {
	Calls int `json:"calls"`
	Log   []struct {
		Path   string   `json:"path"`
		IDs    []string `json:"ids"`
		Status int      `json:"status"`
	} `json:"log"`
}

func simCalls(t *testing.T, s *devstack.Stack) simReport {
	t.Helper()
	resp, err := http.Get(s.SimURL + "/_sim/calls")
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	defer resp.Body.Close()
	var r simReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("simulator calls: %v", err)
	}
	return r
}

// simFault injects a fault, given as the control route's JSON.
func simFault(t *testing.T, s *devstack.Stack, fault string) {
	t.Helper()
	resp, err := http.Post(s.SimURL+"/_sim/fault", "application/json", strings.NewReader(fault))
	if err != nil {
		t.Fatalf("simulator fault: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("simulator refused fault %s: %d", fault, resp.StatusCode)
	}
}
