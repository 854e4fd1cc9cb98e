package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name a SentinelGroup's Sentinels monitor,
// REDIS_MASTER_NAME's default.
const SentinelMaster = "mymaster"

// SentinelGroup is a replicated Redis watched by Sentinels, all on free
// loopback ports: Servers[0] starts as the master, the others as its
// replicas. Sentinels notice a dead master within a second
// (down-after-milliseconds 1000) and agree with a quorum of two.
type SentinelGroup struct {
	// Servers are the redis-servers; which is master changes on a failover.
	Servers []*Redis
	// Sentinels are the Sentinels' "127.0.0.1:port" addresses.
	Sentinels []string

	procs []*process
	logs  []string
}

// sentinelFailoverTimeout is Sentinel's failover-timeout. A Sentinel does not
// fail the same master over again for twice this long after it last tried,
// so a test that fails over twice waits that long in between.
const sentinelFailoverTimeout = 3 * time.Second

// SentinelRetryGap is how long after one failover the Sentinels are willing
// to start the next.
const SentinelRetryGap = 2*sentinelFailoverTimeout + time.Second

// StartSentinelGroup starts a master, replicas replicas of it and sentinels
// Sentinels, waits until the Sentinels know every replica and each other,
// and stops everything in tb.Cleanup (logs go into the output of a failed
// test). extra flags go to every redis-server (not to the Sentinels).
func StartSentinelGroup(tb testing.TB, replicas, sentinels int, extra ...string) *SentinelGroup {
	tb.Helper()
	g := &SentinelGroup{}
	dir := tb.TempDir()
	tb.Cleanup(func() {
		for i, p := range g.procs {
			_ = p.stop(syscall.SIGKILL, 0)
			if tb.Failed() {
				dumpLog(tb, "redis-sentinel", g.logs[i])
			}
		}
	})
	for i := 0; i <= replicas; i++ {
		args := extra
		if i > 0 {
			_, port, _ := net.SplitHostPort(g.Servers[0].Addr)
			args = append([]string{"--replicaof", "127.0.0.1 " + port}, extra...)
		}
		r, err := LaunchRedisArgs(filepath.Join(dir, "redis-"+strconv.Itoa(i)), 0, args...)
		if err != nil {
			tb.Fatalf("%v", err)
		}
		tb.Cleanup(func() {
			_ = r.Close() // a server the test killed on purpose is not a crash
			if tb.Failed() {
				dumpLog(tb, "redis-server "+r.Addr, r.logPath())
			}
		})
		g.Servers = append(g.Servers, r)
	}
	bin, err := findBinary("redis-sentinel", "redis-sentinel", "/usr/bin/redis-sentinel")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	_, masterPort, _ := net.SplitHostPort(g.Servers[0].Addr)
	for i := range sentinels {
		sdir := filepath.Join(dir, "sentinel-"+strconv.Itoa(i))
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			tb.Fatalf("testkit: %v", err)
		}
		port, err := FreePort()
		if err != nil {
			tb.Fatalf("%v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// Sentinel rewrites its config file with what it learns, so each
		// gets its own writable copy.
		conf := filepath.Join(sdir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %s 2\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s %d\nsentinel parallel-syncs %s 1\n",
			port, sdir, SentinelMaster, masterPort, SentinelMaster, SentinelMaster, sentinelFailoverTimeout.Milliseconds(), SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			tb.Fatalf("testkit: %v", err)
		}
		logPath := filepath.Join(sdir, "sentinel.log")
		p, err := startProcess(procSpec{path: bin, args: []string{conf}, dir: sdir, logPath: logPath})
		if err != nil {
			tb.Fatalf("%v", err)
		}
		g.procs = append(g.procs, p)
		g.logs = append(g.logs, logPath)
		if err := waitReady(p, func(ctx context.Context) error { return pingAddr(ctx, addr) }); err != nil {
			tb.Fatalf("%v", err)
		}
		g.Sentinels = append(g.Sentinels, addr)
	}
	g.WaitSettled(tb, g.Servers[0].Addr, 30*time.Second)
	return g
}

// URL is a REDIS_URL to go with REDIS_SENTINELS: only its database counts.
func (g *SentinelGroup) URL() string { return "redis://" + SentinelMaster + "/0" }

// SentinelList is the REDIS_SENTINELS value for the group.
func (g *SentinelGroup) SentinelList() string { return strings.Join(g.Sentinels, ",") }

// sentinel returns a client for the i-th Sentinel.
func (g *SentinelGroup) sentinel(i int) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: g.Sentinels[i], DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
}

// MasterAddr is the master address the first Sentinel that answers reports.
func (g *SentinelGroup) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for i := range g.Sentinels {
		sc := g.sentinel(i)
		hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		_ = sc.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("testkit: no Sentinel names the master: %v", last)
}

// Server returns the server listening on addr, or nil.
func (g *SentinelGroup) Server(addr string) *Redis {
	for _, r := range g.Servers {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Failover asks a Sentinel for a manual failover (SENTINEL FAILOVER), as an
// operator does before maintenance, and returns the new master once every
// Sentinel names it and it accepts writes.
func (g *SentinelGroup) Failover(tb testing.TB, timeout time.Duration) *Redis {
	tb.Helper()
	ctx := context.Background()
	old, err := g.MasterAddr(ctx)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	sc := g.sentinel(0)
	defer sc.Close()
	if err := sc.Failover(ctx, SentinelMaster).Err(); err != nil {
		tb.Fatalf("testkit: SENTINEL FAILOVER: %v", err)
	}
	return g.WaitNewMaster(tb, old, timeout)
}

// WaitNewMaster waits until every live Sentinel names a master other than
// old and that server answers as a writable master, and returns it.
func (g *SentinelGroup) WaitNewMaster(tb testing.TB, old string, timeout time.Duration) *Redis {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if addr, ok := g.agreedMaster(); ok && addr != old {
			if r := g.Server(addr); r != nil && isWritableMaster(addr) {
				return r
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testkit: Sentinels did not move the master away from %s within %s", old, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitSettled waits until the Sentinels agree on master, know every other
// server as an up replica in sync, and know each other: only then can they
// fail over again (a restarted server must have rejoined first).
func (g *SentinelGroup) WaitSettled(tb testing.TB, master string, timeout time.Duration) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for i := range g.Sentinels {
			sc := g.sentinel(i)
			reps, err1 := sc.Replicas(ctx, SentinelMaster).Result()
			others, err2 := sc.Sentinels(ctx, SentinelMaster).Result()
			_ = sc.Close()
			up := 0
			for _, r := range reps {
				if !strings.Contains(r["flags"], "down") && r["master-link-status"] == "ok" {
					up++
				}
			}
			if err1 != nil || err2 != nil || up < len(g.Servers)-1 || len(others) < len(g.Sentinels)-1 {
				ok = false
				break
			}
		}
		if addr, agreed := g.agreedMaster(); ok && agreed && addr == master {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testkit: Sentinels did not settle on master %s with %d replicas within %s",
				master, len(g.Servers)-1, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agreedMaster returns the master every reachable Sentinel names, if they agree.
func (g *SentinelGroup) agreedMaster() (string, bool) {
	ctx := context.Background()
	seen := ""
	for i := range g.Sentinels {
		sc := g.sentinel(i)
		hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		_ = sc.Close()
		if err != nil || len(hp) != 2 {
			return "", false
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if seen != "" && addr != seen {
			return "", false
		}
		seen = addr
	}
	return seen, seen != ""
}

// isWritableMaster reports whether the server at addr says role:master.
func isWritableMaster(addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(info, "role:master")
}
