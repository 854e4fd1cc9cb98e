package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptopulse/tools/devstack"
)

// BenchmarkWaitingClients sends CP_BENCH_CLIENTS (default 3000) concurrent
// price requests for 10 coins through nginx, all of which wait out a batch
// together, and reports how long the whole wave took, how many upstream
// calls answered it and what the gateways held in memory meanwhile.
//
//	go test -run='^$' -bench=WaitingClients -benchtime=3x ./e2e/
func BenchmarkWaitingClients(b *testing.B) {
	clients := 3000
	if v, err := strconv.Atoi(os.Getenv("CP_BENCH_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	s := benchStack(b)
	tok := benchLogin(b, s)
	coins := []string{"bitcoin", "ethereum", "solana", "cardano", "dogecoin", "ripple", "polkadot", "litecoin", "chainlink", "tron"}
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: 0}
	client := &http.Client{Timeout: 30 * time.Second, Transport: transport}
	var peakRSS float64
	b.ResetTimer()
	for range b.N {
		before := simCallsB(b, s)
		var wg sync.WaitGroup
		var mu sync.Mutex
		failed := 0
		stopRSS := make(chan struct{})
		go func() {
			for {
				select {
				case <-stopRSS:
					return
				case <-time.After(200 * time.Millisecond):
				}
				rss := 0.0
				for _, g := range s.Gateways {
					rss += metric(g.URL()+"/metrics", "process_resident_memory_bytes")
				}
				mu.Lock()
				peakRSS = max(peakRSS, rss)
				mu.Unlock()
			}
		}()
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, s.URL+"/v1/price/"+coins[i%len(coins)], nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					resp.Body.Close()
				}
				if !ok {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(stopRSS)
		if failed > 0 {
			b.Fatalf("%d of %d requests failed", failed, clients)
		}
		b.ReportMetric(float64(simCallsB(b, s)-before), "upstream-calls/op")
	}
	b.ReportMetric(float64(clients), "clients/op")
	b.ReportMetric(peakRSS/1e6, "peak-gateway-rss-MB")
}

func benchStack(b *testing.B) *devstack.Stack {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Config{
		Dir: b.TempDir(), BinDir: kit.binDir, Gateways: 2, Fetchers: 2, Nginx: true, Simulator: true,
		DatabaseURL: kit.pg.NewDatabase(b),
		Env:         map[string]string{"THROTTLE_GLOBAL_LIMIT": "10000000", "COINGECKO_RATE_LIMIT": "0", "BATCH_THRESHOLD": "10000"},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchLogin(b *testing.B, s *devstack.Stack) string {
	b.Helper()
	resp, err := http.Post(s.AuthURL+"/auth/login", "application/json",
		strings.NewReader(`{"username":"`+s.AdminUser+`","password":"`+s.AdminPass+`"}`))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		buf.WriteString(sc.Text())
	}
	tok, _, _ := strings.Cut(strings.TrimPrefix(buf.String(), `{"accessToken":"`), `"`)
	return tok
}

func simCallsB(b *testing.B, s *devstack.Stack) int {
	resp, err := http.Get(s.SimURL + "/_sim/calls")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	sc.Scan()
	n, _, _ := strings.Cut(strings.TrimPrefix(sc.Text(), `{"calls":`), ",")
	v, _ := strconv.Atoi(n)
	return v
}

// metric reads one unlabelled value from a Prometheus text page.
func metric(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
