package testkit

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

func TestFreePort(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || isDefaultPort(port) {
		t.Fatalf("FreePort() = %d", port)
	}
	// "Free" must mean bindable on the loopback address we hand out.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d from FreePort is not bindable: %v", port, err)
	}
	l.Close()
}

func TestWaitTCP(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitTCP(ctx, addr); err != nil {
		t.Fatalf("WaitTCP on a listening port: %v", err)
	}
	l.Close()

	// A closed port must be one nobody else can take while we wait: the
	// other tests here start servers on free ports in parallel, and one of
	// them was once handed the port just closed above. A socket that is
	// bound but never listens holds its port and refuses every dial.
	closed := boundNotListening(t)
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := WaitTCP(ctx, closed); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTCP on a closed port = %v, want a deadline error", err)
	}
}

// boundNotListening returns "127.0.0.1:port" for a port held by a bound TCP
// socket that never listens, until the test ends. Without SO_REUSEADDR on it,
// no other socket can bind the port, and the kernel does not hand it out as
// an ephemeral source port either, so a dial to it is always refused.
func boundNotListening(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// A missing binary must say how to fix it, since it fails tests rather than
// skipping them.
// A server that refuses a request by resetting the connection (as one does
// that closes with the request unread) is told apart from other failures.
func TestConnectionReset(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Linger 0: close sends a reset at once, nothing is read.
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
	}()
	_, err = http.Post("http://"+ln.Addr().String()+"/", "text/plain", strings.NewReader(strings.Repeat("x", 1<<20)))
	if !ConnectionReset(err) {
		t.Errorf("POST to a resetting server: %v; want it told as a reset", err)
	}
	_, err = http.Get("http://" + boundNotListening(t) + "/")
	if err == nil || ConnectionReset(err) {
		t.Errorf("GET to a closed port: %v; want an error that is not a reset", err)
	}
	if ConnectionReset(nil) || ConnectionReset(errors.New("timeout")) {
		t.Error("nil or another error told as a reset")
	}
}

func TestMissingBinaryNamesInstallScript(t *testing.T) {
	t.Parallel()
	_, err := findBinary("frobd", "frobd-does-not-exist", "/nonexistent/frobd")
	if err == nil || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
		t.Fatalf("findBinary error = %v, want one naming scripts/install-deps.sh", err)
	}
}

func TestLaunchRefusesDefaultPorts(t *testing.T) {
	t.Parallel()
	if _, err := LaunchRedis(t.TempDir(), 6379); err == nil {
		t.Fatal("LaunchRedis on 6379 succeeded")
	}
	if _, err := LaunchPostgres(t.TempDir(), 5432); err == nil {
		t.Fatal("LaunchPostgres on 5432 succeeded")
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	began := time.Now()
	r := StartRedis(t)
	t.Logf("StartRedis took %v", time.Since(began))

	host, port, err := net.SplitHostPort(r.Addr)
	if err != nil || host != "127.0.0.1" || port == "6379" {
		t.Fatalf("Addr = %q", r.Addr)
	}
	if want := "redis://" + r.Addr + "/0"; r.URL() != want {
		t.Fatalf("URL() = %q, want %q", r.URL(), want)
	}

	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	cfg, err := c.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if cfg["save"] != "" || cfg["appendonly"] != "no" {
		t.Fatalf("persistence on: save=%q appendonly=%q", cfg["save"], cfg["appendonly"])
	}

	// The URL form must work too: services are configured with it.
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	c2 := redis.NewClient(opts)
	defer c2.Close()
	if got, err := c2.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET via URL client = %q, %v", got, err)
	}

	addr := r.Addr
	r.Stop(t)
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET succeeded while Redis was stopped")
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := WaitTCP(wctx, addr); err == nil {
		t.Fatal("something still listens after Stop")
	}

	began = time.Now()
	r.Start(t)
	t.Logf("Redis.Start took %v", time.Since(began))
	if r.Addr != addr {
		t.Fatalf("Addr after restart = %s, want %s", r.Addr, addr)
	}
	// The same client recovers: go-redis redials dead connections.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart = %v, want redis.Nil (empty server)", err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after restart = %d, %v; want 0", n, err)
	}
	if err := c.Set(ctx, "k", "again", 0).Err(); err != nil {
		t.Fatalf("SET after restart: %v", err)
	}
}

func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	began := time.Now()
	p := StartPostgres(t)
	t.Logf("StartPostgres took %v", time.Since(began))

	if _, port, _ := net.SplitHostPort(p.Addr); port == "5432" {
		t.Fatalf("Addr = %s", p.Addr)
	}
	if err := openDB(t, p.AdminURL()).PingContext(ctx); err != nil {
		t.Fatalf("AdminURL: %v", err)
	}

	began = time.Now()
	url1 := p.NewDatabase(t)
	t.Logf("NewDatabase took %v", time.Since(began))
	url2 := p.NewDatabase(t)
	if url1 == url2 {
		t.Fatalf("NewDatabase returned %s twice", url1)
	}
	if !strings.HasPrefix(url1, "postgres://postgres@"+p.Addr+"/") || !strings.HasSuffix(url1, "?sslmode=disable") {
		t.Fatalf("NewDatabase URL = %s", url1)
	}

	db1, db2 := openDB(t, url1), openDB(t, url2)
	for _, db := range []*sql.DB{db1, db2} {
		if _, err := db.ExecContext(ctx, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)`); err != nil {
			t.Fatalf("CREATE TABLE: %v", err)
		}
	}
	if _, err := db1.ExecContext(ctx, `INSERT INTO items VALUES (1, 'one')`); err != nil {
		t.Fatalf("INSERT: %v", err)
	}
	var name string
	if err := db1.QueryRowContext(ctx, `SELECT name FROM items WHERE id = 1`).Scan(&name); err != nil || name != "one" {
		t.Fatalf("SELECT = %q, %v", name, err)
	}
	var n int
	if err := db2.QueryRowContext(ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees %d rows (%v); databases are not separate", n, err)
	}
	db1.Close()
	db2.Close()

	// A database made inside a subtest is gone once the subtest is.
	var sub string
	t.Run("dropped", func(t *testing.T) {
		u := p.NewDatabase(t)
		sub = u[strings.LastIndex(u, "/")+1 : strings.Index(u, "?")]
	})
	if err := openDB(t, p.AdminURL()).QueryRowContext(ctx,
		`SELECT count(*) FROM pg_database WHERE datname = $1`, sub).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s after its test: count %d, %v; want dropped", sub, n, err)
	}

	addr := p.Addr
	began = time.Now()
	p.Stop(t)
	t.Logf("Postgres.Stop took %v", time.Since(began))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := openDB(t, url1).PingContext(cctx); err == nil {
		t.Fatal("connected while Postgres was stopped")
	}

	began = time.Now()
	p.Start(t)
	t.Logf("Postgres.Start took %v", time.Since(began))
	if p.Addr != addr {
		t.Fatalf("Addr after restart = %s, want %s", p.Addr, addr)
	}
	if err := openDB(t, url1).QueryRowContext(ctx, `SELECT name FROM items WHERE id = 1`).Scan(&name); err != nil || name != "one" {
		t.Fatalf("after restart SELECT = %q, %v; want the data kept", name, err)
	}
}

// The non-testing variants are what TestMain and a dev stack use: Close must
// really stop the server, and a Postgres dir must be reusable with its data.
func TestLaunchAndClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	r, err := LaunchRedis(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Redis.Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Redis.Close: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := WaitTCP(wctx, r.Addr); err == nil {
		t.Fatal("redis still listening after Close")
	}

	dir := t.TempDir()
	p, err := LaunchPostgres(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.adminExec(`CREATE TABLE kept (v int)`); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Postgres.Close: %v", err)
	}

	began := time.Now()
	p, err = LaunchPostgres(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LaunchPostgres on an existing cluster took %v", time.Since(began))
	defer p.Close()
	if err := p.adminExec(`INSERT INTO kept VALUES (1)`); err != nil {
		t.Fatalf("cluster not reused: %v", err)
	}
}
