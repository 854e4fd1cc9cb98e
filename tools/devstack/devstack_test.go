package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain turns the test binary into a stand-in service when it runs under
// a service's name (the tests symlink it into a BinDir as auth, gateway,
// fetcher and cgsim), so the stack machinery is tested without the real
// services: whatever they do, devstack must start, route, stop and restart
// them the same way.
func TestMain(m *testing.M) {
	switch name := filepath.Base(os.Args[0]); name {
	case "auth", "gateway", "fetcher", "cgsim":
		os.Exit(standIn(name))
	}
	os.Exit(m.Run())
}

// standIn serves every path with a JSON echo of the request headers the
// nginx config is responsible for, names itself in X-Instance-Id, and exits
// 0 on SIGTERM after a graceful shutdown, as the real services promise.
func standIn(kind string) int {
	addr := net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT"))
	if kind == "cgsim" {
		fs := flag.NewFlagSet("cgsim", flag.ContinueOnError)
		fs.StringVar(&addr, "addr", "127.0.0.1:8090", "listen address")
		_ = fs.Parse(os.Args[1:])
	}
	instance := os.Getenv("INSTANCE_ID")
	if instance == "" {
		instance = kind
	}
	fmt.Printf("stand-in %s listening on %s\npartial line without newline", instance, addr)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance-Id", instance)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"instance":        instance,
			"path":            r.URL.Path,
			"x-request-id":    r.Header.Get("X-Request-Id"),
			"x-forwarded-for": r.Header.Get("X-Forwarded-For"),
			"x-real-ip":       r.Header.Get("X-Real-IP"),
			"redis":           os.Getenv("REDIS_URL"),
			"coingecko":       os.Getenv("COINGECKO_BASE_URL"),
		})
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// standInBinDir links the test binary into a fresh directory under every
// service name.
func standInBinDir(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, b := range buildTargets() {
		if err := os.Symlink(self, filepath.Join(dir, b.bin)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// echo is a stand-in's answer.
type echo struct {
	Instance      string `json:"instance"`
	Path          string `json:"path"`
	RequestID     string `json:"x-request-id"`
	XForwardedFor string `json:"x-forwarded-for"`
	XRealIP       string `json:"x-real-ip"`
	Redis         string `json:"redis"`
	Coingecko     string `json:"coingecko"`
}

// get fetches url with optional headers and decodes a stand-in's echo.
func get(t *testing.T, client *http.Client, url string, header ...string) (int, http.Header, echo) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e echo
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, resp.Header, e
}

func TestStackWithStandIns(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx is not installed: run scripts/install-deps.sh")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	s, err := Start(ctx, Config{
		Dir:       t.TempDir(),
		BinDir:    standInBinDir(t),
		Nginx:     true,
		Simulator: true,
		Log:       &log, // the sink serialises writes; read only after Close
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if len(s.Gateways) != 2 || len(s.Fetchers) != 2 || len(s.Auths) != 1 {
		t.Fatalf("instances: %d gateways, %d fetchers, %d auths; want 2, 2, 1", len(s.Gateways), len(s.Fetchers), len(s.Auths))
	}
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("round robin over both gateways", func(t *testing.T) {
		seen := map[string]int{}
		for range 10 {
			code, h, _ := get(t, client, s.URL+"/health")
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			seen[h.Get("X-Instance-Id")]++
		}
		if seen["gateway-1"] != 5 || seen["gateway-2"] != 5 {
			t.Errorf("10 requests went to %v; want 5 each", seen)
		}
	})

	t.Run("routes and headers", func(t *testing.T) {
		_, _, e := get(t, client, s.URL+"/auth/login")
		if e.Instance != "auth-1" {
			t.Errorf("/auth/login answered by %q, want auth-1", e.Instance)
		}
		_, _, e = get(t, client, s.URL+"/v1/price/bitcoin", "X-Request-Id", "client-id-1", "X-Forwarded-For", "6.6.6.6")
		if e.RequestID != "client-id-1" {
			t.Errorf("gateway saw X-Request-Id %q, want the client's own", e.RequestID)
		}
		if e.XForwardedFor != "127.0.0.1" || e.XRealIP != "127.0.0.1" {
			t.Errorf("gateway saw X-Forwarded-For %q, X-Real-IP %q; want nginx's view, 127.0.0.1", e.XForwardedFor, e.XRealIP)
		}
		_, _, e = get(t, client, s.URL+"/health", "X-Request-Id", "bad id with spaces")
		if len(e.RequestID) != 32 {
			t.Errorf("gateway saw X-Request-Id %q for a malformed one; want nginx's $request_id", e.RequestID)
		}
		if e.Redis != s.RedisURL || e.Coingecko != s.SimURL {
			t.Errorf("env: REDIS_URL %q, COINGECKO_BASE_URL %q; want %q, %q", e.Redis, e.Coingecko, s.RedisURL, s.SimURL)
		}
		code, h, _ := get(t, client, s.URL+"/metrics")
		if code != 404 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("/metrics through nginx: %d %s; want a JSON 404", code, h.Get("Content-Type"))
		}
	})

	t.Run("stop and start one gateway", func(t *testing.T) {
		g := s.Gateways[0]
		if err := g.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if code, err := g.Wait(); code != 0 || err != nil {
			t.Errorf("Wait after Stop: %d, %v", code, err)
		}
		for range 6 {
			if code, h, _ := get(t, client, s.URL+"/health"); code != 200 || h.Get("X-Instance-Id") != "gateway-2" {
				t.Fatalf("with gateway-1 stopped: %d from %q", code, h.Get("X-Instance-Id"))
			}
		}
		addr := g.Addr
		if err := g.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if g.Addr != addr {
			t.Errorf("restarted on %s, was %s", g.Addr, addr)
		}
		// nginx takes it back after fail_timeout (10 s).
		if err := s.WaitRouted(ctx, g.Name); err != nil {
			t.Error(err)
		}
	})

	t.Run("kill", func(t *testing.T) {
		f := s.Fetchers[1]
		if err := f.Kill(); err != nil {
			t.Fatal(err)
		}
		if code, err := f.Wait(); code != -1 || err == nil {
			t.Errorf("Wait after Kill: %d, %v; want -1 and an error naming the signal", code, err)
		}
		if err := f.Restart(ctx); err != nil {
			t.Fatalf("Restart after Kill: %v", err)
		}
		if !f.Running() {
			t.Error("not running after Restart")
		}
	})

	t.Run("add instances", func(t *testing.T) {
		g, err := s.AddGateway(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if g.Name != "gateway-3" || len(s.Gateways) != 3 {
			t.Errorf("added %s, now %d gateways", g.Name, len(s.Gateways))
		}
		f, err := s.AddFetcher(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name != "fetcher-3" || !f.Running() {
			t.Errorf("added %s, running %v", f.Name, f.Running())
		}
	})

	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, p := range s.Procs() {
		if p.Running() {
			t.Errorf("%s still running after Close", p.Name)
		}
	}
	out := log.String()
	for _, want := range []string{"[gateway-1] stand-in gateway-1 listening", "[cgsim] stand-in cgsim listening", "[fetcher-2] partial line without newline"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; got:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.cfg.Dir, "logs", "gateway-1.log")); err != nil || !strings.Contains(string(b), "stand-in gateway-1") {
		t.Errorf("gateway-1.log: %q, %v", b, err)
	}
}

// Another test's server can bind a port between devstack choosing it and
// the instance binding it. Its health answers 200 as well, under another
// name: that must not pass for our instance, and a first start moves to
// another free port instead of failing the whole stack.
func TestFirstStartMovesOffATakenPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Dir: t.TempDir(), BinDir: standInBinDir(t), Fetchers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	s.mu.Lock()
	p, err := s.newService("gateway", nil)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	impostor := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Instance-Id", "gateway-1")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = impostor.Serve(ln) }()
	defer impostor.Close()
	taken := p.Addr

	if err := p.Start(ctx); !errors.Is(err, errPortTaken) {
		t.Fatalf("Start on a port another server holds: %v; want it told as taken", err)
	}
	if p.Addr != taken {
		t.Fatalf("Start moved %s from %s to %s; only firstStart moves", p.Name, taken, p.Addr)
	}
	if err := p.firstStart(ctx); err != nil {
		t.Fatalf("firstStart: %v", err)
	}
	defer func() { _ = p.Stop(ctx) }()
	if p.Addr == taken {
		t.Fatalf("%s still at the taken %s", p.Name, taken)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	if code, h, _ := get(t, client, p.URL()+"/health"); code != 200 || h.Get("X-Instance-Id") != p.Name {
		t.Errorf("%s at %s: %d from %q", p.Name, p.Addr, code, h.Get("X-Instance-Id"))
	}
	if b, err := os.ReadFile(filepath.Join(s.LogDir(), p.Name+".log")); err != nil || !strings.Contains(string(b), "address already in use") {
		t.Errorf("%s.log does not show the failed bind: %q, %v", p.Name, b, err)
	}
}

func TestStartFailsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Config{Dir: t.TempDir(), BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "run devstack.Build first") {
		t.Errorf("Start without binaries: %v", err)
	}
}

func TestLocalNginxConfig(t *testing.T) {
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, NginxConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, err := LocalNginxConfig(src, NginxLocal{
		Listen:   "127.0.0.1:18080",
		Gateways: []string{"127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"},
		Auths:    []string{"127.0.0.1:18084"},
		Dir:      dir,
		User:     "root",
		MaxFiles: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	text := string(conf)
	for _, want := range []string{
		"server 127.0.0.1:18081 max_fails=3 fail_timeout=10s;",
		"server 127.0.0.1:18083 max_fails=3 fail_timeout=10s;",
		"server 127.0.0.1:18084 max_fails=3 fail_timeout=10s;",
		"server 127.0.0.1:18081 max_fails=0 backup;",
		"server 127.0.0.1:18083 max_fails=0 backup;",
		"listen 127.0.0.1:18080 default_server backlog=4096;",
		"worker_rlimit_nofile 4096;",
		"worker_connections 4096;",
		"user root;",
		"pid " + dir + "/nginx.pid;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rewritten config lacks %q", want)
		}
	}
	for _, gone := range []string{"gateway-1:3000", "resolve;", "resolver ", "user nginx"} {
		if strings.Contains(text, gone) {
			t.Errorf("rewritten config still has %q", gone)
		}
	}
	if _, err := LocalNginxConfig([]byte("events {}\nhttp {\n}\n"), NginxLocal{Listen: "x", Gateways: []string{"y"}, Auths: []string{"z"}, Dir: dir}); err == nil ||
		!strings.Contains(err.Error(), "upstream gateway") {
		t.Errorf("config without upstreams: %v", err)
	}
}

func TestLineWriter(t *testing.T) {
	var out strings.Builder
	w := newLineWriter("gateway-1", &sink{w: &out}, nil)
	_, _ = w.Write([]byte("one\ntw"))
	_, _ = w.Write([]byte("o\nthree"))
	if got, want := out.String(), "[gateway-1] one\n[gateway-1] two\n"; got != want {
		t.Errorf("before Close: %q, want %q", got, want)
	}
	_ = w.Close()
	if got, want := out.String(), "[gateway-1] one\n[gateway-1] two\n[gateway-1] three\n"; got != want {
		t.Errorf("after Close: %q, want %q", got, want)
	}
	if got := w.Tail(); got != "one\ntwo\nthree" {
		t.Errorf("Tail: %q", got)
	}
}
