package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Record is one client request as the client saw it.
type Record struct {
	Client     int
	Coin       string
	Start, End time.Time
	// Status is the HTTP status, 0 when no answer came (Err says why).
	Status int
	Err    string
	// From a 200: the batch that answered and what it said.
	BatchID, Source, Price, FetchedAt string
	Stale                             bool
	// Instance is X-Instance-Id, Message an error body's message.
	Instance, Message string
}

// Took is how long the client waited.
func (r Record) Took() time.Duration { return r.End.Sub(r.Start) }

// priceBody is what the soak reads from any price answer.
type priceBody struct {
	Price     json.Number `json:"price"`
	FetchedAt string      `json:"fetchedAt"`
	Stale     bool        `json:"stale"`
	Batch     struct {
		ID     string `json:"id"`
		Source string `json:"source"`
	} `json:"batch"`
	Message any `json:"message"`
}

// loadGen runs clients that each ask nginx for prices in a loop until ctx
// is done, and keeps every record.
type loadGen struct {
	url     string
	tokens  []string
	coins   []string
	seed    uint64
	timeout time.Duration // client-side, well past the server's bound

	mu      sync.Mutex
	records []Record
}

// probeClient is the Client of probe requests.
const probeClient = -1

// run blocks until ctx is done and every client's last request has ended.
func (l *loadGen) run(ctx context.Context, clients int) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.probe(ctx)
	}()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(ctx, i)
		}()
	}
	wg.Wait()
}

func (l *loadGen) client(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(l.seed, uint64(id)))
	// One connection pool per client, as separate programs would have.
	hc := &http.Client{Timeout: l.timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer hc.CloseIdleConnections()
	token := l.tokens[id%len(l.tokens)]
	var mine []Record
	for ctx.Err() == nil {
		coin := l.coins[rng.IntN(len(l.coins))]
		mine = append(mine, l.ask(hc, token, id, coin))
		// A little think time, so clients do not march in step.
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
	}
	l.mu.Lock()
	l.records = append(l.records, mine...)
	l.mu.Unlock()
}

// probe starts a request every probeEvery without waiting for the last,
// so recovery after a fault is seen within that resolution even while every
// client is stuck waiting out a lost batch.
func (l *loadGen) probe(ctx context.Context) {
	const probeEvery = 250 * time.Millisecond
	hc := &http.Client{Timeout: l.timeout}
	defer hc.CloseIdleConnections()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	var wg sync.WaitGroup
	n := 0
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
		coin := l.coins[n%len(l.coins)]
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := l.ask(hc, l.tokens[0], probeClient, coin)
			l.mu.Lock()
			l.records = append(l.records, rec)
			l.mu.Unlock()
		}()
	}
}

// ask sends one request. It is not tied to the soak's context: a request in
// flight when the load stops still runs to its end, as a real one would.
func (l *loadGen) ask(hc *http.Client, token string, client int, coin string) Record {
	r := Record{Client: client, Coin: coin, Start: time.Now()}
	req, err := http.NewRequest(http.MethodGet, l.url+"/v1/price/"+coin, nil)
	if err != nil {
		r.Err, r.End = err.Error(), time.Now()
		return r
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		r.Err, r.End = err.Error(), time.Now()
		return r
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	r.End = time.Now()
	r.Status = resp.StatusCode
	r.Instance = resp.Header.Get("X-Instance-Id")
	if err != nil {
		r.Err = "read body: " + err.Error()
		return r
	}
	var b priceBody
	if err := json.Unmarshal(raw, &b); err != nil {
		r.Err = fmt.Sprintf("answer is not JSON: %.120q", raw)
		return r
	}
	r.BatchID, r.Source, r.Price, r.FetchedAt, r.Stale = b.Batch.ID, b.Batch.Source, b.Price.String(), b.FetchedAt, b.Stale
	if r.BatchID == "" {
		r.BatchID = resp.Header.Get("X-Batch-Id")
	}
	switch m := b.Message.(type) {
	case string:
		r.Message = m
	case []any:
		parts := make([]string, len(m))
		for i, p := range m {
			parts[i] = fmt.Sprint(p)
		}
		r.Message = strings.Join(parts, "; ")
	}
	return r
}

// login gets one access token through nginx.
func login(ctx context.Context, url, user, pass string) (string, error) {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/auth/login", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("chaos: login: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ AccessToken string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.AccessToken == "" {
		return "", fmt.Errorf("chaos: login: status %d", resp.StatusCode)
	}
	return out.AccessToken, nil
}
