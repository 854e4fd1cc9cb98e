package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"cryptopulse/tools/devstack"
)

// Kind is one sort of fault the soak injects.
type Kind string

// The faults, in the order the report lists them.
const (
	KillFetcher    Kind = "fetcher SIGKILL"
	KillGateway    Kind = "gateway SIGKILL"
	RollingRestart Kind = "rolling SIGTERM restart"
	RedisRestart   Kind = "Redis restart"
	PostgresDown   Kind = "Postgres stop/start"
	PostgresRedis  Kind = "Postgres down + Redis restart"
	Upstream500    Kind = "upstream 500"
	UpstreamHang   Kind = "upstream hang"
	Upstream429    Kind = "upstream 429 Retry-After"
)

// Kinds lists every fault kind.
var Kinds = []Kind{KillFetcher, KillGateway, RollingRestart, RedisRestart, PostgresDown, PostgresRedis, Upstream500, UpstreamHang, Upstream429}

// Step is one planned fault: wait Gap, then inject Kind for Hold.
type Step struct {
	Kind Kind
	// Gap is the quiet time before the fault.
	Gap time.Duration
	// Hold is how long the fault lasts (a process stays dead, Postgres
	// down, the simulator failing).
	Hold time.Duration
	// Target picks the instance for kills (index modulo the count).
	Target int
	// RetryAfter is what an upstream 429 advertises.
	RetryAfter time.Duration
}

// cost estimates how long a step takes, to fit the plan into the soak.
func (s Step) cost() time.Duration {
	extra := time.Second
	switch s.Kind {
	case RollingRestart:
		extra = 6 * time.Second
	case Upstream429:
		extra += s.RetryAfter
	}
	return s.Gap + s.Hold + extra
}

// Plan draws the fault schedule for a soak of length d from seed: every
// kind once in a random order, then random kinds until the soak is full.
// The same seed gives the same plan.
func Plan(seed uint64, d time.Duration) []Step {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)).Round(100*time.Millisecond)
	}
	// A short soak (the one in make test) still runs every kind once, with
	// shorter pauses and outages.
	short := d < 2*time.Minute
	pick := func(longLo, longHi, shortLo, shortHi time.Duration) time.Duration {
		if short {
			return between(shortLo, shortHi)
		}
		return between(longLo, longHi)
	}
	step := func(k Kind) Step {
		s := Step{Kind: k, Gap: pick(time.Second, 3*time.Second, 500*time.Millisecond, 1500*time.Millisecond), Target: rng.IntN(1000)}
		switch k {
		case KillFetcher, KillGateway, RedisRestart:
			s.Hold = pick(500*time.Millisecond, 2*time.Second, 300*time.Millisecond, time.Second)
		case PostgresDown, PostgresRedis:
			s.Hold = pick(2*time.Second, 5*time.Second, 2*time.Second, 3*time.Second)
		case Upstream429:
			s.Hold = pick(time.Second, 3*time.Second, time.Second, 2*time.Second)
			s.RetryAfter = time.Duration(1+rng.IntN(3)) * time.Second
		case RollingRestart:
			// Each restart takes as long as a graceful stop and a start.
		default:
			s.Hold = pick(2*time.Second, 4*time.Second, 1500*time.Millisecond, 3*time.Second)
		}
		return s
	}
	var plan []Step
	var total time.Duration
	// The last seconds stay quiet so the system is seen recovering.
	budget := d - 3*time.Second
	for _, i := range rng.Perm(len(Kinds)) {
		s := step(Kinds[i])
		plan = append(plan, s)
		total += s.cost()
	}
	for total < budget {
		s := step(Kinds[rng.IntN(len(Kinds))])
		if total+s.cost() > budget {
			break
		}
		plan = append(plan, s)
		total += s.cost()
	}
	return plan
}

// Window is a fault as it happened: from Start (first harm done) to End
// (last repair done), plus Allow, the recovery time during which failures
// still belong to it.
type Window struct {
	Step
	// N numbers the faults in the order they ran, from 1.
	N          int
	Start, End time.Time
	Allow      time.Duration
	// Target names what was hit ("fetcher-2"), RedisAt when Redis was
	// restarted inside a Postgres outage.
	Target  string
	RedisAt time.Time
	// Err is a repair that failed (a service that did not come back, a
	// SIGTERM that did not exit 0): a violation in itself.
	Err error
}

// covers reports whether a request that ran from start to end overlaps the
// window (allowance included).
func (w Window) covers(start, end time.Time) bool {
	return !start.After(w.End.Add(w.Allow)) && !end.Before(w.Start)
}

// injector applies faults to a stack.
type injector struct {
	stack *devstack.Stack
	redis *redisServer
	allow time.Duration // base recovery allowance
	http  *http.Client
}

// run applies one step and returns its window. ctx bounds the repairs.
func (in *injector) run(ctx context.Context, st Step) Window {
	w := Window{Step: st, Allow: in.allow}
	s := in.stack
	switch st.Kind {
	case KillFetcher, KillGateway:
		procs := s.Fetchers
		if st.Kind == KillGateway {
			procs = s.Gateways
		}
		p := procs[st.Target%len(procs)]
		w.Target = p.Name
		w.Start = time.Now()
		if w.Err = p.Kill(); w.Err != nil {
			break
		}
		_, _ = p.Wait() // killed: the exit status is the signal
		time.Sleep(st.Hold)
		// Back when healthy, not when nginx routes to it again: nginx keeps
		// a failed gateway out for fail_timeout (10 s), and the next fault
		// may hit the other one meanwhile, which the backup lines of the
		// upstream are there for.
		w.Err = p.Start(ctx)
	case RollingRestart:
		w.Target = "every gateway, then every fetcher"
		w.Start = time.Now()
		// One after the other without waiting for nginx to route to the
		// restarted one (see above): the backup lines must carry it.
		for _, g := range s.Gateways {
			if w.Err = g.Restart(ctx); w.Err != nil {
				break
			}
		}
		for _, f := range s.Fetchers {
			if w.Err != nil {
				break
			}
			w.Err = f.Restart(ctx)
		}
	case RedisRestart:
		w.Target = "redis-server"
		w.Start = time.Now()
		w.Err = in.redis.restart(st.Hold)
	case PostgresDown, PostgresRedis:
		w.Target = "postgres"
		w.Start = time.Now()
		if w.Err = call(func(tb *errTB) { s.Postgres.Stop(tb) }); w.Err != nil {
			break
		}
		if st.Kind == PostgresRedis {
			time.Sleep(st.Hold / 2)
			w.RedisAt = time.Now()
			w.Err = in.redis.restart(300 * time.Millisecond)
			time.Sleep(st.Hold / 2)
		} else {
			time.Sleep(st.Hold)
		}
		if err := call(func(tb *errTB) { s.Postgres.Start(tb) }); err != nil {
			w.Err = err
		}
	case Upstream500, UpstreamHang, Upstream429:
		body := `{"kind":"status","code":500}`
		switch st.Kind {
		case UpstreamHang:
			body = `{"kind":"hang"}`
		case Upstream429:
			body = fmt.Sprintf(`{"kind":"rate_limited","retry_after_ms":%d}`, st.RetryAfter.Milliseconds())
			// Fetchers honour the last Retry-After together: failures may
			// go on that long after the simulator is fine again.
			w.Allow += st.RetryAfter
		}
		w.Target = "cgsim"
		w.Start = time.Now()
		if w.Err = in.sim(ctx, http.MethodPost, body); w.Err != nil {
			break
		}
		time.Sleep(st.Hold)
		w.Err = in.sim(ctx, http.MethodDelete, "")
	}
	w.End = time.Now()
	return w
}

// sim calls the simulator's fault control route.
func (in *injector) sim(ctx context.Context, method, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, in.stack.SimURL+"/_sim/fault", bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return fmt.Errorf("chaos: simulator fault %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: simulator fault %s %s: %d %s", method, body, resp.StatusCode, b)
	}
	return nil
}
