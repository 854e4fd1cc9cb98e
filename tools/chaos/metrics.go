package chaos

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"cryptopulse/tools/devstack"
)

// Sample is one scrape of one service instance's own /metrics port (nginx
// keeps /metrics internal).
type Sample struct {
	Name       string // "gateway-1"
	Pid        int    // tells a restarted instance from its previous life
	At         time.Time
	Goroutines float64
	RSS        float64 // bytes
	// Waiting is gateway_price_waiting (gateways only).
	Waiting float64
	// Round numbers the scrape rounds, so instances can be summed per round.
	Round int
}

// sampler scrapes every service instance once a second.
type sampler struct {
	procs []*devstack.Proc
	http  *http.Client

	mu      sync.Mutex
	round   int
	samples []Sample
}

func (m *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.scrapeAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scrapeAll takes one sample of every running instance and returns them.
func (m *sampler) scrapeAll(ctx context.Context) []Sample {
	m.mu.Lock()
	m.round++
	round := m.round
	m.mu.Unlock()
	var out []Sample
	for _, p := range m.procs {
		if !p.Running() {
			continue
		}
		pid := p.Pid()
		s, ok := m.scrape(ctx, p)
		if !ok || p.Pid() != pid {
			continue
		}
		s.Name, s.Pid, s.Round = p.Name, pid, round
		out = append(out, s)
	}
	m.mu.Lock()
	m.samples = append(m.samples, out...)
	m.mu.Unlock()
	return out
}

func (m *sampler) scrape(ctx context.Context, p *devstack.Proc) (Sample, bool) {
	ctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/metrics", nil)
	if err != nil {
		return Sample{}, false
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return Sample{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, false
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return Sample{}, false
	}
	val := func(name string) float64 {
		f, ok := fams[name]
		if !ok {
			return 0
		}
		var sum float64
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetGauge() != nil:
				sum += mt.GetGauge().GetValue()
			case mt.GetUntyped() != nil:
				sum += mt.GetUntyped().GetValue()
			}
		}
		return sum
	}
	s := Sample{At: time.Now(), Goroutines: val("go_goroutines"), RSS: val("process_resident_memory_bytes")}
	if strings.HasPrefix(p.Name, "gateway") {
		s.Waiting = val("gateway_price_waiting")
	}
	return s, s.Goroutines > 0
}

func (m *sampler) all() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Sample(nil), m.samples...)
}
