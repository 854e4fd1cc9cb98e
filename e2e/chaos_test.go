package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"cryptopulse/tools/chaos"
)

// chaosSeed fixes the short soak's schedule, so a failure reproduces with
// `go run ./tools/chaos/cmd/chaos -duration 60s -seed 20260301`.
const chaosSeed = 20260301

// The chaos soak, short: 60 s of steady load through nginx while every
// fault kind strikes at least once (processes killed and restarted, a
// rolling restart, Redis restarted empty, Postgres stopped, the upstream
// failing three ways), then every invariant of package chaos. Not parallel:
// its latency bound is honest only when it has the machine to itself.
func TestChaosSoakShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := chaos.Run(ctx, chaos.Config{
		Duration: 60 * time.Second,
		Seed:     chaosSeed,
		Dir:      t.TempDir(),
		BinDir:   kit.binDir,
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("soak could not run: %v\n%s", err, progress.String())
	}
	var out strings.Builder
	rep.Write(&out)
	t.Logf("chaos soak report:\n%s", out.String())
	ran := map[chaos.Kind]bool{}
	for _, w := range rep.Windows {
		ran[w.Kind] = true
	}
	for _, k := range chaos.Kinds {
		if !ran[k] {
			t.Errorf("fault %q never ran: the short soak must strike with every kind", k)
		}
	}
	if n := len(rep.Records); n < 500 {
		t.Errorf("only %d requests in 60 s: the load did not run", n)
	}
	if rep.Failed() {
		t.Errorf("the soak found %d violations (see the report above); fault log:\n%s", len(rep.Violations), progress.String())
	}
}

// Both compose files run Redis with appendonly yes on a volume, the setting
// under which the chaos soak loses no price when Redis restarts.
func TestComposeRedisAppendOnly(t *testing.T) {
	for _, file := range []string{"docker-compose.yml", "docker-compose.multi.yml"} {
		p := loadCompose(t, file)
		r, ok := p.Services["redis"]
		if !ok {
			t.Fatalf("%s: no redis service", file)
		}
		if cmd := strings.Join(r.Command, " "); !strings.Contains(cmd, "--appendonly yes") {
			t.Errorf("%s: redis command %q does not turn on appendonly", file, cmd)
		}
		onVolume := false
		for _, v := range r.Volumes {
			onVolume = onVolume || (v.Type == "volume" && v.Target == "/data")
		}
		if !onVolume {
			t.Errorf("%s: redis keeps /data on no named volume: a recreated container would start empty", file)
		}
	}
}
