package benchload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/libs/pricefeed"
	"cryptopulse/testkit"
	"cryptopulse/tools/devstack"
	"cryptopulse/tools/loadgen"
)

// The floor is what this machine allows for the stream scenario's hardest
// case, measured beside it: two bare servers in place of the gateways,
// behind the same nginx configuration, read by the same harness clients,
// write one pre-encoded event of a price's size to every stream in the
// same instant, once a second. No Redis, no hub, no JSON per event: what
// is left is the kernel's loopback TCP, nginx and the readers, which the
// gateways cannot do without. The stack's delivery can only approach it.

// FloorServer serves bare event streams on addr until ctx is done: any GET
// gets a chunked text/event-stream, and at each whole period every stream
// receives, in the same instant, one event of the coin its "ids" asked
// for, stamped with the time it was written.
func FloorServer(ctx context.Context, addr string, period time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = ln.Close() })
	f := &floor{next: make(chan struct{}), events: map[string][]byte{}}
	go f.tick(ctx, period)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go f.serve(ctx, conn)
	}
}

// floor hands every stream the events of one instant: next is closed when
// events holds them, then replaced by a fresh channel.
type floor struct {
	mu     sync.Mutex
	next   chan struct{}
	events map[string][]byte // coin → the chunk of its event
}

func (f *floor) tick(ctx context.Context, period time.Duration) {
	var seq uint64
	for {
		// Every server (and both floor processes) fires at the same whole
		// period of the clock: all streams' events in one instant.
		now := time.Now()
		at := now.Truncate(period).Add(period)
		select {
		case <-ctx.Done():
			return
		case <-time.After(at.Sub(now)):
		}
		at = time.Now()
		events := make(map[string][]byte, len(liveCoins))
		for i, coin := range liveCoins {
			seq++
			events[coin] = floorChunk(pricefeed.ID{MS: uint64(at.UnixMilli()), Seq: uint64(i)}, coin, at, seq)
		}
		f.mu.Lock()
		f.events = events
		close(f.next)
		f.next = make(chan struct{})
		f.mu.Unlock()
	}
}

// floorChunk is one event as the gateway frames it (id, event: price, the
// price answer as data), in one HTTP/1.1 chunk.
func floorChunk(id pricefeed.ID, coin string, at time.Time, seq uint64) []byte {
	u := pricefeed.Update{
		ID: id.String(), Coin: coin, Currency: "usd", Price: "67187.123456", FetchedAt: at,
		BatchID: fmt.Sprintf("fetcher-1:%016x", seq), BatchSize: 1, FlushReason: "threshold", Fetcher: "fetcher-1", Attempt: 1, Source: price.SourceUpstream,
	}
	data, _ := json.Marshal(u.Answer())
	frame := "id: " + u.ID + "\nevent: price\ndata: " + string(data) + "\n\n"
	return []byte(strconv.FormatInt(int64(len(frame)), 16) + "\r\n" + frame + "\r\n")
}

func (f *floor) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		return
	}
	coin := req.URL.Query().Get("ids")
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n" +
		"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		return
	}
	for {
		f.mu.Lock()
		next := f.next
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-next:
		}
		f.mu.Lock()
		chunk := f.events[coin]
		f.mu.Unlock()
		if chunk == nil {
			continue
		}
		if _, err := conn.Write(chunk); err != nil {
			return
		}
	}
}

// floorRun is the floor's processes: two bare servers and an nginx in
// front of them, configured from deploy/nginx/nginx.conf as the stack's.
type floorRun struct {
	procs []*exec.Cmd
	addr  string // nginx's
}

// floorPeriod is the floor's update period, the generator's.
const floorPeriod = updatePeriod

// startFloor starts the floor beside stack st (whose auth upstream its
// nginx config names, unused).
func (h *harness) startFloor(ctx context.Context, st *stackRun) (*floorRun, error) {
	bin := filepath.Join(h.dir, "ssefloor")
	if _, err := os.Stat(bin); err != nil {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tools/benchload/cmd/ssefloor")
		build.Dir = h.root
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the floor server: %w: %s", err, out)
		}
	}
	dir := filepath.Join(h.dir, "floor")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "temp", t), 0o755); err != nil {
			return nil, err
		}
	}
	f := &floorRun{}
	o := devstack.NginxLocal{Dir: dir, AccessLog: filepath.Join(dir, "access.log"), Auths: []string{st.Auths[0].Addr}}
	for range gateways {
		addr, err := freeLoopback()
		if err != nil {
			return nil, err
		}
		f.start(exec.Command(bin, "-addr", addr, "-period", floorPeriod.String()))
		o.Gateways = append(o.Gateways, addr)
	}
	var err error
	if o.Listen, err = freeLoopback(); err != nil {
		f.stop()
		return nil, err
	}
	if os.Geteuid() == 0 {
		o.User = "root"
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < 1<<31 {
		o.MaxFiles = int(lim.Max)
	}
	src, err := os.ReadFile(filepath.Join(h.root, devstack.NginxConfigPath))
	if err == nil {
		var conf []byte
		if conf, err = devstack.LocalNginxConfig(src, o); err == nil {
			err = os.WriteFile(filepath.Join(dir, "nginx.conf"), conf, 0o644)
		}
	}
	if err != nil {
		f.stop()
		return nil, err
	}
	f.addr = o.Listen
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
	}
	f.start(exec.Command(nginx, "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"))
	for _, a := range append([]string{f.addr}, o.Gateways...) {
		if err := waitListening(ctx, a); err != nil {
			f.stop()
			return nil, fmt.Errorf("floor: %w", err)
		}
	}
	return f, nil
}

func (f *floorRun) start(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err == nil {
		f.procs = append(f.procs, cmd)
	}
}

func (f *floorRun) stop() {
	for _, p := range f.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range f.procs {
		_ = p.Wait()
	}
}

func freeLoopback() (string, error) {
	port, err := testkit.FreePort()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), err
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not listening: %w", addr, errors.Join(err, ctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// floorResult is the floor's delivery.
type floorResult struct {
	clients, events, expected int
	p50, p99                  time.Duration
}

func (r floorResult) String() string {
	return fmt.Sprintf("floor (2 bare servers in place of the gateways, the same nginx config and readers, one pre-encoded event per stream in the same instant, %d clients): "+
		"p50 %s, p99 %s, %d of %d events", r.clients, ms(r.p50), ms(r.p99), r.events, r.expected)
}

// measureFloor opens n stream clients through the floor's nginx and
// measures delivery over d.
func (h *harness) measureFloor(ctx context.Context, st *stackRun, n int, d time.Duration) (floorResult, error) {
	f, err := h.startFloor(ctx, st)
	if err != nil {
		return floorResult{}, err
	}
	defer f.stop()
	l := &liveRun{ctx: ctx, tokens: map[string]string{}, target: sseTarget{addr: f.addr, dials: make(chan struct{}, 128)}}
	cctx, cancel := context.WithCancel(ctx)
	l.ctx, l.cancel = cctx, cancel
	defer func() { cancel(); l.wg.Wait() }()
	if missing := l.open(n); missing > 0 {
		return floorResult{}, fmt.Errorf("floor: %d of %d streams not opened", missing, n)
	}
	// From the next whole period on, for d in whole periods.
	d = max(d.Truncate(floorPeriod), floorPeriod)
	start := time.Now().Truncate(floorPeriod).Add(floorPeriod)
	end := start.Add(d)
	select {
	case <-ctx.Done():
		return floorResult{}, ctx.Err()
	case <-time.After(time.Until(end) + time.Second):
	}
	r := floorResult{clients: n, expected: n * int(d/floorPeriod)}
	var lat []time.Duration
	for _, c := range l.clients {
		c.mu.Lock()
		for _, e := range c.events {
			at := time.UnixMilli(int64(e.id.MS))
			if !at.Before(start) && at.Before(end) {
				lat = append(lat, e.latency)
			}
		}
		c.mu.Unlock()
	}
	slices.Sort(lat)
	r.events, r.p50, r.p99 = len(lat), loadgen.Percentile(lat, 50), loadgen.Percentile(lat, 99)
	if r.events < r.expected {
		return r, fmt.Errorf("floor: %d of %d events delivered", r.events, r.expected)
	}
	return r, nil
}
