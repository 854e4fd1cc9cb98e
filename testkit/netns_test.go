package testkit

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// A cut link behaves like a partition: an established connection hangs
// (no reset, no error) and a new one times out, and both work again after
// Restore, the hung connection included.
func TestNetnsCutHangsConnectionsAndRestoreResumesThem(t *testing.T) {
	ns := NewNetns(t)
	link := ns.AddLink(t)
	// An echo server on the host end; a client inside the namespace.
	ln, err := net.Listen("tcp", net.JoinHostPort(link.HostIP, "0"))
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
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					_, _ = c.Write(append(s.Bytes(), '\n'))
				}
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// The client runs in the namespace through a relay: nc-like with bash.
	cmd := ns.Command("bash", "-c", `exec 3<>/dev/tcp/`+link.HostIP+`/`+port+`; echo one >&3; read -t 5 a <&3; echo "got $a"; `+
		`read -t 10 go; echo two >&3; read -t 15 b <&3 && echo "got $b" || echo "timeout"`)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "got one" {
		t.Fatalf("before the cut: %q", out.Text())
	}
	if err := link.Cut(); err != nil {
		t.Fatal(err)
	}
	// A new connection from inside must hang until its timeout, not fail at once.
	start := time.Now()
	dial := ns.Command("bash", "-c", `timeout 1 bash -c 'exec 3<>/dev/tcp/`+link.HostIP+`/`+port+`' ; echo $?`)
	res, _ := dial.Output()
	if took := time.Since(start); string(res) != "124\n" || took < 900*time.Millisecond {
		t.Errorf("dial over a cut link: exit %q after %s, want a hang (124 from timeout)", res, took)
	}
	// The established connection sends into the void; its echo waits.
	_, _ = stdin.Write([]byte("go\n"))
	time.Sleep(1500 * time.Millisecond)
	if err := link.Restore(); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() || out.Text() != "got two" {
		t.Errorf("after the restore the hung connection should resume, got %q", out.Text())
	}
}
