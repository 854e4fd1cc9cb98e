package testkit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Netns is a network namespace of the test's own, joined to the host by
// veth pairs (Links), for partition tests: a process started with Command
// sees only what its links reach, and Link.Cut makes one link drop every
// packet both ways, so connections over it hang as in a real partition.
// It needs root (CAP_NET_ADMIN) and the ip and tc tools (iproute2).
type Netns struct {
	// Name is the namespace's name for `ip netns`.
	Name string
	// Links are the veth pairs, in the order AddLink made them.
	Links []*Link

	ipBin, tcBin string
	seq          int32 // this namespace's number, part of its interface names
}

// Link is one veth pair on a private /30: HostIP on the host's end, NsIP on
// the namespace's end.
type Link struct {
	HostIP, NsIP string

	ns             *Netns
	hostDev, nsDev string
	mu             sync.Mutex
	cut            bool
}

// netnsSeq numbers namespaces within this process; with the pid it keeps
// names and subnets apart across parallel tests and test binaries.
var netnsSeq atomic.Int32

// NewNetns creates a namespace with its loopback up and removes it, its
// links and anything they carry, in tb.Cleanup. Not being root fails the
// test, loudly: a partition test that does not run proves nothing.
func NewNetns(tb testing.TB) *Netns {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatalf("testkit: network namespaces need root (ip netns, veth, tc); run the tests as root, as CI does")
	}
	ipBin, err := findBinary("ip (iproute2)", "ip", "/usr/sbin/ip", "/sbin/ip")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tcBin, err := findBinary("tc (iproute2)", "tc", "/usr/sbin/tc", "/sbin/tc")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	seq := netnsSeq.Add(1)
	n := &Netns{Name: fmt.Sprintf("cp%d-%d", os.Getpid()%100000, seq), ipBin: ipBin, tcBin: tcBin, seq: seq}
	if err := n.ip("netns", "add", n.Name); err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	if err := n.ip("netns", "exec", n.Name, n.ipBin, "link", "set", "lo", "up"); err != nil {
		tb.Fatalf("%v", err)
	}
	return n
}

// AddLink adds a veth pair on a fresh /30 in 10.213.0.0/16 and brings both
// ends up.
func (n *Netns) AddLink(tb testing.TB) *Link {
	tb.Helper()
	idx := len(n.Links)
	// Interface names are at most 15 bytes.
	base := fmt.Sprintf("cp%d%c%d", os.Getpid()%100000, 'a'+rune(idx), n.seq)
	l := &Link{ns: n, hostDev: base + "h", nsDev: base + "n"}
	x, y, err := freeSubnet()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	l.HostIP, l.NsIP = fmt.Sprintf("10.213.%d.%d", x, y+1), fmt.Sprintf("10.213.%d.%d", x, y+2)
	steps := [][]string{
		{"link", "add", l.hostDev, "type", "veth", "peer", "name", l.nsDev},
		{"link", "set", l.nsDev, "netns", n.Name},
		{"addr", "add", l.HostIP + "/30", "dev", l.hostDev},
		{"link", "set", l.hostDev, "up"},
		{"netns", "exec", n.Name, n.ipBin, "addr", "add", l.NsIP + "/30", "dev", l.nsDev},
		{"netns", "exec", n.Name, n.ipBin, "link", "set", l.nsDev, "up"},
	}
	n.Links = append(n.Links, l)
	for _, s := range steps {
		if err := n.ip(s...); err != nil {
			tb.Fatalf("%v", err)
		}
	}
	return l
}

// subnetMu serialises picking a subnet and assigning it within a process.
var subnetMu sync.Mutex

// freeSubnet returns a /30, 10.213.x.y with y a multiple of 4, that no
// interface of the host uses.
func freeSubnet() (x, y int, err error) {
	subnetMu.Lock()
	defer subnetMu.Unlock()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, 0, fmt.Errorf("testkit: list addresses: %w", err)
	}
	used := map[string]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if v4 := ipn.IP.To4(); v4 != nil {
				used[fmt.Sprintf("%d.%d.%d.%d", v4[0], v4[1], v4[2], v4[3]&^3)] = true
			}
		}
	}
	start := (os.Getpid() * 7) % (256 * 64)
	for i := range 256 * 64 {
		k := (start + i) % (256 * 64)
		s := fmt.Sprintf("10.213.%d.%d", k/64, (k%64)*4)
		if !used[s] && !reserved[s] {
			reserved[s] = true
			return k / 64, (k % 64) * 4, nil
		}
	}
	return 0, 0, errors.New("testkit: no free /30 left in 10.213.0.0/16")
}

// reserved holds subnets handed out by this process, so two links made
// before the kernel shows the first address do not collide.
var reserved = map[string]bool{}

// Command returns an *exec.Cmd running name inside the namespace (through
// `ip netns exec`, which execs it, so the process is the program itself).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(n.ipBin, n.Wrap(name, args...)...)
}

// Wrap returns the arguments for the ip binary that run name in the
// namespace; for process managers that take a binary and its arguments.
func (n *Netns) Wrap(name string, args ...string) []string {
	return append([]string{"netns", "exec", n.Name, name}, args...)
}

// IPBin is the path of the ip tool, the binary to run with Wrap's arguments.
func (n *Netns) IPBin() string { return n.ipBin }

// Cut makes the link drop every packet in both directions. A pfifo queue of
// length 0 on both ends does that silently: an established TCP connection
// hangs and retransmits (no reset, no error), and a new connection's SYN
// goes unanswered until its dial timeout, just as behind a failed switch.
// Taking the link down instead is not a partition: the kernel removes the
// route, and dials fail at once with "network is unreachable".
func (l *Link) Cut() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return nil
	}
	if err := l.ns.tc("qdisc", "replace", "dev", l.hostDev, "root", "pfifo", "limit", "0"); err != nil {
		return err
	}
	if err := l.ns.ip("netns", "exec", l.ns.Name, l.ns.tcBin, "qdisc", "replace", "dev", l.nsDev, "root", "pfifo", "limit", "0"); err != nil {
		return err
	}
	l.cut = true
	return nil
}

// Restore undoes Cut; connections that hung carry on (TCP retransmits).
func (l *Link) Restore() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return nil
	}
	if err := l.ns.tc("qdisc", "del", "dev", l.hostDev, "root"); err != nil {
		return err
	}
	if err := l.ns.ip("netns", "exec", l.ns.Name, l.ns.tcBin, "qdisc", "del", "dev", l.nsDev, "root"); err != nil {
		return err
	}
	l.cut = false
	return nil
}

// Forward listens on the link's host address and relays every connection to
// target ("127.0.0.1:port"), for a server that listens on loopback only (a
// shared PostgreSQL) but must be reached from the namespace. It returns the
// address to give the namespace's process; the relay stops in tb.Cleanup.
func (l *Link) Forward(tb testing.TB, target string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(l.HostIP, "0"))
	if err != nil {
		tb.Fatalf("testkit: forward: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			track(in, true)
			track(out, true)
			wg.Add(2)
			relay := func(dst, src net.Conn) {
				defer wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
				track(dst, false)
				track(src, false)
			}
			go relay(out, in)
			go relay(in, out)
		}
	}()
	return ln.Addr().String()
}

// Close deletes the namespace and its links. Processes still inside it keep
// it alive in the kernel, so stop them first (Cleanup order does: a stack
// started after NewNetns is closed before it). Calling it again is a no-op.
func (n *Netns) Close() error {
	if n.Name == "" {
		return nil
	}
	var errs []error
	if err := n.ip("netns", "del", n.Name); err != nil {
		errs = append(errs, err)
	}
	// Deleting the namespace destroys its veth ends and so their peers; an
	// explicit delete covers a namespace a lingering process keeps alive.
	// The kernel tears the pair down asynchronously, so a device seen a
	// moment ago may be gone by the time it is deleted: that is success.
	for _, l := range n.Links {
		if _, err := net.InterfaceByName(l.hostDev); err == nil {
			if err := n.ip("link", "del", l.hostDev); err != nil {
				if _, still := net.InterfaceByName(l.hostDev); still == nil {
					errs = append(errs, err)
				}
			}
		}
	}
	n.Name = ""
	return errors.Join(errs...)
}

func (n *Netns) ip(args ...string) error { return run(n.ipBin, args...) }
func (n *Netns) tc(args ...string) error { return run(n.tcBin, args...) }

func run(bin string, args ...string) error {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testkit: %s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
