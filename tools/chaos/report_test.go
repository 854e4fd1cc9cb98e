package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlanIsSeededAndStrikesWithEveryKind(t *testing.T) {
	a, b := Plan(7, time.Minute), Plan(7, time.Minute)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave two plans")
	}
	if slices.Equal(a, Plan(8, time.Minute)) {
		t.Error("two seeds gave the same plan")
	}
	for _, k := range Kinds {
		if !slices.ContainsFunc(a, func(s Step) bool { return s.Kind == k }) {
			t.Errorf("no %s in the plan", k)
		}
	}
	if long := Plan(7, 5*time.Minute); len(long) <= len(a) {
		t.Errorf("a 5 min plan has %d faults, a 1 min one %d", len(long), len(a))
	}
}

// fixture is a soak of 60 s with one upstream 500 from +10 s to +12 s and a
// Postgres outage with an empty Redis restart from +20 s to +25 s.
func fixture(appendOnly bool) (*Report, time.Time) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r := &Report{
		Config:  Config{AppendOnly: appendOnly, Gateways: 2, Fetchers: 2},
		Timeout: 8 * time.Second, Bound: 9 * time.Second, Allow: 3 * time.Second,
		LoadStart: t0, LoadEnd: at(60), Drain: DrainState{Drained: true},
		Windows: []Window{
			{Step: Step{Kind: Upstream500}, N: 1, Start: at(10), End: at(12), Allow: 3 * time.Second},
			{Step: Step{Kind: PostgresRedis}, N: 2, Start: at(20), End: at(25), RedisAt: at(22), Allow: 3 * time.Second},
		},
	}
	// Steady samples: nothing grows.
	for i := range 60 {
		for _, n := range []string{"auth-1", "gateway-1", "gateway-2", "fetcher-1", "fetcher-2"} {
			r.Samples = append(r.Samples, Sample{Name: n, Pid: 1, At: at(float64(i) + 0.5), Goroutines: 20, RSS: 20 << 20, Round: i})
		}
	}
	return r, t0
}

func rec(t0 time.Time, start, took float64, status int, batch string) Record {
	s := t0.Add(time.Duration(start * float64(time.Second)))
	return Record{Coin: "bitcoin", Start: s, End: s.Add(time.Duration(took * float64(time.Second))), Status: status,
		BatchID: batch, Price: "1.5", Source: "coingecko"}
}

func TestCheckFindsEachViolation(t *testing.T) {
	cases := []struct {
		name       string
		appendOnly bool
		recs       []Record
		rows       []Row
		want       string // "" means no violation
	}{
		{"a clean soak", false, []Record{rec(time.Time{}, 1, 1, 200, "b1")}, []Row{{"b1", "bitcoin", "1.50"}}, ""},
		{"502 inside the upstream 500 window", false, []Record{rec(time.Time{}, 11, 1, 502, "")}, nil, ""},
		{"502 in the recovery allowance", false, []Record{rec(time.Time{}, 14.5, 0.2, 502, "")}, nil, ""},
		{"502 long after every fault", false, []Record{rec(time.Time{}, 40, 1, 502, "")}, nil, "5xx outside every fault window"},
		{"429 in a 500 window", false, []Record{rec(time.Time{}, 11, 1, 429, "")}, nil, "429 outside every upstream-429 window"},
		{"401 anywhere", false, []Record{rec(time.Time{}, 11, 1, 401, "")}, nil, "was refused"},
		{"an undocumented status", false, []Record{rec(time.Time{}, 11, 1, 500, "")}, nil, "not documented"},
		{"a wait past the bound", false, []Record{rec(time.Time{}, 11, 9.5, 504, "")}, nil, "waited longer"},
		{"no answer at all", false, []Record{{Start: time.Time{}.Add(11 * time.Second), End: time.Time{}.Add(12 * time.Second), Err: "EOF"}}, nil, "no JSON answer"},
		{"a 200 without its row", false, []Record{rec(time.Time{}, 40, 1, 200, "b1")}, nil, "has no price_records row"},
		{"a row with another price", false, []Record{rec(time.Time{}, 40, 1, 200, "b1")}, []Row{{"b1", "bitcoin", "2"}}, "its row says"},
		{"two rows", false, []Record{rec(time.Time{}, 40, 1, 200, "b1")}, []Row{{"b1", "bitcoin", "1.5"}, {"b1", "bitcoin", "1.5"}}, "2 price_records rows"},
		{"queued for a down Postgres when Redis restarted empty", false, []Record{rec(time.Time{}, 20.5, 1, 200, "b1")}, nil, ""},
		{"the same with appendonly", true, []Record{rec(time.Time{}, 20.5, 1, 200, "b1")}, nil, "has no price_records row"},
		{"answered after the Redis restart", false, []Record{rec(time.Time{}, 22.5, 1, 200, "b1")}, nil, "has no price_records row"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, t0 := fixture(c.appendOnly)
			for _, x := range c.recs {
				x.Start, x.End = t0.Add(x.Start.Sub(time.Time{})), t0.Add(x.End.Sub(time.Time{}))
				r.Records = append(r.Records, x)
			}
			r.Rows = c.rows
			r.check()
			got := strings.Join(r.Violations, "\n")
			if c.want == "" && got != "" {
				t.Errorf("violations, want none:\n%s", got)
			}
			if c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("violations %q, want one saying %q", got, c.want)
			}
		})
	}
}

func TestCheckFindsGrowthAndUndrained(t *testing.T) {
	r, t0 := fixture(false)
	r.Records = []Record{rec(t0, 1, 1, 200, "b1")}
	r.Rows = []Row{{"b1", "bitcoin", "1.5"}}
	for i := range r.Samples {
		if r.Samples[i].Name == "gateway-1" {
			r.Samples[i].Goroutines = 20 + 3*r.Samples[i].At.Sub(t0).Seconds()
		}
	}
	r.Drain = DrainState{Pending: 2, After: drainLimit}
	r.check()
	got := strings.Join(r.Violations, "\n")
	for _, want := range []string{"gateway-1 (pid 1): goroutines", "all gateways: goroutines", "not drained"} {
		if !strings.Contains(got, want) {
			t.Errorf("violations %q, want one saying %q", got, want)
		}
	}
}
